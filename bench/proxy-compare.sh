#!/usr/bin/env bash
# The data plane (standalone, one worker) against nginx, haproxy, pingora and hyper with the
# shared side-by-side harness (../shared/bench/README.md). Extra arguments go to the harness.
#
# Environment: GATEWAY_BIN (default: the release build, built first), GATEWAY_CONFIG (default
# bench/proxy-compare.yaml; bench/proxy-compare-policies.yaml adds policies and filters),
# GATEWAY_NAME (the candidate's row name, default gateway) -- so that a saved binary and the
# current one can be measured in turn.
set -euo pipefail
cd "$(dirname "$0")/.."
harness=${PROXY_COMPARE:-../shared/bench/proxy-compare.sh}
[[ -x $harness ]] || { echo "missing $harness (the shared benchmark harness)" >&2; exit 1; }
bin=${GATEWAY_BIN:-target/release/gateway-data-plane}
config=${GATEWAY_CONFIG:-bench/proxy-compare.yaml}
name=${GATEWAY_NAME:-gateway}
if [[ -z ${GATEWAY_BIN:-} ]]; then
  cargo build --release --bin gateway-data-plane
fi
"$harness" --candidate-name "$name" \
  --candidate-cmd "exec $bin --config $config --listen 127.0.0.1:18090 --admin-listen 127.0.0.1:18091 --cache-dir /tmp/gateway-bench-cache --workers 1" \
  --candidate-port 18090 --candidate-ready http://127.0.0.1:18091/ready "$@"
