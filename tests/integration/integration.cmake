# Integration tests: real ZooKeeper servers (Debian's package, started by the
# harness on private ports) and real dispatcherd processes. Each scenario is
# its own ctest entry so they can run in parallel and fail independently.
add_library(dsp_harness STATIC tests/harness.c)
target_include_directories(dsp_harness PUBLIC tests)
target_link_libraries(dsp_harness PUBLIC zookeeper_st)

# dsp_scenarios(EXE PREFIX NAME...): one ctest entry per scenario of EXE.
function(dsp_scenarios exe prefix)
  foreach(t ${ARGN})
    add_test(NAME ${prefix}.${t} COMMAND ${exe} test_${t})
    set_tests_properties(${prefix}.${t} PROPERTIES
      LABELS integration
      TIMEOUT 300
      ENVIRONMENT "DSP_BIN_DIR=${CMAKE_BINARY_DIR}/bin;DSP_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  endforeach()
endfunction()

add_executable(test_cluster tests/integration/test_cluster.c)
target_link_libraries(test_cluster PRIVATE dsp_harness dsp_core)
add_dependencies(test_cluster dispatcherd dispatchctl)

dsp_scenarios(test_cluster cluster three_members failover_term failover_kill frozen_leader
  zk_outage_short zk_outage_long deleted_parent duplicate_id ensemble bad_flags
  hand_written_znodes ctl_election)

# The README's scripts/cluster.sh, end to end on private ports.
add_test(NAME cluster_sh COMMAND ${CMAKE_SOURCE_DIR}/tests/integration/test_cluster_sh.sh
                                 ${CMAKE_BINARY_DIR})
set_tests_properties(cluster_sh PROPERTIES LABELS integration TIMEOUT 300)

# The RPC of real members: operations, pipelining, bad input.
add_executable(test_rpc tests/integration/test_rpc.c)
target_link_libraries(test_rpc PRIVATE dsp_harness dsp_rpc)
add_dependencies(test_rpc dispatcherd dispatch-bench bench-health)
dsp_scenarios(test_rpc rpc bad_input pipeline operations client_failover listen_in_use
  registry global_sequence leader_killed_under_load frozen_coordinator bench_tool)

# dispatch-worker, the controllable HTTP worker (no ZooKeeper).
add_executable(test_worker tests/integration/test_worker.c)
target_link_libraries(test_worker PRIVATE dsp_harness PkgConfig::CURL)
add_dependencies(test_worker dispatch-worker)
dsp_scenarios(test_worker worker flags health modes hang slow pipeline bad_requests stats
  signals exit sigterm many)

# HTTP health probes against an in-test responder on 127.0.0.1 (no ZooKeeper).
add_executable(test_probe tests/integration/test_probe.c)
target_include_directories(test_probe PRIVATE ${CMAKE_SOURCE_DIR}/tests)
target_link_libraries(test_probe PRIVATE dsp_probe)
dsp_scenarios(test_probe probe ok status body body_too_large redirect refused local timeout dns
  cancel idle_closed many close close_in_callback bad_args bench many_hosts)

# Health checking end to end: real members, real HTTP workers.
add_executable(test_checks tests/integration/test_checks.c)
target_link_libraries(test_checks PRIVATE dsp_harness dsp_rpc)
add_dependencies(test_checks dispatcherd dispatchctl dispatch-worker)
dsp_scenarios(test_checks health killed_and_recovered hanging_worker heartbeat passive
  dead_then_failover bad_settings rejoin_after_failover big_forward inflight_cap
  local_failures)
