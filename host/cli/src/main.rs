//! `keyhole`: the command line, the daemon and its HTTP API.
//!
//! Module map: `cli` (the clap definitions), `config` (data dir, master key,
//! token file, `serve.json`), `datadir` (the data directory's permissions,
//! the umask), `errors` (exit codes and one-line messages with hints),
//! `commands` (the CLI verbs), `client` (how a verb reaches the API: a
//! daemon, or the API in this process), `serve`, `tls` and `api` (the
//! daemon), `auth` (API tokens, roles and permissions), `requests` and
//! `views` (the JSON shapes the CLI sends and the API answers).
//!
//! Logs go to stderr through `tracing` (`RUST_LOG` overrides the level);
//! secret values are never logged: the store hands them out only as
//! `SecretValue`, which prints as `[redacted]`.

#![forbid(unsafe_code)]

/// mimalloc instead of glibc's allocator: the daemon's request path makes
/// many short-lived allocations across threads (hyper's buffers, tower's
/// boxed services, JSON), and glibc spent about a fifth of its CPU on them
/// (`keyhole-bench --loop api` under perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api;
mod auth;
mod cli;
mod client;
mod commands;
mod config;
mod console;
mod datadir;
mod errors;
mod events_queue;
mod requests;
mod serve;
mod tls;
mod trail;
mod views;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::client::Client;
use crate::commands::text::shorten_words;
use crate::config::Globals;
use crate::errors::report;

fn main() -> ExitCode {
    // Before anything creates a file: nothing keyhole writes is for group
    // or others (see `datadir.rs`).
    datadir::restrict_umask();
    let cli = parse_args();
    let serving = matches!(cli.command, Command::Serve(_));
    init_tracing(if serving { "info" } else { "warn" });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let r = report(&err);
            eprintln!("error: {}", shorten_words(&r.message, LONGEST_WORD));
            if let Some(hint) = r.hint {
                eprintln!("hint: {}", shorten_words(&hint, LONGEST_WORD));
            }
            ExitCode::from(r.code as u8)
        }
    }
}

/// The most characters of one word an error prints: a refused argument
/// is quoted back, and may be huge.
const LONGEST_WORD: usize = 200;

/// The command line, as clap parses it; a refusal that quotes a huge
/// argument is cut to a readable length (`commands::text::shorten_words`).
fn parse_args() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and versions (on stdout) as clap prints them.
            if !e.use_stderr() {
                e.exit()
            }
            let text = e.render().to_string();
            match shorten_words(&text, LONGEST_WORD) {
                std::borrow::Cow::Borrowed(_) => e.exit(),
                std::borrow::Cow::Owned(short) => {
                    eprint!("{short}");
                    std::process::exit(e.exit_code())
                }
            }
        }
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let g = Globals::resolve(&cli)?;
    // What works on the data directory itself; everything else is a
    // request to the API (`client`).
    match cli.command {
        Command::Init => return commands::admin::init(&g),
        Command::Compact => return commands::admin::compact(&g),
        Command::Token {
            cmd: cli::TokenCmd::Reset,
        } => return commands::tokens::reset(&g),
        Command::Serve(args) => return serve::run(&g, args),
        _ => {}
    }
    let c = Client::connect(&g)?;
    match cli.command {
        Command::Token { cmd } => commands::tokens::run(&c, cmd),
        Command::Env { cmd } => commands::admin::env(&c, cmd),
        Command::Space { cmd } => commands::admin::space(&c, cmd),
        Command::Keys { cmd } => commands::admin::keys(&c, cmd),
        Command::Secrets { cmd } => commands::secrets::run(&c, cmd),
        Command::Deploy(args) => commands::listeners::deploy(&c, args),
        Command::Listeners { cmd } => commands::listeners::listeners(&c, cmd),
        Command::Emit(args) => commands::listeners::emit(&c, args),
        Command::Runs(args) => commands::runs::runs(&c, args),
        Command::Audit { cmd } => commands::audit::run(&c, cmd),
        Command::Init | Command::Compact | Command::Serve(_) => unreachable!("handled above"),
    }
}
