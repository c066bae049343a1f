#!/usr/bin/env bash
# test_cluster_sh.sh BUILD_DIR: the README's front door, end to end:
# scripts/cluster.sh up / status / kill-leader / down, on private ports and a
# temp state dir so a demo cluster of the user's is never touched.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export DSP_BUILD_DIR=${1:?usage: test_cluster_sh.sh BUILD_DIR}
build=$DSP_BUILD_DIR
export DSP_CLUSTER_DIR
DSP_CLUSTER_DIR=$(mktemp -d /tmp/dsp-cluster-sh-XXXXXX)
port() { "$root/scripts/free_port.sh" || exit 1; } # below the ephemeral range
export DSP_ZK_PORT DSP_BASE_PORT DSP_SESSION_TIMEOUT=4000
DSP_ZK_PORT=$(port)
DSP_BASE_PORT=$(($(port) / 10 * 10))
cs="$root/scripts/cluster.sh"
passed=0 failed=0
trap '"$cs" down >/dev/null 2>&1; rm -rf "$DSP_CLUSTER_DIR"' EXIT
check() { # check NAME CMD...: run CMD, count the outcome
  if "${@:2}"; then passed=$((passed + 1)); echo "ok $1"
  else failed=$((failed + 1)); echo "FAIL $1"; fi
}
leader_in_status() { "$cs" status | awk '$5 == "leader" {print $1}'; }
one_leader() { [[ $(leader_in_status | wc -l) -eq 1 ]]; }
wait_new_leader() { # wait_new_leader OLD
  for _ in $(seq 200); do
    local l; l=$(leader_in_status)
    [[ -n $l && $l != "$1" ]] && return 0
    sleep 0.1
  done
  return 1
}

out=$("$cs" up 2>&1); rc=$?
echo "$out" | sed 's/^/  | /'
check "up exits 0" test "$rc" -eq 0
check "up prints the zkCli commands" grep -q "zkCli.sh -server 127.0.0.1:$DSP_ZK_PORT get /dispatcher/default/leader" <<<"$out"
check "up shows one leader" one_leader
ctl() { "$1/bin/dispatchctl" -s "127.0.0.1:$((DSP_BASE_PORT + 1)),127.0.0.1:$((DSP_BASE_PORT + 2)),127.0.0.1:$((DSP_BASE_PORT + 3))" "${@:2}"; }
workers_up() { # the three demo workers, health-checked and up
  for _ in $(seq 200); do
    [[ $(ctl "$build" worker ls 2>/dev/null | awk '$4 == "up"' | wc -l) -eq 3 ]] && return 0
    sleep 0.1
  done
  ctl "$build" worker ls >&2
  return 1
}
check "status lists the demo workers" bash -c "'$cs' status | grep -c 'demo worker' | grep -qx 3"
check "the demo workers are checked and up" workers_up
check "routes name the demo workers" bash -c "[[ \$('$build/bin/dispatchctl' -s 127.0.0.1:$((DSP_BASE_PORT + 2)) route -n 30 --strategy round-robin | sort -u | tr '\n' ' ') == 'w1 w2 w3 ' ]]"
old=$(leader_in_status)
check "status names the epoch" bash -c "'$cs' status | grep -q 'epoch [0-9]'"
check "kill-leader rejects a bad signal" bash -c "! '$cs' kill-leader --signal HUP 2>/dev/null"
check "kill-leader TERM" "$cs" kill-leader --signal TERM
check "another member leads after TERM" wait_new_leader "$old"
check "up restarts the stopped member" bash -c "'$cs' up >/dev/null 2>&1 && '$cs' status | grep -c '^d[0-9].*running' | grep -qx 3"
old=$(leader_in_status)
check "kill-leader KILL" "$cs" kill-leader --signal KILL
check "another member leads after KILL" wait_new_leader "$old"
pids=$(cat "$DSP_CLUSTER_DIR"/*.pid 2>/dev/null)
check "down" "$cs" down
still=0
for p in $pids; do st=$(ps -o stat= -p "$p" 2>/dev/null); [[ -n $st && $st != Z* ]] && still=1; done
check "down stops every process it started" test "$still" -eq 0
check "unknown command is a usage error" bash -c "'$cs' frobnicate >/dev/null 2>&1; test \$? -eq 2"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
