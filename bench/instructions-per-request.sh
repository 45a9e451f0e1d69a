#!/usr/bin/env bash
# User-space instructions per request of the data plane under callgrind, which counts
# instructions rather than time, so the figure does not move with the machine's load: HTTP/1.1
# and h2c (one stream per connection, and 16), a fixed number of requests each after a warm-up.
#
#   bench/instructions-per-request.sh [BINARY] [REQUESTS]     (needs valgrind, h2load, curl and
#                                                               the shared bench's backend)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/gateway-data-plane}; n=${2:-4000}
B=$HOME/.cache/proxy-bench/target/release/bench-backend
$B 127.0.0.1:18080 >/dev/null 2>&1 & bp=$!
rm -f /tmp/cg.out*
valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out.%p --instr-atstart=no $bin --config bench/proxy-compare.yaml --listen 127.0.0.1:18090 --admin-listen 127.0.0.1:18091 --cache-dir /tmp/c3 --workers 1 >/dev/null 2>&1 & dp=$!
for _ in $(seq 200); do curl -fs http://127.0.0.1:18091/ready >/dev/null && break; sleep 0.2; done
measure() {
  local name=$1; shift
  "$@" >/dev/null 2>&1   # warm-up, pools filled
  callgrind_control -i on $dp >/dev/null
  "$@" > /tmp/cg-load.txt 2>&1
  callgrind_control -i off $dp >/dev/null
  callgrind_control -d $dp >/dev/null
  sleep 1
  local f=$(ls -t /tmp/cg.out.*.* | head -1)
  local ir=$(grep -m1 "^totals:" "$f" | awk '{print $2}')
  echo "$name: $(( ir / n )) instructions per request (user space)"
  callgrind_control -z $dp >/dev/null
}
measure h1 h2load --h1 -n$n -c16 -m1 http://127.0.0.1:18090/
measure h2m1 h2load -n$n -c16 -m1 http://127.0.0.1:18090/
measure h2m16 h2load -n$n -c16 -m16 http://127.0.0.1:18090/
kill $dp $bp; wait 2>/dev/null || true
