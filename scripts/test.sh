#!/usr/bin/env bash
# keyhole's test command: every crate's tests, in release (the guests the
# tests run are built from source by tests/build.rs for both wasm targets).
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh -- --nocapture`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rustup target add wasm32-wasip2 wasm32-unknown-unknown
# The Python guest example needs componentize-py (PyPI). Without python3 the
# Python test is compiled out (tests/build.rs says so); CI requires it.
if command -v python3 >/dev/null && ! command -v componentize-py >/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check componentize-py==0.25.1 \
    || echo "warning: could not install componentize-py; the Python example test is skipped" >&2
  export PATH="$(python3 -m site --user-base)/bin:$PATH"
fi
# The JavaScript guest example needs componentize-js (npm), installed from
# its lockfile; `npm ci` reruns only when package-lock.json changed. Without
# npm the JS test is compiled out, unless KEYHOLE_REQUIRE_JS is set (CI sets
# it): then tests/build.rs fails.
js=guest-examples/js-listener
if command -v npm >/dev/null && ! [ "$js/node_modules/.package-lock.json" -nt "$js/package-lock.json" ]; then
  (cd "$js" && npm ci --loglevel=error --no-audit --no-fund) \
    || echo "warning: npm ci failed in $js; the JavaScript example test is skipped" >&2
fi
# The web console's browser test injects axe-core (npm, tests/browser) into
# each page; it needs Debian's chromium and chromium-driver too (.ci/run
# installs them; without them the test says so and passes, unless
# KEYHOLE_REQUIRE_BROWSER is set).
browser=tests/browser
if command -v npm >/dev/null && ! [ "$browser/node_modules/.package-lock.json" -nt "$browser/package-lock.json" ]; then
  (cd "$browser" && npm ci --loglevel=error --no-audit --no-fund) \
    || echo "warning: npm ci failed in $browser; the console's browser test will fail" >&2
fi
exec cargo test --workspace --release "$@"
