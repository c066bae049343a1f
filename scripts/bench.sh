#!/usr/bin/env bash
# bench.sh: routing throughput and latency beside Redis, in one run.
#
#   scripts/bench.sh [-d SECONDS]      (default 10 per measurement)
#
# Starts a private ZooKeeper and three members (temp dir, free ports) with
# three workers, and a redis-server on a private port; then, with 50
# connections at pipeline depth 1 and 16 (-c/-P as redis-benchmark takes
# them):
#   1. build/bin/dispatch-bench: Route requests straight to the coordinator;
#   2. the same through a follower (forwarded to the coordinator);
#   3. redis-benchmark -t ping (PING_MBULK) against the redis-server.
# Prints one table with the ratios the targets are stated in:
#   direct >= 0.9x Redis throughput, direct p99 <= 2x Redis p99,
#   follower >= 0.7x direct.
# Each tool is its own client (dispatch-bench, redis-benchmark); both are
# single-threaded C on one event loop. The machine has 2 cores, shared by
# server and client.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=10
while (($#)); do
  case $1 in
    -d) secs=${2:?-d needs seconds}; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

"$root/scripts/setup.sh" --bench
build="$root/build-bench"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target dispatcherd dispatchctl dispatch-bench -j"$(nproc)" >/dev/null

work=$(mktemp -d /tmp/dsp-bench-XXXXXX)
# Below the ephemeral range: the coordinator's probe connections and the
# clients of tests running alongside hold local ports nc -z cannot see.
port() { "$root/scripts/free_port.sh" || exit 1; }
export DSP_CLUSTER_DIR="$work/cluster" DSP_BUILD_DIR="$build" DSP_ZK_PORT DSP_BASE_PORT DSP_CLUSTER=bench
export DSP_DEMO_WORKERS=0 # the bench registers its own (unprobed) workers
DSP_ZK_PORT=$(port)
DSP_BASE_PORT=$(($(port) / 10 * 10))
redis_port=$(port)
cleanup() {
  local pid
  "$root/scripts/cluster.sh" down >/dev/null 2>&1 || true
  if [[ -f $work/redis.pid ]] && pid=$(cat "$work/redis.pid") && kill "$pid" 2>/dev/null; then
    # It writes its log and removes its pid file on the way out.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$root/scripts/cluster.sh" up >/dev/null
ctl() { "$build/bin/dispatchctl" -s "127.0.0.1:$((DSP_BASE_PORT + 1)),127.0.0.1:$((DSP_BASE_PORT + 2)),127.0.0.1:$((DSP_BASE_PORT + 3))" "$@"; }
ctl worker add w1 127.0.0.1:9001 --weight 1 >/dev/null
ctl worker add w2 127.0.0.1:9002 --weight 2 >/dev/null
ctl worker add w3 127.0.0.1:9003 --weight 5 >/dev/null
sleep 0.5
coord=$(ctl status | awk '$3 == "coordinator" {print $2}')
follower=$(ctl status | awk '$3 == "follower" {print $2; exit}')
[[ -n $coord && -n $follower ]] || { echo "bench.sh: cluster not ready" >&2; ctl status >&2; exit 1; }

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

declare -A rps p50 p99 p999
run_dispatch() { # name addr P
  local out
  out=$("$build/bin/dispatch-bench" -s "$2" -c 50 -P "$3" -d "$secs")
  rps[$1]=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$out")
  p50[$1]=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$out")
  p99[$1]=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$out")
  p999[$1]=$(sed -n 's/.*p999_ms=\([0-9.]*\).*/\1/p' <<<"$out")
}
run_redis() { # name P n
  local line
  line=$(redis-benchmark -p "$redis_port" -t ping -c 50 -P "$2" -n "$3" --csv 2>/dev/null | grep PING_MBULK)
  IFS=, read -r _ r _ _ l50 _ l99 _ <<<"$(tr -d '"' <<<"$line")"
  rps[$1]=$r; p50[$1]=$l50; p99[$1]=$l99; p999[$1]="-"
}

for P in 1 16; do
  run_dispatch "direct$P" "$coord" "$P"
  run_dispatch "follower$P" "$follower" "$P"
  # About `secs` seconds of Redis at the rate it reached here before.
  if [[ $P == 1 ]]; then n=$((secs * 100000)); else n=$((secs * 1000000)); fi
  run_redis "redis$P" "$P" "$n"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\n%-28s %3s %12s %9s %9s %9s   %s\n' "run (C=50)" P "req/s" "p50 ms" "p99 ms" "p99.9 ms" "ratio"
for P in 1 16; do
  printf '%-28s %3s %12.0f %9s %9s %9s\n' "redis-server PING" "$P" "${rps[redis$P]}" "${p50[redis$P]}" "${p99[redis$P]}" "${p999[redis$P]}"
  printf '%-28s %3s %12.0f %9s %9s %9s   %sx Redis req/s, p99 %sx Redis\n' "route -> coordinator" "$P" \
    "${rps[direct$P]}" "${p50[direct$P]}" "${p99[direct$P]}" "${p999[direct$P]}" \
    "$(ratio "${rps[direct$P]}" "${rps[redis$P]}")" "$(ratio "${p99[direct$P]}" "${p99[redis$P]}")"
  printf '%-28s %3s %12.0f %9s %9s %9s   %sx direct req/s\n' "route -> follower" "$P" \
    "${rps[follower$P]}" "${p50[follower$P]}" "${p99[follower$P]}" "${p999[follower$P]}" \
    "$(ratio "${rps[follower$P]}" "${rps[direct$P]}")"
done
echo
echo "targets: direct >= 0.90x Redis req/s and p99 <= 2x Redis p99; follower >= 0.70x direct"
