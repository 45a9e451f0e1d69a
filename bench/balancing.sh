#!/usr/bin/env bash
# Least-request with active health checks against plain round robin, per core: the data plane
# alone on CPU 0 (one worker), wrk and three of the shared harness's backends on CPU 1. Both
# routes spread over the same three endpoints; /checked's upstream is LeastRequest with active
# checks every second and passive outlier detection. The figure is the data plane's CPU
# (utime + stime) per request; requests per CPU-second is its inverse.
#
#   bench/balancing.sh [--seconds N] [--rounds N]   (GATEWAY_BIN: a saved binary instead of the
#                                                   release build; rounds default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=per-core.sh
source bench/per-core.sh
need wrk taskset curl
setup balancing "$@"

cat >"$run/gateway.yaml" <<YAML
kind: Upstream
name: plain
spec:
  endpoints: [{ address: 127.0.0.1:18081 }, { address: 127.0.0.1:18082 }, { address: 127.0.0.1:18083 }]
---
kind: Upstream
name: checked
spec:
  endpoints: [{ address: 127.0.0.1:18081 }, { address: 127.0.0.1:18082 }, { address: 127.0.0.1:18083 }]
  loadBalancer: { type: LeastRequest }
  healthCheck:
    active: { path: /, interval: 1s, timeout: 0.5s }
    passive: { consecutiveErrors: 5 }
---
kind: Route
name: all
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /checked } }]
      backendRefs: [{ name: checked }]
    - matches: [{ path: { type: PathPrefix, value: / } }]
      backendRefs: [{ name: plain }]
YAML

for port in 18081 18082 18083; do
  taskset -c 1 "$backend" "127.0.0.1:$port" >/dev/null 2>&1 &
  pids+=($!)
done
taskset -c 0 "$bin" --config "$run/gateway.yaml" --listen 127.0.0.1:18290 \
  --admin-listen 127.0.0.1:18291 --cache-dir "$run/cache" --workers 1 >"$run/dp.log" 2>&1 &
dp=$!
pids+=("$dp")
for _ in $(seq 100); do curl -fs http://127.0.0.1:18291/ready >/dev/null && break; sleep 0.1; done
for path in / /checked; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:18290$path")
  [[ $code == 200 ]] || { echo "$path answered $code (log: $run/dp.log)" >&2; exit 1; }
done

echo "loadavg: $(cat /proc/loadavg)"
# Rounds alternate the two loads; the summary is the ratio's median over the rounds.
ratios=()
for round in $(seq "$rounds"); do
  echo "round $round, loadavg: $(cat /proc/loadavg)"
  measure "round robin, 3 endpoints" http://127.0.0.1:18290/; plain=$last_us
  measure "least request + health, 3" http://127.0.0.1:18290/checked
  ratios+=("$(ratio "$plain" "$last_us")")
done
echo "least request + health against round robin, per core, each round: ${ratios[*]}; median $(median "${ratios[@]}")x"
echo "loadavg: $(cat /proc/loadavg)"
