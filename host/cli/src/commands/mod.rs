//! The CLI's verbs. Each one builds its request (`crate::requests`), sends
//! it through the [`crate::client::Client`] (a daemon's API, or the same
//! API in this process) and prints the answer (`crate::views`) for people,
//! or as JSON with `--json`. Only `init` and `token reset` work on the data
//! directory itself.

pub mod admin;
pub mod audit;
pub mod batch;
pub mod history;
pub mod listeners;
pub mod runs;
pub mod secrets;
pub mod text;
pub mod tokens;
