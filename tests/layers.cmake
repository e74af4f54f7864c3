# Layering (DESIGN.md): includes and link lines point down only; server and bench do not
# depend on each other, the binary (server/cli/main.c) sits above both.
add_test(NAME test_layers COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/check_layers.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(test_layers PROPERTIES LABELS cli)
