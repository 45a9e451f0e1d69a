#!/usr/bin/env bash
# How long a large ProtoSet takes to compile: offline (`gatewayctl validate`, the control
# plane's validation code in one process), on apply to a control plane (embedded store: the
# write is validated, so compiled, before it is stored), and in a data plane (standalone: the
# time from start to /ready includes checking and compiling the file once). The set: N files,
# each a service of 10 annotated methods and 40 messages of 12 fields (with nested messages,
# enums, maps, repeated and well-known types).
#
#   bench/protoset-compile.sh [--files N]        (release builds of gatewayctl, the programs)
set -euo pipefail
cd "$(dirname "$0")/.."

files=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    --files) files=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo build --release --bin gatewayctl --bin gateway-control-plane --bin gateway-data-plane
run=$(mktemp -d /tmp/protoset-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

python3 - "$run" "$files" <<'PY'
import json, sys
run, n = sys.argv[1], int(sys.argv[2])
files = {}
for f in range(n):
    lines = ['syntax = "proto3";', f"package big.v{f};",
             'import "google/api/annotations.proto";',
             'import "google/protobuf/timestamp.proto";',
             'import "google/protobuf/struct.proto";',
             f"enum Kind{f} {{ KIND{f}_UNSPECIFIED = 0; KIND{f}_A = 1; KIND{f}_B = 2; }}"]
    for m in range(40):
        fields = [f"  string name = 1;", f"  int64 count = 2;", f"  Kind{f} kind = 3;",
                  f"  repeated string tags = 4;", f"  map<string, int32> scores = 5;",
                  f"  google.protobuf.Timestamp at = 6;", f"  google.protobuf.Struct extra = 7;",
                  f"  bytes blob = 8;", f"  double ratio = 9;", f"  bool flag = 10;",
                  f"  M{(m + 1) % 40} next = 11;", f"  optional uint32 size = 12;"]
        lines.append(f"message M{m} {{\n" + "\n".join(fields) + "\n}")
    methods = []
    for k in range(10):
        methods.append(
            f"  rpc Get{k}(M{k}) returns (M{k + 10}) {{ option (google.api.http) = "
            f"{{ get: \"/v{f}/things{k}/{{name=items/*}}\" additional_bindings {{ post: \"/v{f}/things{k}\" body: \"*\" }} }}; }}")
    lines.append(f"service S{f} {{\n" + "\n".join(methods) + "\n}")
    files[f"big/v{f}/s.proto"] = "\n".join(lines) + "\n"
doc = "kind: ProtoSet\nname: big\nspec:\n  files:\n" + "".join(
    f"    {name}: {json.dumps(src)}\n" for name, src in files.items())
open(f"{run}/big.yaml", "w").write(doc)
print(f"{n} files, {sum(len(s) for s in files.values())} bytes of source")
PY

ms() { python3 -c 'import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))' "$1" "$2"; }
now() { date +%s.%N; }

t0=$(now); target/release/gatewayctl validate -f "$run/big.yaml" >/dev/null; t1=$(now)
echo "gatewayctl validate (parse + compile, one process): $(ms "$t0" "$t1") ms"

target/release/gateway-control-plane --listen 127.0.0.1:18300 --admin-listen 127.0.0.1:18301 \
  --data-dir "$run/cp" >"$run/cp.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs http://127.0.0.1:18301/ready >/dev/null && break; sleep 0.1; done
t0=$(now); target/release/gatewayctl --server http://127.0.0.1:18300 apply -f "$run/big.yaml" >/dev/null; t1=$(now)
echo "gatewayctl apply to a control plane (parse, send, validate, store): $(ms "$t0" "$t1") ms"

t0=$(now)
target/release/gateway-data-plane --config "$run/big.yaml" --listen 127.0.0.1:18390 \
  --admin-listen 127.0.0.1:18391 --cache-dir "$run/dp" >"$run/dp.log" 2>&1 &
pids+=($!)
until curl -fs http://127.0.0.1:18391/ready >/dev/null 2>&1; do sleep 0.01; done
t1=$(now)
echo "data plane start to ready (process start, check and compile): $(ms "$t0" "$t1") ms"
