# server: the request parser as a pure function, and the HTTP API end to end against a
# `modserve serve` child process on the tiny model (curl/libcurl, the openai npm client).
ms_add_test(test_server_parse SOURCES test_server_parse.c test_server_util.c LABELS server)
target_link_libraries(test_server_parse PRIVATE PkgConfig::CURL)
