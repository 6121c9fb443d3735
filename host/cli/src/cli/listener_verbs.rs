//! The arguments of the verbs that run listeners (deploy, listeners, emit,
//! runs, audit, serve), with their help text and defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::ScopeArgs;
use super::parse::{
    parse_bytes, parse_duration, parse_inject, parse_max_age, parse_max_memory, parse_setting,
    parse_timeout,
};

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The listener component (.wasm, built for wasm32-wasip2).
    pub file: PathBuf,
    /// Listener name (1-64 characters of A-Z a-z 0-9 _ -).
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Topic glob filter; repeat for several.
    #[arg(long = "topic", value_name = "GLOB", default_values_t = ["*".to_string()])]
    pub topics: Vec<String>,
    /// Another environment this listener may read secrets from explicitly.
    #[arg(long = "grant-env", value_name = "ENV")]
    pub grant_env: Vec<String>,
    /// Another space this listener may read secrets from explicitly.
    #[arg(long = "grant-space", value_name = "SPACE")]
    pub grant_space: Vec<String>,
    /// Wall-clock limit per run, e.g. 500ms, 5s.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Memory limit per run, e.g. 16MiB, 64MiB.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    pub memory: u64,
    /// Origin the listener may send HTTP requests to, e.g.
    /// https://slack.com or http://127.0.0.1:8080; repeat for several.
    #[arg(long = "allow-http", value_name = "ORIGIN")]
    pub allow_http: Vec<String>,
    /// Non-secret setting delivered with each event; repeat for several.
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// A secret name, or a glob such as 'SLACK_*', the listener may read;
    /// repeat for several. Without any, it may read every name in its
    /// scopes. Reading another name is access-denied.
    #[arg(long = "secret", value_name = "NAME|GLOB")]
    pub secrets: Vec<String>,
    /// Carry the grants of the deployment of the same name (--grant-env,
    /// --grant-space, --secret, --allow-http, --inject) over to this module. Grants
    /// hold for the module they were given to: without this (or stating
    /// them again), a redeploy of other code has none.
    #[arg(long, conflicts_with_all = ["grant_env", "grant_space", "secrets", "allow_http", "inject"])]
    pub keep_grants: bool,
    /// A secret the host puts into a header of every request to an origin,
    /// e.g. 'SLACK_TOKEN@https://slack.com/Authorization: Bearer {}'
    /// (`{}` is the value); the listener cannot read it. The origin is
    /// allowed by this; repeat for several.
    #[arg(long = "inject", value_name = "SECRET@ORIGIN/HEADER: TEMPLATE", value_parser = parse_inject)]
    pub inject: Vec<crate::requests::InjectBody>,
}

