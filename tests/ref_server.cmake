# Reference tests of the server (tests/ref/): the official `openai` Python client against
# `modserve serve` on the tiny model (chat with an image, streaming = non-streaming,
# completions, models, errors as the client's exception types).
ms_add_ref_test(test_openai_client test_openai_client.py)
set_tests_properties(test_openai_client PROPERTIES LABELS "ref;server")
