#!/usr/bin/env bash
# Propagation: N data planes (default 10) on one control plane on a real etcd; C changes
# (default 100); time from `gatewayctl apply` returning to every data plane serving the change.
# Extra arguments go to bench-propagation (--data-planes N --changes C --embedded).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
uptime
exec target/release/bench-propagation "$@"
