#!/usr/bin/env bash
# bench-health.sh: the health-check benchmark, in one run.
#
#   scripts/bench-health.sh [-d SECONDS] [-n WORKERS] [-j JITTER_PCT] [-r ROUNDS]
#                           [-R RATE[,RATE...]] [-H] [-I]
#                              (defaults 10 s, 10000 workers, 0%, 3 rounds)
#
# Starts a private ZooKeeper (temp dir, free ports), one dispatch-worker
# playing every worker (--identities N --quiet) and one dispatcherd member,
# which becomes the coordinator, with
#   --check-interval 1000 --check-timeout 500 --check-fall 3 --check-jitter 0
# (fall and jitter are the defaults, passed to be explicit; -j sets the
# jitter); then runs
# bench-health, which
#   A. adds N workers without a check and measures routing (dispatch-bench:
#      closed loop at C=50, depth 1 and 16, and at C=1; open loop at C=50 and
#      each RATE requests a second, a window each, by default an eighth, a
#      quarter and half of what C=50 at depth 1 reached in the first round)
#      and the coordinator's CPU;
#   B. removes them, adds them again checked at the worker, waits until all
#      are up and measures the same while the coordinator probes them, with
#      the probes each identity received per window;
#   C. sets 5 workers to fail and routes until they are gone, timing each
#      from its death to its last appearance in a routing decision.
# With -H each worker is checked at its own address (127.x.y.z, the worker
# listening on 0.0.0.0), one connection per host as in a real fleet;
# without it all are checked at 127.0.0.1, so they share a few connections.
# A and B run in turn, ROUNDS times each (A B A B A B), and the routing
# figures are compared by their medians over the rounds: the machine drifts
# by 10-15% over a minute, more than one pair of windows can separate from
# the effect of probing.
# Prints one table with the targets: probe rate >= N/s (less three standard
# deviations of the counting noise at the window's edges), every identity
# probed every interval (min per window >= window/interval - 1), route p99
# while probing <= 1.5x without, death to last route <= interval x fall +
# timeout. Builds a Release tree in build-bench/ (DSP_BUILD_DIR overrides).
# The machine has 2 cores, shared by ZooKeeper, the worker, the coordinator
# and the load generator: probing adds the worker's CPU to the box, and the
# load generator then waits for a core (schedstat: ~100 ms/s more), which
# shows as routing latency though the coordinator is not slower. With -I
# (isolate) the coordinator runs alone on CPU 0 and everything else on the
# other CPUs (taskset), the load generator at SCHED_FIFO priority 10 if
# this user may (chrt; else at normal priority, and it says so), so that
# the figures are the coordinator's. Needs 2 CPUs or more.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=10
workers=10000
rounds=3
rate=()
distinct=() listen_host=127.0.0.1
isolate=0
interval=1000 timeout=500 fall=3 jitter=0
while (($#)); do
  case $1 in
    -d) secs=${2:?-d needs seconds}; shift 2 ;;
    -n) workers=${2:?-n needs a count}; shift 2 ;;
    -j) jitter=${2:?-j needs a percentage}; shift 2 ;;
    -r) rounds=${2:?-r needs a count}; shift 2 ;;
    -R) rate=(-R "${2:?-R needs requests a second (a comma-separated list)}"); shift 2 ;;
    -H) distinct=(--distinct-hosts) listen_host=0.0.0.0; shift ;;
    -I) isolate=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "bench-health.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

"$root/scripts/setup.sh"

# -I: CPU 0 for the coordinator, the rest for everyone else.
member_cpu=() rest_cpu=() loadgen_prio=() placement="all processes share every CPU"
if ((isolate)); then
  ncpu=$(nproc)
  ((ncpu >= 2)) || { echo "bench-health.sh: -I needs 2 CPUs or more; this machine has $ncpu" >&2; exit 2; }
  member_cpu=(taskset -c 0)
  rest_cpu=(taskset -c "1-$((ncpu - 1))")
  placement="coordinator alone on CPU 0; ZooKeeper, worker and load generator on CPUs 1-$((ncpu - 1))"
  if chrt -f 10 true 2>/dev/null; then
    loadgen_prio=(chrt -f 10)
    placement+=", load generator at SCHED_FIFO 10"
  else
    placement+=", load generator at normal priority (chrt -f refused: no CAP_SYS_NICE)"
  fi
