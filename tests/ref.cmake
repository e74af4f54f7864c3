# Reference tests (tests/ref/): modserve against the real libraries (transformers,
# tokenizers, Pillow, the openai client) in the Python environment of scripts/pyref.sh.
# ms_add_ref_test(NAME SCRIPT [ARGS...]) runs tests/ref/SCRIPT with that environment's
# python, the modserve binary and the source folder; it fails when the environment is
# missing and skips only with MODSERVE_NO_PYREF=1 (tests/ref/run.sh).
set(MODSERVE_PYREF_PYTHON "" CACHE FILEPATH "python of the reference environment (scripts/pyref.sh)")
function(ms_add_ref_test name script)
  add_test(NAME ${name}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/ref/run.sh "${MODSERVE_PYREF_PYTHON}"
                   ${CMAKE_CURRENT_SOURCE_DIR}/ref/${script}
                   --modserve ${MODSERVE_BIN} --source ${CMAKE_SOURCE_DIR}
                   --work ${MODSERVE_TEST_DATA}/${name} ${ARGN}
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 LABELS ref)
endfunction()
# The reference tests themselves are registered by tests/ref_*.cmake, one fragment per area.
