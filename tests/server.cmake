# server: the request parser as a pure function, and the HTTP API end to end against a
# `modserve serve` child process on the tiny model (curl/libcurl, the openai npm client).
ms_add_test(test_server_parse SOURCES test_server_parse.c test_server_util.c LABELS server)
target_link_libraries(test_server_parse PRIVATE PkgConfig::CURL)
ms_add_test(test_server_api SOURCES test_server_api.c test_server_util.c LABELS server)
target_link_libraries(test_server_api PRIVATE PkgConfig::CURL)
add_dependencies(test_server_api modserve)
ms_add_test(test_server_admin SOURCES test_server_admin.c test_server_util.c LABELS server)
target_link_libraries(test_server_admin PRIVATE PkgConfig::CURL)
add_dependencies(test_server_admin modserve)
ms_add_test(test_server_node SOURCES test_server_node.c test_server_util.c LABELS server)
target_link_libraries(test_server_node PRIVATE PkgConfig::CURL)
add_dependencies(test_server_node modserve)
