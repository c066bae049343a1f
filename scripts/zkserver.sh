#!/usr/bin/env bash
# zkserver.sh CFG: run Debian's ZooKeeper server in the foreground with the
# zoo.cfg at CFG. It execs java, so the caller's pid is the server's pid.
# Used by the test harness (tests/harness.c), which writes its own CFG.
#
# zkserver.sh --standalone DIR PORT: the same with a zoo.cfg written into
# DIR (data in DIR/data) for one local server on 127.0.0.1:PORT, as
# scripts/cluster.sh and scripts/bench-health.sh run it.
set -euo pipefail
if [[ ${1:-} == --standalone ]]; then
  dir=${2:?usage: zkserver.sh --standalone DIR PORT}
  port=${3:?usage: zkserver.sh --standalone DIR PORT}
  mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
minSessionTimeout=1000
maxSessionTimeout=60000
4lw.commands.whitelist=ruok,stat,srvr,mntr,cons,wchc,wchp,dump
admin.enableServer=false
CFG
  set -- "$dir/zoo.cfg"
fi
cfg=${1:?usage: zkserver.sh PATH/TO/zoo.cfg | --standalone DIR PORT}
[[ -r $cfg ]] || { echo "zkserver.sh: cannot read $cfg" >&2; exit 2; }
jar=/usr/share/java/zookeeper.jar
[[ -r $jar ]] || { echo "zkserver.sh: $jar missing: run scripts/setup.sh" >&2; exit 1; }
command -v java >/dev/null || { echo "zkserver.sh: java missing: run scripts/setup.sh" >&2; exit 1; }
# slf4j-simple (a dependency of Debian's zookeeper) prints warnings to stderr.
cp="/etc/zookeeper/conf:$jar:/usr/share/java/slf4j-simple.jar"
exec java -Xmx192m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dorg.slf4j.simpleLogger.defaultLogLevel="${ZK_LOG_LEVEL:-warn}" \
  -Dzookeeper.admin.enableServer=false \
  -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain "$cfg"
