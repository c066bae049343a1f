#!/usr/bin/env bash
# zkserver.sh CFG: run Debian's ZooKeeper server in the foreground with the
# zoo.cfg at CFG. It execs java, so the caller's pid is the server's pid.
# Used by scripts/cluster.sh and by the test harness (tests/harness.c).
set -euo pipefail
cfg=${1:?usage: zkserver.sh PATH/TO/zoo.cfg}
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
