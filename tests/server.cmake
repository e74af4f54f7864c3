# server: the request parser as a pure function, and the HTTP API end to end against a
# `modserve serve` child process on the tiny model (curl/libcurl). The official openai
# client's test is a reference test: tests/ref_server.cmake.
ms_add_test(test_server_parse SOURCES test_server_parse.c test_server_util.c LABELS server)
target_link_libraries(test_server_parse PRIVATE PkgConfig::CURL)
# A test that runs the real binary as a server: tests/NAME.c with the server helpers.
function(ms_add_server_test name)
  ms_add_test(${name} SOURCES ${name}.c test_server_util.c LABELS server)
  target_link_libraries(${name} PRIVATE PkgConfig::CURL)
  add_dependencies(${name} modserve)
endfunction()
foreach(t api admin admission strict conn prefix autoscale)
  ms_add_server_test(test_server_${t})
endforeach()
