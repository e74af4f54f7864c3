# server: the request parser as a pure function, and the HTTP API end to end against a
# `modserve serve` child process on the tiny model (curl/libcurl). The official openai
# client's test is a reference test: tests/ref_server.cmake.
ms_add_test(test_server_parse SOURCES test_server_parse.c test_server_util.c LABELS server)
target_link_libraries(test_server_parse PRIVATE PkgConfig::CURL)
ms_add_test(test_server_api SOURCES test_server_api.c test_server_util.c LABELS server)
target_link_libraries(test_server_api PRIVATE PkgConfig::CURL)
add_dependencies(test_server_api modserve)
ms_add_test(test_server_admin SOURCES test_server_admin.c test_server_util.c LABELS server)
target_link_libraries(test_server_admin PRIVATE PkgConfig::CURL)
add_dependencies(test_server_admin modserve)
ms_add_test(test_server_admission SOURCES test_server_admission.c test_server_util.c LABELS server)
target_link_libraries(test_server_admission PRIVATE PkgConfig::CURL)
add_dependencies(test_server_admission modserve)
ms_add_test(test_server_prefix SOURCES test_server_prefix.c test_server_util.c LABELS server)
target_link_libraries(test_server_prefix PRIVATE PkgConfig::CURL)
add_dependencies(test_server_prefix modserve)
