#!/usr/bin/env bash
# A slow backend behind a circuit breaker must not slow another route of the same data plane:
# the fast route's latency alone, then while 64 clients send 2,000 requests/s in all (h2load
# --rps, HTTP/1.1) to a route whose backend takes 2 s to answer (its upstream's circuitBreaker
# holds 16 requests in flight; the rest get 503 `upstream_overloaded` at once). A closed-loop
# client (wrk) on the slow route would measure something else: answered at once, it sends
# the next request at once, and the data plane's one core goes to refusing them. The data plane has CPU 0 (one worker); wrk, the shared
# harness's fast backend and the demo backend (slow) share CPU 1.
#
#   bench/breaker.sh [--seconds N] [--rounds N]   (GATEWAY_BIN: a saved binary instead of the
#                                                 release build; rounds default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=per-core.sh
source bench/per-core.sh
need wrk h2load taskset curl
setup breaker "$@"
slow=target/release/demo-backend
[[ -x $slow ]] || cargo build --release -p integration-tests --bin demo-backend

cat >"$run/gateway.yaml" <<YAML
kind: Upstream
name: fast
spec:
  endpoints: [{ address: 127.0.0.1:18581 }]
---
kind: Upstream
name: busy
spec:
  endpoints: [{ address: 127.0.0.1:18583 }]
---
kind: Upstream
name: slow
spec:
  endpoints: [{ address: 127.0.0.1:18582 }]
  circuitBreaker: { maxRequests: 16 }
---
kind: Route
name: all
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /slow } }]
      backendRefs: [{ name: slow }]
    - matches: [{ path: { type: PathPrefix, value: /busy } }]
      backendRefs: [{ name: busy }]
    - matches: [{ path: { type: PathPrefix, value: / } }]
      backendRefs: [{ name: fast }]
YAML

taskset -c 1 "$backend" 127.0.0.1:18581 >/dev/null 2>&1 &
pids+=($!)
taskset -c 1 "$backend" 127.0.0.1:18583 >/dev/null 2>&1 &
pids+=($!)
taskset -c 1 "$slow" --listen 127.0.0.1:18582 --name slow >/dev/null 2>&1 &
pids+=($!)
taskset -c 0 "$bin" --config "$run/gateway.yaml" --listen 127.0.0.1:18590 \
  --admin-listen 127.0.0.1:18591 --cache-dir "$run/cache" --workers 1 >"$run/dp.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs http://127.0.0.1:18591/ready >/dev/null && break; sleep 0.1; done

p99() { sed -n 's/^ *99% *\(.*\)$/\1/p' <<<"$1"; }
# wrk's latency (`412.00us`, `1.02ms`, `2.00s`) in µs.
us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1e6 }'; }
rate() { sed -n 's/^Requests\/sec: *\(.*\)$/\1/p' <<<"$1"; }

# The fast route's latency is measured paced (each of 8 connections waits 1 ms between
# requests, about 7,000 requests/s, a tenth of what the core can do) so that it shows what a
# request costs and waits for, not the queue of a saturated core: saturated, any added work
# (here 2,000 refusals a second) lengthens the queue and so every percentile, whatever the
# breaker does. Rounds alternate alone / beside so that the machine's load moves both alike.
cat >"$run/pace.lua" <<'LUA'
function delay()
  return 1
end
LUA
fast() { taskset -c 1 wrk -t1 -c8 -d"${seconds}s" --latency -s "$run/pace.lua" http://127.0.0.1:18590/; }
taskset -c 1 wrk -t1 -c16 -d2s http://127.0.0.1:18590/ >/dev/null
# Three loads a round: the fast route alone; beside 2,000 requests/s to a healthy route (what
# that much traffic costs the fast route anyway, the fair baseline); beside the same rate to
# the slow route behind the breaker (what the slow backend adds).
busy() {
  taskset -c 1 h2load --h1 -c64 --rps 31 -D "$((seconds + 4))" "$1" >"$run/h2load.txt" 2>&1 &
  hammer=$!
  sleep 2
  fast
  wait "$hammer" || true
}
alone_p99=(); busy_p99=(); beside_p99=()
for round in $(seq "$rounds"); do
  echo "round $round, loadavg: $(cat /proc/loadavg)"
  alone=$(fast)
  echo "  fast route alone:            $(rate "$alone") req/s, p99 $(p99 "$alone")"
  alone_p99+=("$(us "$(p99 "$alone")")")
  healthy=$(busy http://127.0.0.1:18590/busy)
  echo "  beside a healthy route:      $(rate "$healthy") req/s, p99 $(p99 "$healthy")"
  busy_p99+=("$(us "$(p99 "$healthy")")")
  beside=$(busy "http://127.0.0.1:18590/slow/slow?ms=2000")
  echo "  beside the slow route:       $(rate "$beside") req/s, p99 $(p99 "$beside")"
  echo "  the slow route (h2load):     $(grep -E '^requests:|^status codes:' "$run/h2load.txt" | tr '\n' ' ')"
  beside_p99+=("$(us "$(p99 "$beside")")")
done
echo "loadavg: $(cat /proc/loadavg)"
a=$(median "${alone_p99[@]}"); h=$(median "${busy_p99[@]}"); b=$(median "${beside_p99[@]}")
echo "fast route p99, median of $rounds: alone ${a} us; beside 2,000 req/s to a healthy route ${h} us; beside the slow route ${b} us"
echo "beside the slow route against beside the healthy one: $(ratio "$b" "$h")x; against alone: $(ratio "$b" "$a")x"