fi
build=${DSP_BUILD_DIR:-$root/build-bench}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target dispatcherd dispatch-worker dispatch-bench bench-health \
  -j"$(nproc)" >/dev/null

work=$(mktemp -d /tmp/dsp-bench-health-XXXXXX)
# Below the ephemeral range: the coordinator's probe connections and the
# clients of tests running alongside hold local ports nc -z cannot see.
port() { "$root/scripts/free_port.sh" || exit 1; }
zk_port=$(port)
member_port=$(port)
while [[ $member_port == "$zk_port" ]]; do member_port=$(port); done
worker_port=$(port)
while [[ $worker_port == "$zk_port" || $worker_port == "$member_port" ]]; do worker_port=$(port); done
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
die() { echo "bench-health.sh: $*" >&2; exit 1; }

# ZooKeeper, configured as scripts/cluster.sh runs it.
"${rest_cpu[@]}" "$root/scripts/zkserver.sh" --standalone "$work/zk" "$zk_port" >"$work/zk.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  [[ "$(echo ruok | nc -q1 -w1 127.0.0.1 "$zk_port" 2>/dev/null)" == imok ]] && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/zk.log" >&2; die "ZooKeeper exited"; }
  sleep 0.1
done

"${rest_cpu[@]}" "$build/bin/dispatch-worker" --listen "$listen_host:$worker_port" --identities "$workers" \
  --quiet >"$work/worker.out" 2>"$work/worker.log" &
worker_pid=$!
pids+=("$worker_pid")
for _ in $(seq 100); do grep -q listening "$work/worker.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$work/worker.out" || { cat "$work/worker.log" >&2; die "the worker did not start"; }

"${member_cpu[@]}" "$build/bin/dispatcherd" --zk "127.0.0.1:$zk_port" --cluster bench-health --id d1 \
  --listen "127.0.0.1:$member_port" --session-timeout 10000 \
  --check-interval "$interval" --check-timeout "$timeout" --check-fall "$fall" \
  --check-jitter "$jitter" --log-level warn 2>"$work/d1.log" &
coord_pid=$!
pids+=("$coord_pid")
# Listening; bench-health waits for it to coordinate (its first request is
# held until then).
for _ in $(seq 100); do
  nc -z 127.0.0.1 "$member_port" 2>/dev/null && break
  kill -0 "$coord_pid" 2>/dev/null || { cat "$work/d1.log" >&2; die "dispatcherd exited"; }
  sleep 0.1
done

rc=0
"${rest_cpu[@]}" "${loadgen_prio[@]}" "$build/bin/bench-health" -s "127.0.0.1:$member_port" -w "127.0.0.1:$worker_port" \
  -n "$workers" -d "$secs" -r "$rounds" "${rate[@]}" "${distinct[@]}" --pid "$coord_pid" --worker-pid "$worker_pid" \
  --interval "$interval" --timeout "$timeout" --fall "$fall" --jitter "$jitter" || rc=$?
kill -0 "$coord_pid" 2>/dev/null || { echo "bench-health.sh: dispatcherd died; its log:" >&2; rc=1; }
if ((rc != 0)) && [[ -s $work/d1.log ]]; then
  echo "--- dispatcherd log (last 40 lines) ---" >&2
  tail -n 40 "$work/d1.log" >&2
fi
echo
echo "dispatcherd: --check-interval $interval --check-timeout $timeout --check-fall $fall" \
  "--check-jitter $jitter --session-timeout 10000 (one member, the coordinator)"
echo "placement: $placement"
exit "$rc"
