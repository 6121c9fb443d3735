// A keyhole listener in JavaScript: reads SLACK_TOKEN through get-secret and
// reports what it found, without the token ever being in code or config.
//
// Build: npm ci && npm run build
//   (componentize-js --wit ../../wit --world-name listener
//      --disable stdio random clocks http fetch-event -o listener.wasm listener.js)
import { getSecret } from "keyhole:listener/secrets@0.2.0";

// get-secret returns result<string, secret-error>: `ok` is the return value;
// `err` is thrown as a ComponentError whose `payload` is the secret-error
// variant: { tag: "not-found" }, { tag: "access-denied" },
// { tag: "invalid-name", val: "..." } or { tag: "unavailable", val: "..." }.
function errorTag(e) {
  if (e && typeof e.payload === "object" && e.payload !== null && "tag" in e.payload) {
    return e.payload.tag;
  }
  throw e; // not a secret-error: let it trap
}

export function handle(event) {
  let token;
  try {
    token = getSecret("SLACK_TOKEN", undefined); // the event's own scope
  } catch (e) {
    // Throwing a string returns `err` from handle. Throwing an Error (or an
    // uncaught get-secret error) traps instead: there is no stderr to report it.
    throw `cannot read SLACK_TOKEN: ${errorTag(e)}`;
  }
  // Another environment needs a grant at deploy time (--grant-env).
  let staging;
  try {
    getSecret("SLACK_TOKEN", { environment: "staging", space: undefined });
    staging = "readable";
  } catch (e) {
    staging = errorTag(e);
  }
  const payload = JSON.parse(event.payload);
  // No console.log here: with stdio disabled its output goes nowhere.
  // Return what you want recorded instead.
  return JSON.stringify({
    language: "javascript",
    payload_keys: Object.keys(payload).sort(),
    space: event.space ?? null,
    staging,
    token_length: token.length,
    topic: event.topic,
  });
}
