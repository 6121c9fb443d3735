//! Setting up and administering a data directory: `init` and `compact` (on
//! the data directory itself), and `env`, `space` and `keys rotate` (requests to
//! the API; tokens are `tokens.rs`).
//!
//! `init` is careful about the two things that cannot be undone: it never
//! overwrites a master key (losing one loses every secret it protects), and
//! it refuses a key file inside the data directory (a backup of the data
//! directory would then carry its own key).

use std::io::Write;

use anyhow::Result;
use keyhole_store::{KeySource, SecretStore};

use crate::auth::{Principal, Tokens};
use crate::cli::{EnvCmd, KeysCmd, SpaceCmd};
use crate::client::{Client, query, segment};
use crate::config::Globals;
use crate::errors::{CliError, Exit};
use crate::requests::{CreateEnvironment, CreateSpace, Rotate, SpaceQuery};
use crate::views::{DeletionView, EnvironmentView, RotationView, SpaceView};

/// How the audit log names the admin token `init` and `token reset` make.
pub const ADMIN_TARGET: &str = "token:admin (role admin, scope all)";

pub fn init(g: &Globals) -> Result<()> {
    if let KeySource::File(path) = &g.key {
        if path.exists() {
            return Err(CliError::new(
                Exit::Failure,
                format!(
                    "key file {} already exists; `keyhole init` never overwrites a master key",
                    path.display()
                ),
            )
            .hint(
                "keep it: it is the only key to the secrets it protects. \
                 To start a new installation, pass --key-file NEW_PATH",
            )
            .into());
        }
        if keyhole_store::key_file_inside(path, &g.data) {
            return Err(CliError::new(
                Exit::Usage,
                format!(
                    "key file {} is inside the data directory {}: a copy of the data directory would carry its own key",
                    path.display(),
                    g.data.display()
                ),
            )
            .hint("put the key elsewhere, e.g. the default ~/.config/keyhole/master.key")
            .into());
        }
    }
    crate::datadir::secure(&g.data)?;
    {
        // Look before creating a key: an initialized data dir has a token.
        let probe = g.open_store_with(KeySource::None)?;
        if Tokens::open(&**probe.backend())?.any()? {
            return Err(CliError::new(
                Exit::Failure,
                format!("data directory {} is already initialized", g.data.display()),
            )
            .hint("use `keyhole token reset` for a new API token; keep using its master key")
            .into());
        }
    }
    if let KeySource::File(path) = &g.key {
        SecretStore::init_key_file(path)?;
    }
    let store = g.open_store()?;
    if let Some(reason) = store.sealed_reason() {
        return Err(keyhole_store::StoreError::Sealed { reason }.into());
    }
    let tokens = Tokens::open(&**store.backend())?;
    let admin = g.trail(&store)?.record("token.create", ADMIN_TARGET, || {
        tokens.install_admin(&Principal::local().actor())
    })??;
    let mut out = std::io::stdout().lock();
    writeln!(out, "initialized data directory {}", g.data.display())?;
    match &g.key {
        KeySource::File(path) => writeln!(
            out,
            "master key: {} (back it up apart from the data directory; without it no secret can be read)",
            path.display()
        )?,
        _ => writeln!(
            out,
            "master key: from $KEYHOLE_MASTER_KEY (no file written)"
        )?,
    }
    // The token exists now: it is printed even when the token file cannot
    // take it, and that failure reported after (as `token reset` does).
    let file = g
        .token_file
        .as_deref()
        .map(|path| (path, crate::config::write_token_file(path, &admin)));
    match &file {
        Some((path, Ok(()))) => writeln!(
            out,
            "token file: {} (mode 0600; the CLI uses it to talk to `keyhole serve`)",
            path.display()
        )?,
        Some((_, Err(_))) => {}
        None => writeln!(
            out,
            "token file: none (key text from $KEYHOLE_MASTER_KEY); set KEYHOLE_TOKEN for the CLI to talk to `keyhole serve`"
        )?,
    }
    drop(out);
    super::tokens::print_once(
        "API token `admin`, role admin (keyhole keeps only its sha256):",
        &admin,
    )?;
    super::tokens::token_file_failure(file)
}

pub fn env(c: &Client, cmd: EnvCmd) -> Result<()> {
    match cmd {
        EnvCmd::Create { name } => {
            let e: EnvironmentView = c.post("/v1/environments", &CreateEnvironment { id: name })?;
            println!("created environment {}", e.id);
        }
        EnvCmd::Show { name } => {
            let e: EnvironmentView = c.get(&format!("/v1/environments/{}", segment(&name)))?;
            println!("environment {}\n  created: {}", e.id, e.created_at);
        }
        EnvCmd::Rm { name, force } => {
            let path = format!("/v1/environments/{}{}", segment(&name), force_query(force));
            let gone: DeletionView = c.delete(&path)?;
            println!("deleted environment {name}{}", deletion_text(&gone));
        }
        EnvCmd::List => {
            let envs: Vec<EnvironmentView> = c.get("/v1/environments")?;
            if envs.is_empty() {
                println!("no environments (create one with `keyhole env create NAME`)");
            } else {
                println!("{:<24} CREATED", "ENVIRONMENT");
                for e in envs {
                    println!("{:<24} {}", e.id, e.created_at);
                }
            }
        }
    }
    Ok(())
}

