//! The arguments of the verbs that manage data (tokens, environments,
//! spaces, secrets, keys), with their help text and defaults; the
//! listeners' verbs are in `listener_verbs.rs`.

use std::time::Duration;

use clap::{Args, Subcommand};
use keyhole_store::Scope;

use super::parse::parse_duration;
use crate::auth::Role;

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a named API token and print it once (keyhole keeps only its
    /// sha256).
    Create {
        /// Token name: 1-64 characters of A-Z a-z 0-9 _ -.
        name: String,
        /// admin, secrets-writer, deployer, auditor or monitor.
        #[arg(long, value_name = "ROLE")]
        role: Role,
        /// Limit the token to this environment and its spaces
        /// (secrets-writer and deployer only).
        #[arg(long = "env", value_name = "ENV")]
        env: Option<String>,
        /// Limit the token to this space of --env.
        #[arg(long = "space", value_name = "SPACE", requires = "env")]
        space: Option<String>,
        /// Expire after this long, e.g. 1h, 30d (at least 1s). Default: never.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<Duration>,
    },
    /// List tokens: name, role, scope, created, expires, last used. Never a
    /// token or its hash.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: the next request with it is refused.
    Revoke {
        /// The token's name (see `keyhole token list`).
        name: String,
    },
    /// Give a token a new secret (role, scope and expiry kept), print it
    /// once; the old one stops working.
    Rotate {
        /// The token's name (see `keyhole token list`).
        name: String,
    },
    /// Create a new `admin` token (role admin), print it once, and forget
    /// the old one. Works on the data directory itself, so it is the way
    /// back in when every admin token is lost (stop the daemon first).
    Reset,
}

#[derive(Debug, Subcommand)]
pub enum EnvCmd {
    /// Create an environment.
    Create {
        /// Environment id: 1-64 characters of A-Z a-z 0-9 _ -.
        name: String,
    },
    /// List environments.
    List,
    /// Show one environment.
    Show {
        /// The environment's id.
        name: String,
    },
    /// Delete an environment (alias: delete). Refused while it holds
    /// secrets, spaces or listeners, unless --force.
    #[command(visible_alias = "delete")]
    Rm {
        /// The environment's id.
        name: String,
        /// Delete it with everything it holds: its secrets, its spaces and
        /// their secrets, its listeners, and its data keys, so the deleted
        /// values cannot be recovered, not even with the master key.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SpaceCmd {
    /// Create a space inside an environment.
    Create {
        /// Space id: 1-64 characters of A-Z a-z 0-9 _ -.
        name: String,
        /// The environment it belongs to.
        #[arg(long = "env", value_name = "ENV")]
        env: String,
    },
    /// List spaces.
    List {
        /// Only the spaces of this environment.
        #[arg(long = "env", value_name = "ENV")]
        env: Option<String>,
    },
    /// Show one space.
    Show {
        /// The space's id.
        name: String,
    },
    /// Delete a space (alias: delete). Refused while it holds secrets or
    /// listeners, unless --force.
    #[command(visible_alias = "delete")]
    Rm {
        /// The space's id.
        name: String,
        /// Delete it with its secrets, its listeners and its data keys, so
        /// the deleted values cannot be recovered, not even with the
        /// master key.
        #[arg(long)]
        force: bool,
    },
}

/// Which environment, and optionally which space in it.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Environment.
    #[arg(long = "env", value_name = "ENV")]
    pub env: String,
    /// Space inside the environment.
    #[arg(long = "space", value_name = "SPACE")]
    pub space: Option<String>,
}

impl ScopeArgs {
    /// The scope a write goes to: the space if given, else the environment.
    pub fn target(&self) -> Scope {
        match &self.space {
            Some(s) => Scope::Space(s.clone()),
            None => Scope::Environment(self.env.clone()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Set a secret. At a terminal the value is asked for without echo;
    /// otherwise it is read from stdin (one trailing newline is stripped),
    /// e.g. `printf %s "$TOKEN" | keyhole secrets set SLACK_TOKEN --env prod`.
    Set {
        /// Secret name: 1-256 characters of A-Z a-z 0-9 _ . -, starting with
        /// a letter or `_`.
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// The value on the command line instead of stdin (ends up in shell
        /// history and the process list: avoid).
        #[arg(long, value_name = "VALUE")]
        value: Option<String>,
        /// Bind the secret to event topics: listeners read it only during
        /// events whose topic matches one of these globs (e.g. 'action:*');
        /// repeat for several (no comma lists: globs use commas, as in
        /// 'user.{created,deleted}'). '*' removes a binding. Without it,
        /// a secret keeps the binding it had (none for a new one).
        #[arg(long = "topics", value_name = "GLOB")]
        topics: Vec<String>,
        /// Write only if the secret's current version is V (0: only if it
        /// does not exist yet); otherwise fail and write nothing.
        #[arg(long, value_name = "V")]
        expect_version: Option<u64>,
        /// Keep this many versions of this secret (1-1000, the current one
        /// included) instead of the store's setting (`secrets config`).
        #[arg(long, value_name = "N")]
        keep_versions: Option<u64>,
    },
    /// Show, or with --versions set, how many versions of each secret the
    /// store keeps (unless a secret says otherwise).
    Config {
        /// Versions kept per secret, the current one included (1-1000).
        #[arg(long, value_name = "N")]
        versions: Option<u64>,
    },
    /// List the secrets a listener in this scope sees: names, where each
    /// comes from, version and update time. Never values.
    List {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one secret's metadata in exactly this scope: version, times,
    /// where it comes from. Never its value.
    Show {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret from exactly this scope (alias: delete). Its last
    /// value is kept in its history: `undelete` brings it back, `destroy`
    /// erases it for good.
    #[command(visible_alias = "delete")]
    Rm {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// List a secret's versions in exactly this scope: current, kept,
    /// deleted and destroyed, with times and who wrote each (from the
    /// audit log, for a token that may read it). Never values.
    History {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a new version holding the value of version V.
    Rollback {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// The version whose value to bring back.
        #[arg(long)]
        version: u64,
        /// Write only if the current version is this.
        #[arg(long, value_name = "V")]
        expect_version: Option<u64>,
    },
    /// Bring a deleted secret back: its last version becomes current again.
    Undelete {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Erase versions of a secret for good: their ciphertext is deleted
    /// and the scope's data key rotated. With --all the secret is deleted
    /// too. Run `keyhole keys rotate` afterwards so that no copy of the
    /// old master key opens what the disk may still hold.
    Destroy {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// A version to destroy (repeat for several).
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        version: Vec<u64>,
        /// Every version, the current one included.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Rotate the master key (no --scope) or one scope's data key.
    Rotate {
        /// `env:NAME` or `space:NAME`; without it the master key is rotated.
        #[arg(long, value_name = "env:NAME|space:NAME")]
        scope: Option<Scope>,
        /// Only add the next master key version to this host's key file
        /// (hosts with their own key files: copy it to each, then run
        /// `keyhole keys rotate` to switch).
        #[arg(long, conflicts_with = "scope")]
        prepare: bool,
    },
}
