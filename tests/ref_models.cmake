# Model files against transformers (tests/ref/, docs/model-files.md): tiny LLaVA folders
# written by transformers over the config matrix real checkpoints use give modserve the
# same logits and greedy tokens (run and serve); folders written by `modserve model
# init` load in transformers and give the same logits.
ms_add_ref_test(test_llava_logits test_llava_logits.py)
