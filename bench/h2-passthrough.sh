#!/usr/bin/env bash
# HTTP/2 passthrough: h2load (Debian's nghttp2-client) straight to an h2c backend, and through
# the data plane to the same backend as an H2C upstream (one multiplexed upstream connection
# per worker's need), with the data plane's own CPU (utime + stime from /proc) per request.
# The data plane runs standalone with one worker on CPU 0; h2load and the backend share CPU 1.
# The backend is the repo's demo-backend (hyper, HTTP/1.1 and h2c by prior knowledge), which
# answers a small JSON echo. With --grpc, the load is gRPC unary calls (h2load POSTs a framed
# message with `content-type: application/grpc`) to the tonic echo service (grpc-backend).
# With --http1-upstream, the same HTTP/2 load goes to the backend over pooled HTTP/1.1 instead,
# for what the HTTP/2 upstream itself costs.
#
#   bench/h2-passthrough.sh [--seconds N] [--grpc | --http1-upstream]
#                           (GATEWAY_BIN: a saved binary instead of the release build)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
grpc=false
protocol=H2C
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --grpc) grpc=true; shift ;;
    --http1-upstream) protocol=HTTP1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in h2load taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nghttp2-client util-linux curl)" >&2; exit 1; }
done
bin=${GATEWAY_BIN:-target/release/gateway-data-plane}
if [[ -z ${GATEWAY_BIN:-} ]]; then
  cargo build --release --bin gateway-data-plane
fi
cargo build --release -p integration-tests --bin demo-backend --bin grpc-backend

run=$(mktemp -d /tmp/h2-passthrough.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

if $grpc; then
  taskset -c 1 target/release/grpc-backend --listen 127.0.0.1:18180 >/dev/null 2>&1 &
  # One echo.v1.EchoRequest { message: "hello" } in a gRPC frame: no compression, length 7.
  printf '\x00\x00\x00\x00\x07\x0a\x05hello' >"$run/request.bin"
  target=/echo.v1.Echo/Unary
  load=(-d "$run/request.bin" -H 'content-type: application/grpc' -H 'te: trailers')
else
  taskset -c 1 target/release/demo-backend --listen 127.0.0.1:18180 >/dev/null 2>&1 &
  target=/
  load=()
fi
pids+=($!)
cat >"$run/gateway.yaml" <<YAML
kind: Upstream
name: backend
spec:
  protocol: $protocol
  endpoints: [{ address: 127.0.0.1:18180 }]
---
kind: Route
name: all
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: / } }]
      backendRefs: [{ name: backend }]
YAML
taskset -c 0 "$bin" --config "$run/gateway.yaml" --listen 127.0.0.1:18190 \
  --admin-listen 127.0.0.1:18191 --cache-dir "$run/cache" --workers 1 >"$run/dp.log" 2>&1 &
dp=$!
pids+=("$dp")
for _ in $(seq 100); do curl -fs http://127.0.0.1:18191/ready >/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do h2load -n1 "${load[@]}" "http://127.0.0.1:18180$target" 2>/dev/null | grep -q '1 succeeded' && break; sleep 0.1; done
h2load -n1 "${load[@]}" "http://127.0.0.1:18190$target" | grep -q '1 succeeded' \
  || { echo "the data plane does not pass $target through (log: $run/dp.log)" >&2; exit 1; }

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$dp/stat"; }

# run NAME PORT: h2load against the port; the data plane's CPU per request when it is the gateway.
run() {
  local name=$1 port=$2 streams=$3 before after out n rps mean
  taskset -c 1 h2load -c16 -m"$streams" -D2 "${load[@]}" "http://127.0.0.1:$port$target" >/dev/null
  before=$(cpu)
  out=$(taskset -c 1 h2load -c16 -m"$streams" -D"$seconds" "${load[@]}" "http://127.0.0.1:$port$target" 2>&1)
  after=$(cpu)
  n=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out" | head -1)
  rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out" | head -1)
  mean=$(sed -n 's/^time for request: *[^ ]* *[^ ]* *\([^ ]*\).*/\1/p' <<<"$out" | head -1)
  [[ -n $n && $n -gt 0 ]] || { echo "$name: no request count in: $out" >&2; exit 1; }
  if [[ $port == 18190 ]]; then
    awk -v name="$name" -v n="$n" -v t=$((after - before)) -v hz="$ticks" -v rps="$rps" -v mean="$mean" \
      'BEGIN { printf "%-34s %10s req/s  mean %8s  %6.1f us of data-plane CPU per request\n", name, rps, mean, t * 1e6 / hz / n }'
  else
    printf "%-34s %10s req/s  mean %8s\n" "$name" "$rps" "$mean"
  fi
}

echo "upstream protocol: $protocol; loadavg: $(cat /proc/loadavg)"
for streams in 1 16; do
  run "direct -c16 -m$streams" 18180 "$streams"
  run "through the gateway -c16 -m$streams" 18190 "$streams"
done
echo "loadavg: $(cat /proc/loadavg)"
