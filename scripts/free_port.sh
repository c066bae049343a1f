#!/usr/bin/env bash
# free_port.sh: print a loopback TCP port that nothing listens on, between
# 20000 and the start of the kernel's ephemeral range
# (net.ipv4.ip_local_port_range) less 20, so that it cannot be the local
# port of an outgoing connection either (nc -z cannot see those) and a
# block of up to 20 ports above it stays below that range too. Used by the
# scripts and tests that start servers on private ports. Exit 1 when 100
# tries find none.
set -u
low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || low=32768
span=$((${low:-32768} - 20 - 20000))
((span > 0)) || span=1000
for _ in $(seq 100); do
  p=$((20000 + RANDOM % span))
  nc -z 127.0.0.1 "$p" 2>/dev/null || { echo "$p"; exit 0; }
done
echo "free_port.sh: no free port found" >&2
exit 1
