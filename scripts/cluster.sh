#!/usr/bin/env bash
# cluster.sh: run a local three-member dispatcher cluster with its own
# private ZooKeeper, for trying things out. Everything lives in .cluster/
# (ignored by git): ZooKeeper's data, logs and pid files.
#
#   scripts/cluster.sh up                 set up, build, start ZooKeeper, d1..d3 and
#                                         three demo workers w1..w3 (dispatch-worker,
#                                         health-checked); starts only what is not running
#   scripts/cluster.sh status             members, pids, roles; leader and epoch
#   scripts/cluster.sh kill-leader [--signal KILL|TERM|STOP]
#   scripts/cluster.sh cont               SIGCONT every stopped member
#   scripts/cluster.sh down               stop everything it started, by pid
#
# Environment: DSP_ZK_PORT (default 2281), DSP_BASE_PORT (members listen on
# BASE+1..BASE+3, demo workers on BASE+11..BASE+13; default 7000),
# DSP_SESSION_TIMEOUT (ms, default 4000), DSP_CLUSTER (default "default"),
# DSP_BUILD_DIR (default build), DSP_CLUSTER_DIR (state, default .cluster),
# DSP_DEMO_WORKERS=0 to start no demo workers.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${DSP_CLUSTER_DIR:-$root/.cluster}
base_port=${DSP_BASE_PORT:-7000}
zk_port=${DSP_ZK_PORT:-2281}
timeout_ms=${DSP_SESSION_TIMEOUT:-4000}
cluster=${DSP_CLUSTER:-default}
build=${DSP_BUILD_DIR:-$root/build}
members=(d1 d2 d3)
workers=(w1 w2 w3)
demo=${DSP_DEMO_WORKERS:-1}
zkcli=/usr/share/zookeeper/bin/zkCli.sh

die() { echo "cluster.sh: $*" >&2; exit 1; }

