//! The command line, as clap derive types.
//!
//! Kept apart from the code that runs each verb so that `--help` text, value
//! parsers and defaults can be read in one place: the top level and global
//! options here, each verb's arguments in `verbs.rs` (data) and
//! `listener_verbs.rs` (listeners), the value parsers in
//! `parse.rs`. Every verb and argument has help (a test walks them all);
//! the exit codes are listed in the top-level help (see `errors.rs`).

mod listener_verbs;
mod parse;
mod verbs;

pub use listener_verbs::*;
pub use verbs::*;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::errors::EXIT_CODES_HELP;

/// keyhole: run sandboxed WebAssembly event listeners that reach secrets
/// only through `get-secret`.
#[derive(Debug, Parser)]
#[command(name = "keyhole", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Data directory (database, modules, compiled artifacts).
    #[arg(
        long,
        global = true,
        env = "KEYHOLE_DATA",
        default_value = "./keyhole-data",
        value_name = "DIR"
    )]
    pub data: PathBuf,

    /// Master key file [default: $XDG_CONFIG_HOME/keyhole/master.key, else
    /// ~/.config/keyhole/master.key]. KEYHOLE_MASTER_KEY (the key text
    /// itself) takes precedence over any file.
    #[arg(long, global = true, env = "KEYHOLE_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Send every verb to the daemon at this URL (http://HOST:PORT or
    /// https://HOST:PORT) instead of the data directory. Without it, verbs
    /// go to the daemon holding --data if one runs, else work on --data in
    /// this process. The token comes from KEYHOLE_TOKEN, else --token-file.
    #[arg(long, global = true, env = "KEYHOLE_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Allow --server http:// to an address that is not loopback: the API
    /// token then crosses the network unencrypted. Only for a network you
    /// trust (the daemon's side is `serve --insecure-listen`).
    #[arg(long, global = true, env = "KEYHOLE_INSECURE_HTTP")]
    pub insecure_http: bool,

    /// File holding the API token for a daemon [default: `token` beside the
    /// master key file, which `keyhole init` writes with mode 0600].
    /// KEYHOLE_TOKEN (the token itself) takes precedence.
    #[arg(long, global = true, env = "KEYHOLE_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// PEM file of CA certificates to trust for an https:// daemon (e.g. the
    /// certificate given to `serve --tls-cert`) [default: the Mozilla roots].
    #[arg(long, global = true, env = "KEYHOLE_CA_CERT", value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,

    /// Cluster mode: keep environments, spaces, sealed secrets, data keys,
    /// deployments, modules and tokens in the NATS JetStream server (or
    /// cluster) at this URL, shared by every host given the same URL and
    /// namespace (nats://HOST:PORT). Each host still has its own --data
    /// (run records, audit log, compiled artifacts) and needs the master
    /// key. See docs/cluster.md.
    #[arg(long, global = true, env = "KEYHOLE_CLUSTER", value_name = "URL")]
    pub cluster: Option<String>,

    /// Prefix of the NATS buckets, so several installations can share one
    /// NATS account.
    #[arg(
        long,
        global = true,
        env = "KEYHOLE_CLUSTER_NAMESPACE",
        default_value = "keyhole",
        value_name = "NAME"
    )]
    pub cluster_namespace: String,

    /// Stream replicas for buckets keyhole creates (3 on a production NATS
    /// cluster).
    #[arg(long, global = true, default_value_t = 1, value_name = "N")]
    pub cluster_replicas: usize,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory, the master key file and an admin API token.
    Init,
    /// API tokens: create, list, rotate, revoke (roles and scopes).
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Environments: the top-level scopes of secrets and events.
    Env {
        #[command(subcommand)]
        cmd: EnvCmd,
    },
    /// Spaces: scopes inside an environment that may override its secrets.
    Space {
        #[command(subcommand)]
        cmd: SpaceCmd,
    },
    /// Set, list and remove secrets (values are never shown).
    Secrets {
        #[command(subcommand)]
        cmd: SecretsCmd,
    },
    /// Rotate the master key or a scope's data key.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Rewrite the data directory's database so that deleted and destroyed
    /// records (secret versions, retired data keys) are gone from its files.
    /// Stop the daemon first; embedded mode only.
    Compact,
    /// Deploy a listener component (replaces one of the same name).
    Deploy(DeployArgs),
    /// List or remove deployed listeners.
    Listeners {
        #[command(subcommand)]
        cmd: ListenersCmd,
    },
    /// Emit an event and print each listener run.
    Emit(EmitArgs),
    /// Show recent run records.
    Runs(RunsArgs),
    /// Read and verify the audit log: every admin action and every
    /// get-secret call, with who made it (never a value).
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Run the daemon: the HTTP API, on loopback unless served over HTTPS
    /// (--tls-cert, --tls-key) or --insecure-listen.
    Serve(ServeArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every verb and every argument of every verb says what it is for.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() && !path.is_empty() {
                missing.push(format!("`keyhole{path}` itself"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) || arg.is_global_set() && !path.is_empty() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("`keyhole{path}` argument {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &format!("{path} {}", sub.get_name()), missing);
                }
            }
        }
        let mut missing = Vec::new();
        let mut cmd = Cli::command();
        cmd.build();
        walk(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }
}
