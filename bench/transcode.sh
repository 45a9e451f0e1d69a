#!/usr/bin/env bash
# REST→gRPC transcoding against the plain HTTP proxy path, per core: the data plane alone on
# CPU 0 (one worker), wrk and the backends on CPU 1. Transcoded: wrk POSTs JSON to /v1/echo, the
# data plane turns it into a unary gRPC call to the tonic echo service (`grpc-backend`, H2C)
# and the reply into JSON: a small message; a 10 KiB request with a small reply (like the plain
# POST: 10 KiB in, ~100 B out); and a 10 KiB message echoed (10 KiB each way, twice the JSON). Plain: GET / through the same
# data plane to the shared harness's HTTP/1.1 backend, and the 10 KiB JSON POSTed there too. The figure is the data plane's CPU
# (utime + stime) per request; requests per CPU-second is its inverse.
#
#   bench/transcode.sh [--seconds N] [--rounds N]   (GATEWAY_BIN: a saved binary instead of the
#                                                   release build; rounds default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=per-core.sh
source bench/per-core.sh
need wrk taskset curl python3
setup transcode "$@"
cargo build --release -p integration-tests --bin grpc-backend

cat >"$run/echo.proto" <<'PROTO'
syntax = "proto3";
package echo.v1;
import "google/api/annotations.proto";
service Echo {
  rpc Unary(EchoRequest) returns (EchoReply) {
    option (google.api.http) = { post: "/v1/echo" body: "*" };
  }
}
// `padding` is the bench's own: the backend skips it as an unknown field, so a request can be
// large while its reply stays small, like the plain backend's.
message EchoRequest { string message = 1; uint32 delay_ms = 2; uint32 count = 3; Failure fail = 4; string padding = 15; }
message EchoReply { string message = 1; string backend = 2; }
message Failure { int32 code = 1; string message = 2; bytes details = 3; string trailer = 4; }
PROTO
proto=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$run/echo.proto")
cat >"$run/gateway.yaml" <<YAML
kind: ProtoSet
name: echo
spec:
  files:
    echo/v1/echo.proto: $proto
---
kind: Upstream
name: grpc
spec:
  protocol: H2C
  endpoints: [{ address: 127.0.0.1:18181 }]
---
kind: Upstream
name: plain
spec:
  endpoints: [{ address: 127.0.0.1:18080 }]
---
kind: Route
name: all
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /v1 } }]
      filters:
        - type: GrpcTranscode
          grpcTranscode: { protoSet: echo, services: [echo.v1.Echo] }
      backendRefs: [{ name: grpc }]
    - matches: [{ path: { type: PathPrefix, value: / } }]
      backendRefs: [{ name: plain }]
YAML
python3 - "$run" <<'PY'
import json, sys
run = sys.argv[1]
bodies = {
    "small": {"message": "x" * 5},
    "10k": {"message": "x" * 10 * 1024},
    "10k-in": {"message": "hi", "padding": "x" * 10 * 1024},
}
for name, message in bodies.items():
    body = json.dumps(message)
    with open(f"{run}/{name}.lua", "w") as f:
        f.write('wrk.method = "POST"\n')
        f.write('wrk.headers["content-type"] = "application/json"\n')
        f.write(f"wrk.body = {json.dumps(body)}\n")
PY

taskset -c 1 "$backend" 127.0.0.1:18080 >/dev/null 2>&1 &
pids+=($!)
taskset -c 1 target/release/grpc-backend --listen 127.0.0.1:18181 >/dev/null 2>&1 &
pids+=($!)
taskset -c 0 "$bin" --config "$run/gateway.yaml" --listen 127.0.0.1:18190 \
  --admin-listen 127.0.0.1:18191 --cache-dir "$run/cache" --workers 1 >"$run/dp.log" 2>&1 &
dp=$!
pids+=("$dp")
for _ in $(seq 100); do curl -fs http://127.0.0.1:18191/ready >/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do
  curl -fs -X POST -H 'content-type: application/json' -d '{"message":"hi"}' \
    http://127.0.0.1:18190/v1/echo >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs -X POST -H 'content-type: application/json' -d '{"message":"hi"}' http://127.0.0.1:18190/v1/echo \
  | grep -q '"message":"hi"' || { echo "no transcoded answer (log: $run/dp.log)" >&2; exit 1; }

# Rounds alternate the loads, so that a change in the machine's load over the run moves both
# sides of each ratio alike; the summary is each ratio's median over the rounds.
small=(); big=(); both=()
for round in $(seq "$rounds"); do
  echo "round $round, loadavg: $(cat /proc/loadavg)"
  measure "plain GET /" http://127.0.0.1:18190/; get=$last_us
  measure "transcoded POST, 5 B message" -s "$run/small.lua" http://127.0.0.1:18190/v1/echo
  small+=("$(ratio "$get" "$last_us")")
  measure "plain POST, 10 KiB body" -s "$run/10k.lua" http://127.0.0.1:18190/plain; post=$last_us
  measure "transcoded POST, 10 KiB request" -s "$run/10k-in.lua" http://127.0.0.1:18190/v1/echo
  big+=("$(ratio "$post" "$last_us")")
  measure "transcoded, 10 KiB both ways" -s "$run/10k.lua" http://127.0.0.1:18190/v1/echo
  both+=("$(ratio "$post" "$last_us")")
done
echo "loadavg: $(cat /proc/loadavg)"
echo "per core against plain, each round: 5 B ${small[*]} | 10 KiB request ${big[*]} | 10 KiB both ways ${both[*]}"
echo "median: 5 B $(median "${small[@]}")x, 10 KiB request $(median "${big[@]}")x, 10 KiB both ways $(median "${both[@]}")x"