#[derive(Debug, Subcommand)]
pub enum ListenersCmd {
    /// List deployed listeners with their scope, topics, grants, limits,
    /// HTTP allow-list, settings and module hash.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one listener.
    Show {
        /// The listener's name (see `keyhole listeners list`).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a deployed listener (alias: delete).
    #[command(visible_alias = "delete")]
    Rm {
        /// The listener's name (see `keyhole listeners list`).
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Event topic, e.g. action:triggered.
    pub topic: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Event payload, a JSON document.
    #[arg(long, default_value = "{}", value_name = "JSON")]
    pub payload: String,
    /// Emit one event per line of FILE (`-`: standard input), each line
    /// the event's payload, a JSON document; all on TOPIC in the scope.
    /// Sent in batches of up to 1,000 events; every line is checked
    /// before the first batch is sent.
    #[arg(long, value_name = "FILE", conflicts_with = "payload")]
    pub batch: Option<std::path::PathBuf>,
    /// Cluster mode: run only once the receiving host has seen this store
    /// revision (printed by `secrets set` / `secrets rm`), so the runs read
    /// that write whichever host took it.
    #[arg(long, value_name = "REVISION")]
    pub min_revision: Option<u64>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub show: Option<RunsCmd>,
    /// Only runs of events in this environment.
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    /// Only runs of events in this space.
    #[arg(long = "space", value_name = "SPACE")]
    pub space: Option<String>,
    /// Only this listener's runs.
    #[arg(long)]
    pub listener: Option<String>,
    /// Only these outcomes, comma-separated: ok, guest_error, deadline,
    /// memory, trap, failed, memory_budget.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only the runs of this event.
    #[arg(long = "event", value_name = "EVENT_ID")]
    pub event: Option<String>,
    /// Only runs started at or after this: a duration ago (10m, 2h, 7d) or
    /// a time (2026-12-01T10:00:00Z).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only runs started at or before this (as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only runs older than this run id (the cursor a page ends with).
    #[arg(long, value_name = "RUN_ID")]
    pub before: Option<u64>,
    /// At most this many runs, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON (an array of run records) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Show one run in full: outcome, timing, secrets read, HTTP calls and
    /// its (scrubbed) output.
    Show {
        /// The run's id (first column of `keyhole runs`).
        id: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Show audit entries, newest last; with --follow, keep showing new
    /// ones until interrupted.
    Tail(AuditTailArgs),
    /// Check the whole chain and name the first entry that does not hold
    /// (edited, deleted, reordered, truncated). Exit 1 if one does not.
    Verify,
}

#[derive(Debug, Args)]
pub struct AuditTailArgs {
    /// How many of the newest matching entries to show first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Keep showing new entries as they are written.
    #[arg(long)]
    pub follow: bool,
    /// Only reads of this secret name.
    #[arg(long, value_name = "NAME")]
    pub secret: Option<String>,
    /// Only reads by this deployment (listener).
    #[arg(long, value_name = "LISTENER")]
    pub deployment: Option<String>,
    /// Only admin actions by this actor, e.g. token:ci or local:alice.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this outcome: ok, not_found, access_denied, invalid_name,
    /// unavailable (reads); ok, denied, failed (admin actions).
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only entries from the last DURATION (e.g. 10m, 2h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Cluster mode: another host's entries, from the cluster's copy of
    /// its chain (its name is in its data directory's `host-name`).
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port; the bound address is
    /// printed and written to DATA/serve.json. An address that is not
    /// loopback needs --tls-cert and --tls-key, or --insecure-listen.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: std::net::SocketAddr,
    /// Largest listener module accepted by POST /v1/listeners, e.g. 16MiB
    /// (64MiB, the default, is also the most the runtime accepts).
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    pub max_module_bytes: u64,
    /// Time a client has to send each request's headers, which is also how
    /// long an idle keep-alive connection stays open; slower clients are
    /// disconnected. 1ms to 24h.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub header_timeout: Duration,
    /// Time a client has to send a request body, counted from the end of its
    /// headers; a slower body is answered 408 and the connection closed.
    /// Allow for a --max-module-bytes upload from the slowest client. 1ms to
    /// 24h.
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    pub request_timeout: Duration,
    /// Time a response may wait for a client to read it: a write that makes
    /// no progress for this long (the client stopped reading) closes the
    /// connection. 1ms to 24h.
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub write_timeout: Duration,
    /// The web console (served at /) signs a browser out after this long
    /// without a request. 1ms to 24h.
    #[arg(long, default_value = "30m", value_parser = parse_timeout)]
    pub console_idle_timeout: Duration,
    /// The web console signs a browser out this long after it signed in,
    /// however busy. 1ms to 24h.
    #[arg(long, default_value = "12h", value_parser = parse_timeout)]
    pub console_session_lifetime: Duration,
    /// Cluster mode: a queued event not acknowledged this long after its
    /// delivery (its host died or hung) goes to another host. Every host
    /// of a cluster must use the same value. 1ms to 24h.
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub cluster_ack_wait: Duration,
    /// Cluster mode: deliveries of one event at most; the last is not run
    /// but dead-lettered, with a `failed` run recorded. Same on every host.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i64).range(2..=100))]
    pub cluster_max_deliver: i64,
    /// Cluster mode: events this host runs at once from the queue.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub cluster_workers: u16,
    /// Most client connections open at once. Beyond it new connections wait
    /// in the kernel's listen backlog until one closes, so clients cannot
    /// exhaust the daemon's file descriptors. 1 to 65536.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Host memory budget for all runs together plus the memory the
    /// instance pool keeps resident, e.g. 8GiB. Each run reserves its
    /// deployment's --memory from it before it starts; a run that finds no
    /// room waits (at most its own timeout), then is recorded as
    /// `memory_budget` without running. Default: half the machine's memory
    /// (MemTotal, or the cgroup limit if lower). 256MiB to 1TiB.
    #[arg(long, value_parser = parse_max_memory)]
    pub max_memory: Option<u64>,
    /// Run records kept: older runs are no longer shown, and deleted.
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_runs: u64,
    /// Keep run records only this long after their run started, e.g. 30d
    /// (1s to 100years). Default: no age limit.
    #[arg(long, value_name = "DURATION", value_parser = parse_max_age)]
    pub runs_max_age: Option<Duration>,
    /// Audit entries kept (about: whole old segments are deleted, and the
    /// deletion is itself an entry, so `audit verify` knows where the log
    /// now starts). 1,000 to 1,000,000,000.
    #[arg(long, value_name = "N", default_value_t = 10_000_000,
          value_parser = clap::value_parser!(u64).range(1_000..=1_000_000_000))]
    pub audit_keep: u64,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}
