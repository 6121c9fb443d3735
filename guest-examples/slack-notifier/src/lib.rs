//! Posts a Slack message when a custom action fires, with a token it reads at
//! call time through `get-secret`: the seed's headline use of keyhole.
//!
//! Event: topic `action:triggered`, payload `{"action": "notify-team",
//! "text": "..."}`. Settings (non-secret, set at deploy time):
//! `slack_api_base` (default `https://slack.com/api`) and `slack_channel`
//! (default `#general`). Secret: `SLACK_TOKEN`, from the event's scope.
//!
//! With the setting `slack_token_injected=true` the listener never touches
//! the token: it does not call `get-secret` and sends no `Authorization`
//! header, and keyhole adds it on the way out
//! (`keyhole deploy --inject 'SLACK_TOKEN@https://slack.com/Authorization: Bearer {}'`).

wit_bindgen::generate!({ path: "../../wit", world: "listener" });

mod http;

use keyhole::listener::secrets::{SecretError, get_secret};
use serde_json::{Value, json};

struct SlackNotifier;

fn setting<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event.settings.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl Guest for SlackNotifier {
    fn handle(event: Event) -> Result<String, String> {
        let payload: Value = serde_json::from_str(&event.payload).map_err(|e| format!("payload is not JSON: {e}"))?;
        let action = payload["action"].as_str().unwrap_or_default();
        if action != "notify-team" {
            return Ok(format!("ignored action {action:?}"));
        }
        let text = payload["text"].as_str().unwrap_or("(no text)");
        // Injected: keyhole sets Authorization itself, and would deny the read.
        let injected = setting(&event, "slack_token_injected") == Some("true");
        let auth = if injected {
            None
        } else {
            let token = get_secret("SLACK_TOKEN", None).map_err(|e| match e {
                SecretError::NotFound => "SLACK_TOKEN is not set for this environment or space".to_string(),
                other => format!("cannot read SLACK_TOKEN: {other:?}"),
            })?;
            Some(format!("Bearer {token}"))
        };
        let base = setting(&event, "slack_api_base").unwrap_or("https://slack.com/api");
        let channel = setting(&event, "slack_channel").unwrap_or("#general");
        let body = json!({ "channel": channel, "text": text }).to_string();
        let url = format!("{}/chat.postMessage", base.trim_end_matches('/'));
        let (status, response) = http::post_json(&url, auth.as_deref(), body.as_bytes())?;
        if status != 200 {
            return Err(format!("Slack answered HTTP {status}"));
        }
        let answer: Value = serde_json::from_slice(&response).map_err(|e| format!("Slack answer is not JSON: {e}"))?;
        if answer["ok"].as_bool() != Some(true) {
            return Err(format!("Slack refused the message: {}", answer["error"].as_str().unwrap_or("unknown error")));
        }
        Ok(format!("posted to {channel}"))
    }
}

export!(SlackNotifier);
