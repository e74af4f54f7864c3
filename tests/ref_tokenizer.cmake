# Tokenizer and chat templates against the reference libraries (tests/ref/): ids, decodes
# and streaming against Hugging Face `tokenizers` on tokenizers it trains (5,000+ corpus
# lines each), and chat prompts against transformers' apply_chat_template.
ms_add_ref_test(test_tokenizers test_tokenizers.py)
ms_add_ref_test(test_chat_templates test_chat_templates.py)
foreach(t test_tokenizers test_chat_templates)
  set_property(TEST ${t} APPEND PROPERTY LABELS tokenizer)
endforeach()
