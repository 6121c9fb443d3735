#!/usr/bin/env bash
# keyhole demo: a secret travels from `keyhole secrets set` to an outbound
# HTTP request made by a sandboxed listener, without the listener's code,
# configuration or environment ever containing it: read by the listener
# with get-secret, or injected by keyhole so the listener never holds it.
#
# Self-contained on a clean clone: installs the wasm32 targets, builds
# keyhole and the example listener guest-examples/slack-notifier, and starts
# a LOCAL STAND-IN for the Slack API on 127.0.0.1 (host/cli/examples/
# slack_stand_in.rs, built with cargo; it is not Slack, and the tokens below
# are fake). Works in a temporary directory, removed on exit. Nothing leaves
# this machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
kh() { printf '\033[2m$ keyhole %s\033[0m\n' "$*"; "$KEYHOLE" "$@"; }

step "Toolchain: the wasm32-wasip2 target (for listeners)"
rustup target add wasm32-wasip2

step "Building keyhole (cargo build --release -p keyhole)"
cargo build --release -p keyhole
KEYHOLE="$TARGET/release/keyhole"

step "Building the example listener (guest-examples/slack-notifier)"
cargo build --release --target wasm32-wasip2 \
  --manifest-path guest-examples/slack-notifier/Cargo.toml \
  --target-dir "$TARGET/guests"
WASM="$TARGET/guests/wasm32-wasip2/release/slack_notifier.wasm"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/keyhole-demo.XXXXXX")"
STAND_IN_PID=""
cleanup() {
  if [[ -n "$STAND_IN_PID" ]]; then kill "$STAND_IN_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step "Building and starting the local Slack API stand-in (loopback only)"
# The test suite's loopback stub server (hyper, tests/stub-server), printing
# what it receives.
cargo build --release -p keyhole-stub-server --bin slack_stand_in
"$TARGET/release/slack_stand_in" --port-file "$WORK/port" >"$WORK/slack.log" 2>&1 &
STAND_IN_PID=$!
for _ in $(seq 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
PORT="$(cat "$WORK/port")"
SLACK="http://127.0.0.1:$PORT"
echo "stand-in for the Slack API: $SLACK (logging to $WORK/slack.log)"

# A fresh installation: data directory and master key apart, in $WORK.
export KEYHOLE_DATA="$WORK/data"
export KEYHOLE_KEY_FILE="$WORK/keys/master.key"
unset KEYHOLE_MASTER_KEY

step "Initialize: data directory, master key (outside it), admin API token"
kh init

step "Scopes: environment prod, and space team-a inside it"
kh env create prod
kh space create team-a --env prod

step "Secrets: SLACK_TOKEN for prod, and a team-a override (values piped on stdin)"
printf '%s\n' 'xoxb-FAKE-prod-token-1111' | kh secrets set SLACK_TOKEN --env prod
printf '%s\n' 'xoxb-FAKE-team-a-token-2222' | kh secrets set SLACK_TOKEN --env prod --space team-a
kh secrets list --env prod --space team-a

step "Deploy the notifier, allowed to reach only the stand-in"
kh deploy "$WASM" --name slack-notifier --env prod --topic 'action:*' \
  --allow-http "$SLACK" \
  --setting "slack_api_base=$SLACK" \
  --setting 'slack_channel=#deploys'
kh listeners list

step "Emit action:triggered for space team-a, then for the environment"
kh emit action:triggered --env prod --space team-a \
  --payload '{"action":"notify-team","text":"team-a: deploy finished"}'
kh emit action:triggered --env prod \
  --payload '{"action":"notify-team","text":"prod: deploy finished"}'

step "Rotate the prod secret (and the master key); no redeploy needed"
printf '%s\n' 'xoxb-FAKE-prod-token-ROTATED-3333' | kh secrets set SLACK_TOKEN --env prod
kh keys rotate
kh emit action:triggered --env prod \
  --payload '{"action":"notify-team","text":"prod: after rotation"}'

step "Or let keyhole hold the token: the same notifier, deployed with --inject"
# keyhole adds `Authorization: Bearer <token>` to each request to the
# stand-in's origin itself; this listener cannot read SLACK_TOKEN at all
# (get-secret answers access-denied), so it could not send it anywhere else.
kh deploy "$WASM" --name slack-notifier-injected --env prod --topic 'injected:*' \
  --inject "SLACK_TOKEN@$SLACK/Authorization: Bearer {}" \
  --setting 'slack_token_injected=true' \
  --setting "slack_api_base=$SLACK" \
  --setting 'slack_channel=#deploys'
kh emit injected:triggered --env prod \
  --payload '{"action":"notify-team","text":"prod: sent with an injected token"}'

step "Run records (outcomes, secrets read by name, HTTP calls and what was injected into them; never values)"
kh runs

step "What the Slack stand-in received"
sleep 0.2
cat "$WORK/slack.log"

for token in xoxb-FAKE-team-a-token-2222 xoxb-FAKE-prod-token-1111 xoxb-FAKE-prod-token-ROTATED-3333; do
  if ! grep -q "Authorization: Bearer $token" "$WORK/slack.log"; then
    echo "demo FAILED: the stand-in never saw $token" >&2
    exit 1
  fi
done
# Once read by the get-secret listener, once injected by keyhole.
if [[ "$(grep -c "Authorization: Bearer xoxb-FAKE-prod-token-ROTATED-3333" "$WORK/slack.log")" -lt 2 ]]; then
  echo "demo FAILED: the stand-in never saw the injected token" >&2
  exit 1
fi
step "Done: each token went from \`keyhole secrets set\` to the outbound request, through get-secret or injected by keyhole"
