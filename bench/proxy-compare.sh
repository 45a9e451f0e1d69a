#!/usr/bin/env bash
# The data plane (standalone, one worker) against nginx, haproxy, pingora and hyper with the
# shared side-by-side harness (../shared/bench/README.md). Extra arguments go to the harness.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=${PROXY_COMPARE:-../shared/bench/proxy-compare.sh}
[[ -x $harness ]] || { echo "missing $harness (the shared benchmark harness)" >&2; exit 1; }
cargo build --release --bin gateway-data-plane
"$harness" --candidate-name gateway \
  --candidate-cmd "exec target/release/gateway-data-plane --config bench/proxy-compare.yaml --listen 127.0.0.1:18090 --admin-listen 127.0.0.1:18091 --cache-dir /tmp/gateway-bench-cache --workers 1" \
  --candidate-port 18090 --candidate-ready http://127.0.0.1:18091/ready "$@"
