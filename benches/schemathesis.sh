#!/usr/bin/env bash
# The long Schemathesis run (the test suite runs a short one, tests/openapi.rs):
# a release herald on a fresh SQLite database, every operation but the event
# streams, EXAMPLES test cases per operation (default 200), all phases, the
# four checks the suite runs. Exits non-zero on any failure.
#
#   benches/schemathesis.sh            # 200 examples per operation
#   EXAMPLES=1000 benches/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=${EXAMPLES:-200}
VENV=target/schemathesis-bench-venv
if ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1; then
  echo "installing schemathesis 4.32.5 from PyPI into $VENV" >&2
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'schemathesis==4.32.5'
fi
cargo build --release -q
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
export HERALD__DATABASE__URL="sqlite://$work/herald.db" HERALD__API__LISTEN=127.0.0.1:0
key=$(target/release/herald apikey create --name schemathesis 2>/dev/null)
target/release/herald serve >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on http" "$work/out" && break; sleep 0.1; done
base=$(grep -o "http://[0-9.:]*" "$work/out" | head -1)
echo "herald at $base; $EXAMPLES examples per operation" >&2
start=$(date +%s)
"$VENV/bin/schemathesis" --no-color run "$base/v1/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --header "X-API-Key: $key" --auth "AC686572616c6400000000000000000000:$key" --exclude-path-regex '(?<!/targets/\{id\})/events$' \
  --max-examples "$EXAMPLES" --workers 1 --request-timeout 30 --generation-database none
echo "took $(( $(date +%s) - start )) s; herald's peak RSS: $(grep VmHWM /proc/$pid/status)" >&2
