# Tests: ctest runs everything. Label `unit` for pure modules (no sockets, no
# processes), `integration` for real ZooKeeper servers and real processes.

# dsp_unit_test(NAME SOURCE LIBS...): one executable, one ctest entry.
function(dsp_unit_test name src)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${ARGN})
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS unit TIMEOUT 120)
endfunction()

# --- balancer ---
dsp_unit_test(test_balance tests/unit/test_balance.c dsp_balance)
# `dispatchctl simulate` is tested in-process through dsp_simulate_main().
target_sources(test_balance PRIVATE coordinator/simulate.c)
# Allocation-failure injection (test_alloc_failures).
target_link_options(test_balance PRIVATE
  -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc -Wl,--wrap=strdup)
# --- end balancer ---

dsp_unit_test(test_election tests/unit/test_election.c dsp_core)
dsp_unit_test(test_json tests/unit/test_json.c dsp_core)
dsp_unit_test(test_frame tests/unit/test_frame.c dsp_rpc)
dsp_unit_test(test_dedupe tests/unit/test_dedupe.c dsp_core)
dsp_unit_test(test_registry tests/unit/test_registry.c dsp_member)
dsp_unit_test(test_health tests/unit/test_health.c dsp_core)
dsp_unit_test(test_wheel tests/unit/test_wheel.c dsp_core)

include(tests/integration/integration.cmake)
