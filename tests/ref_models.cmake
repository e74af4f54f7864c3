# Model files against transformers (tests/ref/, docs/model-files.md): tiny LLaVA folders
# written by transformers over the config matrix real checkpoints use give modserve the
# same logits and greedy tokens (run and serve); folders written by `modserve model
# init` load in transformers and give the same logits.
ms_add_ref_test(test_llava_logits test_llava_logits.py)
# preset_files writes a preset's folder less its weights, with the tensor list init
# would write, so the full-size presets are checked without 14 GB of files.
add_executable(preset_files ${CMAKE_CURRENT_SOURCE_DIR}/ref/preset_files.c)
target_link_libraries(preset_files PRIVATE ms_llm)
ms_add_ref_test(test_model_init_loads test_model_init_loads.py --preset-files $<TARGET_FILE:preset_files>)
