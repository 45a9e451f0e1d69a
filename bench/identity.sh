#!/usr/bin/env bash
# Identity policies against the plain route, per core: the data plane alone on CPU 0 (one
# worker), wrk and the shared harness's backend on CPU 1. Loads: GET / on a route without
# policies; GET /jwt with an RS256 token (a jwt policy with the key inline); GET /jwt-limited,
# the same plus a local rateLimit by client IP set high enough never to refuse; GET
# /jwt-cluster, the same with the limit `scope: Cluster`, shared through a redis-server on CPU 1
# (synced every 50 ms; the Redis calls per second are printed). The figure is the data plane's
# CPU (utime + stime) per request; requests per CPU-second is its inverse.
#
#   bench/identity.sh [--seconds N]     (GATEWAY_BIN: a saved binary instead of the release build)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=per-core.sh
source bench/per-core.sh
need wrk taskset curl python3 openssl redis-server
setup identity "$@"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$run/key.pem" 2>/dev/null
openssl pkey -in "$run/key.pem" -pubout -out "$run/pub.pem"
token=$(python3 - "$run/key.pem" <<'PY'
import base64, json, subprocess, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
claims = {"sub": "bench", "iss": "https://idp.bench", "aud": "api", "exp": int(time.time()) + 3600}
payload = b64(json.dumps(claims).encode())
signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", sys.argv[1]],
                           input=f"{header}.{payload}".encode(), capture_output=True, check=True).stdout
print(f"{header}.{payload}.{b64(signature)}")
PY
)
pem=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$run/pub.pem")
cat >"$run/gateway.yaml" <<YAML
kind: Upstream
name: backend
spec:
  endpoints: [{ address: 127.0.0.1:18080 }]
---
kind: Policy
name: corp-jwt
spec:
  jwt:
    providers:
      - name: corp
        issuer: https://idp.bench
        audiences: [api]
        keyPem: $pem
        algorithms: [RS256]
        forwardClaims: [{ claim: sub, header: x-user }]
---
kind: Policy
name: per-client
spec:
  rateLimit: { limits: [{ requests: 1000000000, per: 1s }], key: ClientIP }
---
kind: Policy
name: per-client-cluster
spec:
  rateLimit: { limits: [{ requests: 1000000000, per: 1s }], key: ClientIP, scope: Cluster }
---
kind: Route
name: all
spec:
  rules:
    - matches: [{ path: { type: PathPrefix, value: /jwt-cluster } }]
      policies: [corp-jwt, per-client-cluster]
      backendRefs: [{ name: backend }]
    - matches: [{ path: { type: PathPrefix, value: /jwt-limited } }]
      policies: [corp-jwt, per-client]
      backendRefs: [{ name: backend }]
    - matches: [{ path: { type: PathPrefix, value: /jwt } }]
      policies: [corp-jwt]
      backendRefs: [{ name: backend }]
    - matches: [{ path: { type: PathPrefix, value: / } }]
      backendRefs: [{ name: backend }]
YAML

taskset -c 1 "$backend" 127.0.0.1:18080 >/dev/null 2>&1 &
pids+=($!)
taskset -c 1 redis-server --port 18379 --save '' --appendonly no >"$run/redis.log" 2>&1 &
pids+=($!)
taskset -c 0 "$bin" --config "$run/gateway.yaml" --listen 127.0.0.1:18190 \
  --admin-listen 127.0.0.1:18191 --cache-dir "$run/cache" --workers 1 \
  --redis-url redis://127.0.0.1:18379 >"$run/dp.log" 2>&1 &
dp=$!
pids+=("$dp")
for _ in $(seq 100); do curl -fs http://127.0.0.1:18191/ready >/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do curl -fs http://127.0.0.1:18191/metrics | grep -q '^gateway_redis_up 1' && break; sleep 0.1; done
for path in / /jwt /jwt-limited /jwt-cluster; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "http://127.0.0.1:18190$path")
  [[ $code == 200 ]] || { echo "$path answered $code (log: $run/dp.log)" >&2; exit 1; }
done
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18190/jwt)
[[ $code == 401 ]] || { echo "/jwt without a token answered $code" >&2; exit 1; }

echo "loadavg: $(cat /proc/loadavg)"
measure "plain GET /" http://127.0.0.1:18190/
measure "jwt RS256" -H "authorization: Bearer $token" http://127.0.0.1:18190/jwt
measure "jwt RS256 + local rate limit" -H "authorization: Bearer $token" http://127.0.0.1:18190/jwt-limited
calls() { curl -fs http://127.0.0.1:18191/metrics | awk '/^gateway_redis_calls_total/ {print $2}'; }
before=$(calls); started=$(date +%s.%N)
measure "jwt RS256 + Cluster rate limit (Redis)" -H "authorization: Bearer $token" http://127.0.0.1:18190/jwt-cluster
after=$(calls); ended=$(date +%s.%N)
echo "Redis script calls per second during the Cluster run: $(python3 -c "print(round(($after - $before) / ($ended - $started), 1))")"
echo "loadavg: $(cat /proc/loadavg)"
