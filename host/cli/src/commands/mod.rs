//! One module per group of verbs; `main.rs` dispatches to them.

pub mod admin;
pub mod audit;
pub mod listeners;
pub mod secrets;
pub mod tokens;
