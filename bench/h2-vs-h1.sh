#!/usr/bin/env bash
# Data-plane CPU per request through the one pipeline: HTTP/1.1 under wrk against h2c under
# h2load (Debian's nghttp2-client), one stream per connection and 16. The data plane runs
# standalone with one worker on CPU 0; the load generator and the backend share CPU 1. The CPU
# is the data plane's own (utime + stime from /proc), divided by the requests it served.
#
#   bench/h2-vs-h1.sh [--config FILE] [--seconds N]     (GATEWAY_BIN: a saved binary instead
#                                                        of the release build)
set -euo pipefail
cd "$(dirname "$0")/.."

config=bench/proxy-compare.yaml
seconds=10
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in wrk h2load taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nghttp2-client util-linux curl)" >&2; exit 1; }
done
backend=${BENCH_BACKEND:-$HOME/.cache/proxy-bench/target/release/bench-backend}
[[ -x $backend ]] || { echo "missing $backend: run bench/proxy-compare.sh once (it builds it)" >&2; exit 1; }
bin=${GATEWAY_BIN:-target/release/gateway-data-plane}
[[ -n ${GATEWAY_BIN:-} ]] || cargo build --release --bin gateway-data-plane

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
taskset -c 1 "$backend" 127.0.0.1:18080 >/dev/null 2>&1 &
pids+=($!)
taskset -c 0 "$bin" --config "$config" --listen 127.0.0.1:18090 \
  --admin-listen 127.0.0.1:18091 --cache-dir /tmp/gateway-bench-cache --workers 1 \
  >/tmp/h2-vs-h1.log 2>&1 &
dp=$!
pids+=("$dp")
for _ in $(seq 100); do curl -fs http://127.0.0.1:18091/ready >/dev/null && break; sleep 0.1; done
curl -fs http://127.0.0.1:18090/ >/dev/null || { echo "the data plane does not proxy /" >&2; exit 1; }

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$dp/stat"; }

# run NAME COMMAND...: the command's requests (parsed by the caller's sed) against CPU used.
measure() {
  local name=$1 parse=$2; shift 2
  local before after out n
  before=$(cpu)
  out=$("$@" 2>&1)
  after=$(cpu)
  n=$(sed -n "$parse" <<<"$out" | head -1)
  [[ -n $n && $n -gt 0 ]] || { echo "$name: no request count in: $out" >&2; exit 1; }
  awk -v name="$name" -v n="$n" -v t=$((after - before)) -v hz="$ticks" \
    'BEGIN { printf "%-28s %9d requests  %6.1f us of data-plane CPU per request\n", name, n, t * 1e6 / hz / n }'
}

echo "loadavg: $(cat /proc/loadavg)"
taskset -c 1 wrk -t1 -c64 -d2s http://127.0.0.1:18090/ >/dev/null
measure "HTTP/1.1 wrk -c64" 's/^ *\([0-9]*\) requests in.*/\1/p' \
  taskset -c 1 wrk -t1 -c64 -d"${seconds}s" http://127.0.0.1:18090/
for streams in 1 16; do
  taskset -c 1 h2load -c64 -m"$streams" -D2 http://127.0.0.1:18090/ >/dev/null
  measure "h2c h2load -c64 -m$streams" 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' \
    taskset -c 1 h2load -c64 -m"$streams" -D"$seconds" http://127.0.0.1:18090/
done
echo "loadavg: $(cat /proc/loadavg)"