usage() {
awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

member_port() { echo $((base_port + ${1#d})); }
worker_port() { echo $((base_port + 10 + ${1#w})); }

# Running (or stopped) and not a zombie waiting to be reaped.
alive() {
  local st
  [[ -f $1 ]] || return 1
  st=$(ps -o stat= -p "$(cat "$1")" 2>/dev/null) || return 1
  [[ -n $st && $st != Z* ]]
}

ctl() { "$build/bin/dispatchctl" "$@"; }

leader_id() {
  # The leader znode's id, read from ZooKeeper ("" when none).
  ctl election --zk "127.0.0.1:$zk_port" --cluster "$cluster" --json 2>/dev/null |
    sed -n 's/.*"leader":{"id":"\([^"]*\)".*/\1/p'
}

zk_up() { # three tries: a busy machine can miss one
  local i
  for i in 1 2 3; do
    [[ "$(echo ruok | nc -q1 -w2 127.0.0.1 "$zk_port" 2>/dev/null)" == imok ]] && return 0
  done
  return 1
}

start_zk() {
  if alive "$state/zk.pid"; then return; fi
  if zk_up; then die "port $zk_port already answers ZooKeeper but not ours; set DSP_ZK_PORT"; fi
  nohup "$root/scripts/zkserver.sh" --standalone "$state/zk" "$zk_port" >"$state/zk.log" 2>&1 &
  echo $! >"$state/zk.pid"
  for _ in $(seq 300); do
    zk_up && { echo "ZooKeeper up on 127.0.0.1:$zk_port (pid $(cat "$state/zk.pid"))"; return; }
    alive "$state/zk.pid" || die "ZooKeeper exited; see $state/zk.log"
    sleep 0.1
  done
  die "ZooKeeper did not answer on 127.0.0.1:$zk_port; see $state/zk.log"
}

start_member() {
  local id=$1 port
  port=$(member_port "$id")
  if alive "$state/$id.pid"; then return; fi
  nohup "$build/bin/dispatcherd" --zk "127.0.0.1:$zk_port" --cluster "$cluster" \
    --id "$id" --listen "127.0.0.1:$port" --session-timeout "$timeout_ms" \
    >>"$state/$id.log" 2>&1 &
  echo $! >"$state/$id.pid"
  echo "started $id on 127.0.0.1:$port (pid $!), log $state/$id.log"
}

# A demo worker: a dispatch-worker process, registered (once) with a check.
start_worker() {
  local id=$1 port
  port=$(worker_port "$id")
  if ! alive "$state/$id.pid"; then
    nohup "$build/bin/dispatch-worker" --listen "127.0.0.1:$port" --name "$id" \
      >>"$state/$id.log" 2>&1 &
    echo $! >"$state/$id.pid"
    echo "started worker $id on 127.0.0.1:$port (pid $!), log $state/$id.log"
  fi
  ctl -s "127.0.0.1:$(member_port d1),127.0.0.1:$(member_port d2),127.0.0.1:$(member_port d3)" \
    worker add "$id" "127.0.0.1:$port" --check "http://127.0.0.1:$port/health" \
    >/dev/null 2>&1 || true # already registered
}

cmd_up() {
  "$root/scripts/setup.sh"
  # A build tree keeps the type it was made with (scripts/bench.sh runs us
  # on its Release tree); a new one is RelWithDebInfo.
  if [[ -f $build/CMakeCache.txt ]]; then
    cmake -S "$root" -B "$build" >/dev/null
  else
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "$build" --target dispatcherd dispatchctl dispatch-worker -j"$(nproc)" >/dev/null
  mkdir -p "$state"
  start_zk
  for id in "${members[@]}"; do start_member "$id"; done
  local leader=""
  for _ in $(seq 100); do
    leader=$(leader_id)
    [[ -n $leader ]] && break
    sleep 0.1
  done
  [[ -n $leader ]] || die "no leader after 10 s; see $state/d*.log"
  if [[ $demo != 0 ]]; then
    for id in "${workers[@]}"; do start_worker "$id"; done
  fi
  echo
  cmd_status
  cat <<EOT

Look at the tree with zkCli (every znode holds readable JSON):
  $zkcli -server 127.0.0.1:$zk_port ls /dispatcher/$cluster/election
  $zkcli -server 127.0.0.1:$zk_port get /dispatcher/$cluster/leader
  $zkcli -server 127.0.0.1:$zk_port stat /dispatcher/$cluster/leader
Or, faster:
  $build/bin/dispatchctl election --zk 127.0.0.1:$zk_port --cluster $cluster

Try a failover:  scripts/cluster.sh kill-leader [--signal KILL|TERM|STOP]
Stop it all:     scripts/cluster.sh down
EOT
  if [[ $demo != 0 ]]; then
    cat <<EOT

Route and watch the workers' health:
  $build/bin/dispatchctl -s 127.0.0.1:$(member_port d1),127.0.0.1:$(member_port d2),127.0.0.1:$(member_port d3) route -n 6
  $build/bin/dispatchctl -s 127.0.0.1:$(member_port d1),127.0.0.1:$(member_port d2),127.0.0.1:$(member_port d3) worker ls
Make w2 fail its checks, then recover:
  curl 127.0.0.1:$(worker_port w2)/control/fail;  curl 127.0.0.1:$(worker_port w2)/control/ok
EOT
  fi
}

cmd_status() {
  [[ -d $state ]] || die "no cluster here; run: scripts/cluster.sh up"
  local leader
  leader=$(leader_id || true)
  printf '%-6s %-16s %-8s %-9s %s\n' MEMBER ADDR PID PROCESS ROLE
  for id in "${members[@]}"; do
    local pid="-" proc="down" role="-"
    if [[ -f $state/$id.pid ]]; then
      pid=$(cat "$state/$id.pid")
      if alive "$state/$id.pid"; then
        proc=running
        [[ $(ps -o stat= -p "$pid" 2>/dev/null) == T* ]] && proc=stopped
        if [[ $id == "$leader" ]]; then role=leader; else role=follower; fi
        [[ $proc == stopped ]] && role="$role (frozen)"
      fi
    fi
    printf '%-6s %-16s %-8s %-9s %s\n' "$id" "127.0.0.1:$(member_port "$id")" "$pid" "$proc" "$role"
  done
  for id in "${workers[@]}"; do
    [[ -f $state/$id.pid ]] || continue
    local pid proc=down
    pid=$(cat "$state/$id.pid")
    alive "$state/$id.pid" && proc=running
    printf '%-6s %-16s %-8s %-9s %s\n' "$id" "127.0.0.1:$(worker_port "$id")" "$pid" "$proc" "demo worker"
  done
  echo
  if zk_up; then
    ctl election --zk "127.0.0.1:$zk_port" --cluster "$cluster"
  else
    echo "ZooKeeper on 127.0.0.1:$zk_port is not answering"
  fi
}

cmd_kill_leader() {
  local sig=KILL leader pid
  while (($#)); do
    case $1 in
      --signal) [[ $# -ge 2 ]] || die "--signal needs KILL, TERM or STOP"; sig=$2; shift 2 ;;
      --signal=*) sig=${1#--signal=}; shift ;;
      *) die "kill-leader: unknown argument '$1'" ;;
    esac
  done
  case $sig in KILL|TERM|STOP) ;; *) die "--signal must be KILL, TERM or STOP, not '$sig'" ;; esac
  leader=$(leader_id)
  [[ -n $leader ]] || die "no leader right now (is the cluster up? scripts/cluster.sh status)"
  alive "$state/$leader.pid" || die "leader $leader is not a process this script started"
  pid=$(cat "$state/$leader.pid")
  kill -s "$sig" "$pid"
  echo "sent SIG$sig to leader $leader (pid $pid)"
  case $sig in
    TERM) echo "it closes its session: another member leads within moments" ;;
    KILL) echo "another member leads once ZooKeeper expires its session (${timeout_ms} ms)" ;;
    STOP) echo "it is frozen: another leads after ${timeout_ms} ms; 'scripts/cluster.sh cont' wakes it as a follower" ;;
  esac
  echo "watch: scripts/cluster.sh status; bring it back: scripts/cluster.sh up"
}

cmd_cont() {
  for id in "${members[@]}"; do
    alive "$state/$id.pid" || continue
    [[ $(ps -o stat= -p "$(cat "$state/$id.pid")") == T* ]] || continue
    kill -CONT "$(cat "$state/$id.pid")" && echo "continued $id"
  done
  true
}

stop_pid() {
  local file=$1 name=$2 pid
  alive "$file" || { rm -f "$file"; return; }
  pid=$(cat "$file")
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  rm -f "$file"
  echo "stopped $name (pid $pid)"
}

cmd_down() {
  [[ -d $state ]] || { echo "nothing to stop"; return; }
  for id in "${members[@]}"; do stop_pid "$state/$id.pid" "$id"; done
  for id in "${workers[@]}"; do stop_pid "$state/$id.pid" "worker $id"; done
  stop_pid "$state/zk.pid" ZooKeeper
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  status) shift; cmd_status "$@" ;;
  kill-leader) shift; cmd_kill_leader "$@" ;;
  cont) shift; cmd_cont ;;
  down) shift; cmd_down ;;
  -h|--help|help) usage ;;
  "") usage >&2; exit 2 ;;
  *) echo "cluster.sh: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
