#!/usr/bin/env bash
# 10,000 routes: snapshot size on the wire, compile time (in-process), and the real data plane's
# start-up time and memory when it serves them (standalone mode).
set -euo pipefail
cd "$(dirname "$0")/.."
routes=${ROUTES:-10000}
work=$(mktemp -d)
trap 'kill "$dp" 2>/dev/null || true; rm -rf "$work"' EXIT
uptime
cargo bench -p gateway-data-plane --bench routes_10k -- --routes "$routes" --yaml "$work/routes.yaml"
cargo build --release --bin gateway-data-plane
start=$(date +%s%N)
target/release/gateway-data-plane --config "$work/routes.yaml" --listen 127.0.0.1:0 \
  --admin-listen 127.0.0.1:0 --cache-dir "$work/cache" --workers 1 >"$work/out" 2>"$work/err" &
dp=$!
admin=""
for _ in $(seq 1 600); do
  admin=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' "$work/out")
  [[ -n $admin ]] && curl -fs "http://$admin/ready" >/dev/null && break
  sleep 0.05
done
ready=$(date +%s%N)
curl -fs "http://$admin/config"; echo
echo "data plane: $routes routes from a YAML file to ready in $(( (ready - start) / 1000000 )) ms (parse + validate + compile + bind)"
grep -E 'VmRSS|VmHWM' "/proc/$dp/status"
