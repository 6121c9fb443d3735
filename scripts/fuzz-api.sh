#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis (PyPI),
# against a release `keyhole serve` on a fresh data directory on loopback,
# for SECONDS (default 300). By hand, not in CI: it takes minutes and a
# Python package. Fails if an answer is a 5xx, undocumented, or off its
# schema; if the daemon logged an ERROR; or if a planted secret value
# appears in anything the daemon wrote (logs, audit log, run records).
#
# The admin token's own revoke and rotate are left out: schemathesis
# revokes the token it tests with within seconds, and every later request
# answers 401.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-300}
port=${KEYHOLE_FUZZ_PORT:-7711}
phases=${KEYHOLE_FUZZ_PHASES:-examples,coverage,fuzzing,stateful}
command -v schemathesis >/dev/null || python3 -m pip install --quiet schemathesis
cargo build --release --bin keyhole --bin keyhole-bench >/dev/null
work=$(mktemp -d)
export KEYHOLE_DATA=$work/data KEYHOLE_KEY_FILE=$work/master.key
planted="kh-fuzz-planted-$(date +%s%N)"
k=target/release/keyhole
$k init >/dev/null 2>&1
$k env create prod >/dev/null
$k space create team-a --env prod >/dev/null
printf %s "$planted" | $k secrets set SLACK_TOKEN --env prod >/dev/null
$k deploy target/guests/pure_reader.bench.component.wasm --name reader --env prod \
  --topic '*' >/dev/null
$k serve --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q listening "$work/serve.log" && break; sleep 0.1; done
status=0
SCHEMATHESIS_HOOKS=fuzz_hooks PYTHONPATH=scripts schemathesis run host/cli/src/openapi.json \
  --url "http://127.0.0.1:$port" -H "Authorization: Bearer $(cat "$work/token")" \
  --exclude-path-regex '^/v1/tokens/' \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases "$phases" --suppress-health-check all \
  --max-time "$seconds" -w 2 || status=1
# The daemon's own log says ERROR only for host faults.
if grep -n ERROR "$work/serve.log"; then status=1; fi
if grep -rl "$planted" "$work/data" "$work/serve.log"; then
  echo "the planted secret value reached the files above" >&2
  status=1
fi
exit $status