pub fn space(c: &Client, cmd: SpaceCmd) -> Result<()> {
    match cmd {
        SpaceCmd::Create { name, env } => {
            let s: SpaceView = c.post(
                "/v1/spaces",
                &CreateSpace {
                    id: name,
                    environment_id: env,
                },
            )?;
            println!("created space {} in environment {}", s.id, s.environment_id);
        }
        SpaceCmd::Show { name } => {
            let s: SpaceView = c.get(&format!("/v1/spaces/{}", segment(&name)))?;
            println!(
                "space {}\n  environment: {}\n  created: {}",
                s.id, s.environment_id, s.created_at
            );
        }
        SpaceCmd::Rm { name, force } => {
            let path = format!("/v1/spaces/{}{}", segment(&name), force_query(force));
            let gone: DeletionView = c.delete(&path)?;
            println!("deleted space {name}{}", deletion_text(&gone));
        }
        SpaceCmd::List { env } => {
            let path = format!(
                "/v1/spaces{}",
                query(&SpaceQuery {
                    environment_id: env
                })?
            );
            let spaces: Vec<SpaceView> = c.get(&path)?;
            if spaces.is_empty() {
                println!("no spaces (create one with `keyhole space create NAME --env ENV`)");
            } else {
                println!("{:<24} {:<24} CREATED", "SPACE", "ENVIRONMENT");
                for s in spaces {
                    println!("{:<24} {:<24} {}", s.id, s.environment_id, s.created_at);
                }
            }
        }
    }
    Ok(())
}

fn force_query(force: bool) -> &'static str {
    if force { "?force=true" } else { "" }
}

/// What a forced delete took with it, if anything.
fn deletion_text(d: &DeletionView) -> String {
    if !d.forced {
        return String::new();
    }
    format!(
        " with {} secret{}, {} space{}, {} listener{} and {} data key{} (destroyed: the values cannot be recovered)",
        d.secrets,
        plural(d.secrets),
        d.spaces.len(),
        plural(d.spaces.len()),
        d.listeners.len(),
        plural(d.listeners.len()),
        d.data_keys,
        plural(d.data_keys)
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub fn keys(c: &Client, cmd: KeysCmd) -> Result<()> {
    let KeysCmd::Rotate { scope, prepare } = cmd;
    let report: RotationView = c.post(
        "/v1/keys/rotate",
        &Rotate {
            scope: scope.map(|s| s.to_string()),
            prepare,
        },
    )?;
    println!("{}", rotation_text(&report));
    Ok(())
}

/// One paragraph describing a rotation.
pub fn rotation_text(r: &RotationView) -> String {
    if r.prepared {
        let mut text = format!(
            "prepared master key (KEK) v{} (current: v{})",
            r.new_version,
            r.previous_version.unwrap_or_default()
        );
        if let Some(notice) = &r.notice {
            text.push('\n');
            text.push_str(notice);
        }
        return text;
    }
    let (what, records) = match r.target.as_str() {
        "kek" => ("master key (KEK)".to_string(), "data keys rewrapped"),
        scope => (format!("data key of {scope}"), "secrets re-encrypted"),
    };
    let previous = r
        .previous_version
        .map_or_else(|| "none".to_string(), |v| format!("v{v}"));
    let retired = if r.retired_versions.is_empty() {
        "none".to_string()
    } else {
        r.retired_versions
            .iter()
            .map(|v| format!("v{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "rotated {what}: {previous} -> v{}\n  {records}: {}\n  retired versions: {retired}",
        r.new_version, r.records_rewritten
    );
    if let Some(notice) = &r.notice {
        text.push('\n');
        text.push_str(notice);
    }
    text
}

/// `keyhole compact`, on the data directory itself: rewrites the embedded
/// database so that what was deleted or destroyed (secret versions, retired
/// data keys) is gone from its files, not only unreachable. The embedded database keeps
/// freed bytes until it reuses the space; the copy holds only what is live.
/// Audited before it runs, like every admin action.
pub fn compact(g: &Globals) -> Result<()> {
    if g.cluster.is_some() {
        return Err(CliError::new(
            Exit::Usage,
            "`keyhole compact` rewrites the embedded database; a cluster's NATS buckets are not compacted this way",
        )
        .hint("in cluster mode `keyhole secrets destroy` erases the server's copies itself")
        .into());
    }
    {
        // Fails at once while a daemon has the directory.
        let store = g.open_store()?;
        g.trail(&store)?
            .record("store.compact", "data directory", || {
                Ok::<(), std::convert::Infallible>(())
            })??;
    }
    // This process held the directory a moment ago: wait out its release.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let done = loop {
        match keyhole_kv_embedded::EmbeddedKv::compact(&g.data) {
            Err(keyhole_kv::KvError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(done) => break done,
            Err(e) => {
                let e = keyhole_store::StoreError::from(e);
                // Its `ok` entry is in the log: so is its failure, if the
                // directory can be opened again (a daemon that took it
                // meanwhile holds it).
                let recorded = g
                    .open_store()
                    .and_then(|store| g.trail(&store))
                    .map(|trail| {
                        trail.failed_later("store.compact", "data directory", &e.to_string())
                    });
                if !matches!(recorded, Ok(Ok(()))) {
                    eprintln!(
                        "warning: the audit log shows this compaction as done: its failure could not be recorded"
                    );
                }
                return Err(e.into());
            }
        }
    };
    println!(
        "compacted {}: {} KiB -> {} KiB; deleted and destroyed records are gone from its files",
        g.data.display(),
        done.bytes_before.div_ceil(1024),
        done.bytes_after.div_ceil(1024)
    );
    Ok(())
}
