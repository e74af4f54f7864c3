# Tokenizer against the reference library (tests/ref/): ids, decodes and streaming
# against Hugging Face `tokenizers` on tokenizers it trains (5,000+ corpus lines each).
ms_add_ref_test(test_tokenizers test_tokenizers.py)
set_property(TEST test_tokenizers APPEND PROPERTY LABELS tokenizer)
