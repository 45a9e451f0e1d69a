# Sourced by the per-core benchmarks (transcode.sh, identity.sh, balancing.sh, breaker.sh):
# - `setup NAME "$@"` reads `--seconds N` (default 10) and `--rounds N` (default 3, for the
#   scripts that repeat their loads), finds the shared harness's backend
#   ($backend) and the data plane ($bin: GATEWAY_BIN, else the release build), and makes a run
#   directory ($run) whose processes ($pids) are killed on exit;
# - `need TOOL...` fails, naming the package, when a tool is missing;
# - `measure NAME WRK-ARGS...` warms up for 2 s, then runs wrk (one thread, 64 connections, on
#   CPU 1) for $seconds and prints requests/s and the data plane's CPU (utime + stime of pid
#   $dp) per request, which it also leaves in $last_us;
# - `ratio A B` and `median X...` for scripts that compare loads over several rounds.

setup() {
  local name=$1; shift
  seconds=10
  rounds=3
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --seconds) seconds=$2; shift 2 ;;
      --rounds) rounds=$2; shift 2 ;;
      *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
  done
  backend=${BENCH_BACKEND:-$HOME/.cache/proxy-bench/target/release/bench-backend}
  [[ -x $backend ]] || { echo "missing $backend: run bench/proxy-compare.sh once (it builds it)" >&2; exit 1; }
  bin=${GATEWAY_BIN:-target/release/gateway-data-plane}
  [[ -n ${GATEWAY_BIN:-} ]] || cargo build --release --bin gateway-data-plane
  run=$(mktemp -d "/tmp/$name-bench.XXXXXX")
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
}

need() {
  local tool package
  for tool in "$@"; do
    case "$tool" in
      taskset) package=util-linux ;;
      h2load) package=nghttp2-client ;;
      *) package=$tool ;;
    esac
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install $package)" >&2; exit 1; }
  done
}

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$dp/stat"; }
measure() {
  local name=$1; shift
  local before after out n errors
  taskset -c 1 wrk -t1 -c64 -d2s "$@" >/dev/null
  before=$(cpu)
  out=$(taskset -c 1 wrk -t1 -c64 -d"${seconds}s" "$@" 2>&1)
  after=$(cpu)
  n=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out" | head -1)
  errors=$(sed -n 's/^ *Non-2xx.*: \([0-9]*\)/non-2xx \1/p; s/^ *Socket errors: \(.*\)/\1/p' <<<"$out" | tr '\n' ' ')
  [[ -n $n && $n -gt 0 ]] || { echo "$name: no request count in: $out" >&2; exit 1; }
  awk -v name="$name" -v n="$n" -v t=$((after - before)) -v hz="$ticks" -v s="$seconds" -v e="$errors" \
    'BEGIN { printf "%-34s %8.0f req/s %7.1f us of data-plane CPU per request %s\n", name, n / s, t * 1e6 / hz / n, e }'
  # For scripts that compare loads: the last figure, in µs per request.
  last_us=$(awk -v n="$n" -v t=$((after - before)) -v hz="$ticks" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
}

# `ratio A B`: how many requests per CPU-second load B makes against load A (A's µs / B's).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# `median X...`: the middle value (the lower middle of an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
