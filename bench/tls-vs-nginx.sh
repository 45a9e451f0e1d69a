#!/usr/bin/env bash
# TLS termination, the data plane against nginx, each alone on CPU 0 with one worker, the load
# generator and the shared harness's backend on CPU 1: the proxy's own CPU (utime + stime from
# /proc, its whole process) per request, for
#   - kept-alive TLS connections (wrk -c64: one handshake per connection, then requests), and
#   - a new TLS handshake per request (wrk with `Connection: close`: every request reconnects
#     with a full handshake; wrk does not resume sessions).
# Both terminate with the same ECDSA P-256 certificate (TLS 1.3, the clients' default; nginx
# is told to offer it) and forward over keep-alive HTTP/1.1 to the backend. Then openssl s_time
# (one connection at a time) with TLS 1.2 and TLS 1.3 forced, resumed and full handshakes: the
# proxy's CPU per connection.
#
#   bench/tls-vs-nginx.sh [--seconds N] [--rounds R]   (GATEWAY_BIN: a saved binary instead of
#                                                       the release build)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
rounds=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in wrk nginx openssl taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nginx openssl util-linux curl)" >&2; exit 1; }
done
backend=${BENCH_BACKEND:-$HOME/.cache/proxy-bench/target/release/bench-backend}
[[ -x $backend ]] || { echo "missing $backend: run bench/proxy-compare.sh once (it builds it)" >&2; exit 1; }
bin=${GATEWAY_BIN:-target/release/gateway-data-plane}
[[ -n ${GATEWAY_BIN:-} ]] || cargo build --release --bin gateway-data-plane

run=$(mktemp -d /tmp/tls-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
  -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
# The key as PKCS#8 (what `openssl req` writes), as the Certificate resource takes it.
json() { python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$1"; }
cat bench/proxy-compare.yaml > "$run/gateway.yaml"
cat >>"$run/gateway.yaml" <<YAML
---
kind: Certificate
name: bench
spec:
  hostnames: [bench.test]
  default: true
  certificatePem: $(json "$run/cert.pem")
  privateKeyPem: $(json "$run/key.pem")
YAML
mkdir -p "$run/nginx/tmp"
cat >"$run/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid nginx.pid;
error_log error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    tcp_nodelay on;
    client_body_temp_path tmp;
    proxy_temp_path tmp;
    fastcgi_temp_path tmp;
    uwsgi_temp_path tmp;
    scgi_temp_path tmp;
    ssl_session_cache shared:SSL:10m;
    # nginx 1.22 (Debian bookworm) offers TLS 1.0-1.2 only unless told: without this line it
    # negotiates TLS 1.2, whose resumption skips the key exchange, against our TLS 1.3.
    ssl_protocols TLSv1.2 TLSv1.3;
    upstream backend { server 127.0.0.1:18080; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:18443 ssl backlog=4096;
        ssl_certificate $run/cert.pem;
        ssl_certificate_key $run/key.pem;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX

taskset -c 1 "$backend" 127.0.0.1:18080 >/dev/null 2>&1 &
pids+=($!)
taskset -c 0 nginx -p "$run/nginx/" -c "$run/nginx/nginx.conf" >/dev/null 2>&1 &
nginx_master=$!
pids+=("$nginx_master")
taskset -c 0 "$bin" --config "$run/gateway.yaml" --listen 127.0.0.1:18090 --tls-listen 127.0.0.1:18444 \
  --admin-listen 127.0.0.1:18091 --cache-dir "$run/cache" --workers 1 >"$run/dp.log" 2>&1 &
dp=$!
pids+=("$dp")
for _ in $(seq 100); do curl -fs http://127.0.0.1:18091/ready >/dev/null && break; sleep 0.1; done
for port in 18443 18444; do
  curl -fsk --resolve "bench.test:$port:127.0.0.1" "https://bench.test:$port/" >/dev/null \
    || { echo "nothing proxies TLS on $port (see $run)" >&2; exit 1; }
done

ticks=$(getconf CLK_TCK)
# The CPU of a process and its children (nginx's worker is the master's child).
cpu() { local total=0; for p in $1 $(pgrep -P "$1" || true); do total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$total"; }

measure() {
  local name=$1 pid=$2; shift 2
  local before after out n
  before=$(cpu "$pid")
  out=$(taskset -c 1 wrk "$@" 2>&1)
  after=$(cpu "$pid")
  n=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out" | head -1)
  errors=$(sed -n 's/^ *Socket errors: \(.*\)/\1/p; s/^ *Non-2xx.*: \([0-9]*\)/non-2xx \1/p' <<<"$out" | tr '\n' ' ')
  [[ -n $n && $n -gt 0 ]] || { echo "$name: no request count in: $out" >&2; exit 1; }
  awk -v name="$name" -v n="$n" -v t=$((after - before)) -v hz="$ticks" -v s="$seconds" -v e="$errors" \
    'BEGIN { printf "%-34s %8d req %8.0f req/s %7.1f us CPU/req %s\n", name, n, n / s, t * 1e6 / hz / n, e }'
}

# stime NAME PID PORT VERSION MODE: openssl s_time, one connection after another (each with a
# GET /), TLS 1.2 or 1.3 forced by the client, every handshake resumed (reuse) or full (new).
stime() {
  local name=$1 pid=$2 port=$3 version=$4 mode=$5 before after out n
  before=$(cpu "$pid")
  out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$port" "-$mode" "-$version" -time "$seconds" -www / 2>&1)
  after=$(cpu "$pid")
  n=$(sed -n 's/^\([0-9]*\) connections in [0-9.]* real.*/\1/p' <<<"$out" | tail -1)
  [[ -n $n && $n -gt 0 ]] || { echo "$name: no connection count in: $out" >&2; exit 1; }
  awk -v name="$name" -v n="$n" -v t=$((after - before)) -v hz="$ticks" -v s="$seconds" \
    'BEGIN { printf "%-34s %8d conn %8.0f conn/s %7.1f us CPU/conn\n", name, n, n / s, t * 1e6 / hz / n }'
}

echo "loadavg: $(cat /proc/loadavg)"
for round in $(seq "$rounds"); do
  for target in nginx:18443:$nginx_master gateway:18444:$dp; do
    IFS=: read -r name port pid <<<"$target"
    url="https://127.0.0.1:$port/"
    taskset -c 1 wrk -t1 -c64 -d2s "$url" >/dev/null 2>&1
    measure "round $round $name keep-alive -c64" "$pid" -t1 -c64 -d"${seconds}s" "$url"
    measure "round $round $name handshake/req -c16" "$pid" -t1 -c16 -d"${seconds}s" -H "Connection: close" "$url"
  done
done
for version in tls1_2 tls1_3; do
  for mode in reuse new; do
    for target in nginx:18443:$nginx_master gateway:18444:$dp; do
      IFS=: read -r name port pid <<<"$target"
      stime "s_time $version $mode $name" "$pid" "$port" "$version" "$mode"
    done
  done
done
echo "loadavg: $(cat /proc/loadavg)"
