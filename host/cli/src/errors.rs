//! Exit codes, and turning any error into one clear line plus a hint.
//!
//! Every verb returns `anyhow::Result`; this module is the single place that
//! decides what the user reads and which exit code a script sees. Store and
//! runtime errors are classified by variant (never by message text), and a
//! raw storage-engine lock error can never reach the terminal: `StoreError::Locked`
//! is rewritten into a message that names the fix.

use std::path::Path;

use keyhole_runtime::RuntimeError;
use keyhole_store::StoreError;

use crate::api::ErrorCode;
use crate::auth::{TokenError, role_names};
use crate::client::ApiFailure;
use crate::config::ServeInfo;
use crate::tls::TlsError;
use crate::trail::Refused;

/// Exit codes, as documented in `keyhole --help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Host error or anything not classified below.
    Failure = 1,
    /// Bad usage or invalid input (clap uses 2 for its own errors too).
    Usage = 2,
    /// A named environment, space, secret, listener, token or file does not exist.
    NotFound = 3,
    /// The data directory is held by another keyhole process.
    Locked = 4,
    /// The store is sealed: the master key is missing, wrong or unreadable,
    /// or its file is refused because others can read it.
    Sealed = 5,
    /// A daemon refused the token (missing, wrong, revoked, expired), or
    /// the token lacks the permission or scope for this.
    Denied = 6,
}

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (a listener that fails is still a successful `emit`)
  1  runtime or other error
  2  usage error or invalid input (bad name, spec, module or payload)
  3  not found: unknown environment, space, secret, listener, token or file
  4  data directory in use by a keyhole process that serves no API
  5  sealed: master key missing, wrong, unreadable, or in a file others can read
  6  denied: the daemon refused the token, or it lacks the permission";

/// An error the CLI raises itself, with its exit code and a hint.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: Exit,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn new(code: Exit, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// What to print and how to exit.
pub struct Report {
    pub code: Exit,
    pub message: String,
    pub hint: Option<String>,
}

/// Classifies `err` (looking through its whole chain).
pub fn report(err: &anyhow::Error) -> Report {
    let message = format!("{err:#}");
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ApiFailure>() {
            return api_report(e, message);
        }
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return Report {
                code: e.code,
                message,
                hint: e.hint.clone(),
            };
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return store_report(e, message);
        }
        if let Some(e) = cause.downcast_ref::<Refused>() {
            return refused_report(e, message);
        }
        if let Some(e) = cause.downcast_ref::<RuntimeError>() {
            return runtime_report(e, message);
        }
        if let Some(e) = cause.downcast_ref::<TokenError>() {
            return token_report(e, message);
        }
        if let Some(e) = cause.downcast_ref::<TlsError>() {
            return tls_report(e, message);
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>()
            && let Some(report) = io_report(e, &message)
        {
            return report;
        }
    }
    Report {
        code: Exit::Failure,
        message,
        hint: None,
    }
}

/// A path no file can have (a name past the system's limit, or one that
/// runs through a file): every path keyhole opens outside its data
/// directory's own files is one the user gave (`--data`, `--key-file`, a
/// module, a batch), so it is their input. Other I/O errors are failures.
fn io_report(e: &std::io::Error, message: &str) -> Option<Report> {
    use std::io::ErrorKind as K;
    matches!(e.kind(), K::InvalidFilename | K::NotADirectory).then(|| Report {
        code: Exit::Usage,
        message: message.to_owned(),
        hint: Some("check the path given".into()),
    })
}

const VERSION_HINT: &str = "someone wrote it since you read it: see `keyhole secrets history NAME --env ENV [--space SPACE]`, then write with --expect-version CURRENT";
const HISTORY_HINT: &str = "see `keyhole secrets history NAME --env ENV [--space SPACE]`";

/// A request the API refused, by its code (whether a daemon or this
/// process answered it).
fn api_report(e: &ApiFailure, message: String) -> Report {
    use ErrorCode as C;
    let subject = e.subject.as_deref().unwrap_or("NAME");
    let (code, hint) = match e.code {
        C::Invalid | C::TooLarge => (Exit::Usage, None),
        C::UnknownEnvironment => (
            Exit::NotFound,
            Some(format!(
                "create it with `keyhole env create {subject}`, or see `keyhole env list`"
            )),
        ),
        C::UnknownSpace | C::SpaceNotInEnvironment => {
            (Exit::NotFound, Some("see `keyhole space list`".into()))
        }
        C::UnknownSecret => (
            Exit::NotFound,
            Some("see `keyhole secrets list --env ENV [--space SPACE]`".into()),
        ),
        C::UnknownListener => (Exit::NotFound, Some("see `keyhole listeners list`".into())),
        C::UnknownToken => (Exit::NotFound, Some("see `keyhole token list`".into())),
        C::UnknownRun => (Exit::NotFound, Some("see `keyhole runs`".into())),
        C::UnknownRoute => (
            Exit::NotFound,
            Some("the daemon may be of another keyhole version".into()),
        ),
        C::MethodNotAllowed => (
            Exit::Failure,
            Some("the daemon may be of another keyhole version".into()),
        ),
        C::Exists => (Exit::Failure, None),
        C::VersionMismatch => (Exit::Failure, Some(VERSION_HINT.into())),
        C::UnknownVersion => (Exit::NotFound, Some(HISTORY_HINT.into())),
        C::WrongState => (Exit::Failure, Some(HISTORY_HINT.into())),
        C::NotEmpty => (
            Exit::Failure,
            Some("delete what it holds first, or pass --force to delete it all with it".into()),
        ),
        C::BeingDeleted => (
            Exit::Failure,
            Some("it is being deleted; once it is gone, its id can be created again".into()),
        ),
        C::Contended => (
            Exit::Failure,
            Some("another change ran at the same time; run the command again".into()),
        ),
        C::Timeout | C::Internal | C::Other => (Exit::Failure, None),
        C::Unavailable => (
            Exit::Failure,
            Some("the cluster (NATS) or this host is not ready; run the command again".into()),
        ),
        C::Unauthenticated => (
            Exit::Denied,
            Some(
                "give a valid token: KEYHOLE_TOKEN, or the token file (--token-file);                  `keyhole token list` shows which exist"
                    .into(),
            ),
        ),
        C::Forbidden => (
            Exit::Denied,
            e.missing_permission
                .as_ref()
                .map(|p| format!("use a token whose role holds {p} for this scope")),
        ),
        C::Sealed => (
            Exit::Sealed,
            Some(
                "the master key comes from KEYHOLE_MASTER_KEY, else --key-file / \
                 KEYHOLE_KEY_FILE (default ~/.config/keyhole/master.key); \
                 point it at the key this data directory was initialized with"
                    .into(),
            ),
        ),
        C::AuditUnavailable => (
            Exit::Failure,
            Some(
                "nothing was changed; fix the data directory's disk (space, permissions) and try again"
                    .into(),
            ),
        ),
    };
    Report {
        code,
        message,
        hint,
    }
}

fn runtime_report(e: &RuntimeError, message: String) -> Report {
    use RuntimeError as R;
    let (code, hint) = match e {
        R::Store(s) => return store_report(s, message),
        R::UnknownListener(_) => (Exit::NotFound, Some("see `keyhole listeners list`".into())),
        R::NotEmpty { .. } => (
            Exit::Failure,
            Some("delete what it holds first, or force the delete to take it all with it".into()),
        ),
        R::NotWasm(_)
        | R::CoreModule
        | R::InvalidComponent(_)
        | R::WrongWorld(_)
        | R::ForbiddenImport { .. }
        | R::InvalidSpec(_)
        | R::InvalidEvent(_)
        | R::ExceedsLimits(_)
        | R::TooLarge { .. } => (Exit::Usage, None),
        R::Changed(_) => (
            Exit::Failure,
            Some("another change ran at the same time; run the command again".into()),
        ),
        R::AuditUnavailable(_) => (
            Exit::Failure,
            Some("the audit log cannot write (the data directory's disk: space, permissions; in cluster mode also NATS, which takes a copy): what needed its entries was not done or recorded; fix it and try again".into()),
        ),
        R::Io { .. } | R::Corrupt(_) | R::Engine(_) => (Exit::Failure, None),
    };
    Report {
        code,
        message,
        hint,
    }
}

fn store_report(e: &StoreError, message: String) -> Report {
    use StoreError as S;
    let (code, hint, message) = match e {
        S::Locked { path } => return locked_report(path),
        S::InvalidName { .. }
        | S::InvalidId { .. }
        | S::InvalidValue { .. }
        | S::InvalidTopics { .. } => (Exit::Usage, None, message),
        // Only a listener's read is refused for its topic; listed so that
        // every variant has its code.
        S::TopicBound { .. } => (Exit::Denied, None, message),
        S::UnknownEnvironment(id) => (
            Exit::NotFound,
            Some(format!(
                "create it with `keyhole env create {id}`, or see `keyhole env list`"
            )),
            message,
        ),
        S::UnknownSpace(_) | S::SpaceNotInEnvironment { .. } => (
            Exit::NotFound,
            Some("see `keyhole space list`".into()),
            message,
        ),
        S::NotFound { .. } => (
            Exit::NotFound,
            Some("see `keyhole secrets list --env ENV [--space SPACE]`".into()),
            message,
        ),
        S::Sealed { .. } | S::KeyFile { .. } => (
            Exit::Sealed,
            Some(
                "the master key comes from KEYHOLE_MASTER_KEY, else --key-file / \
                 KEYHOLE_KEY_FILE (default ~/.config/keyhole/master.key): the key this \
                 data directory was initialized with, in a file only its owner can read"
                    .into(),
            ),
            message,
        ),
        S::AlreadyExists(_) | S::SpaceExists { .. } => (Exit::Failure, None, message),
        S::VersionMismatch { .. } => (Exit::Failure, Some(VERSION_HINT.into()), message),
        S::VersionGone { .. } => (Exit::NotFound, Some(HISTORY_HINT.into()), message),
        S::WrongState { .. } => (Exit::Failure, Some(HISTORY_HINT.into()), message),
        S::BeingDeleted(_) => (
            Exit::Failure,
            Some("a deletion of it was interrupted; delete it again to finish".into()),
            message,
        ),
        S::Unsupported(_) => (Exit::Usage, None, message),
        S::Contended(_) => (
            Exit::Failure,
            Some("another change ran at the same time; run the command again".into()),
            message,
        ),
        S::Corrupt { .. } | S::Integrity { .. } | S::Backend(_) | S::Io(_) => {
            (Exit::Failure, None, message)
        }
    };
    Report {
        code,
        message,
        hint,
    }
}

/// An admin action the audit log could not record, so it was not applied.
fn refused_report(e: &Refused, message: String) -> Report {
    let (code, hint) = match e {
        Refused::Sealed(_) => (
            Exit::Sealed,
            "admin changes are audited, and the audit log needs the master key; \
             point KEYHOLE_MASTER_KEY or --key-file at it",
        ),
        Refused::Unavailable(_) => (
            Exit::Failure,
            "nothing was changed; fix the data directory's disk (space, permissions) and try again",
        ),
    };
    Report {
        code,
        message,
        hint: Some(hint.into()),
    }
}

fn token_report(e: &TokenError, message: String) -> Report {
    use TokenError as T;
    let (code, hint) = match e {
        T::Storage(keyhole_kv::KvError::Locked { path }) => return locked_report(path),
        T::InvalidName | T::SpaceWithoutEnvironment | T::InvalidExpiry(_) => (Exit::Usage, None),
        T::Unscopable(_) => (
            Exit::Usage,
            Some(format!(
                "only secrets-writer and deployer tokens take --env/--space (roles: {})",
                role_names()
            )),
        ),
        T::NotFound(_) => (Exit::NotFound, Some("see `keyhole token list`".into())),
        T::Exists(_) => (
            Exit::Failure,
            Some("pick another name, or `keyhole token rotate NAME` for a new secret".into()),
        ),
        T::Contended(_) => (
            Exit::Failure,
            Some("another change ran at the same time; run the command again".into()),
        ),
        T::Corrupt(_) | T::Storage(_) => (Exit::Failure, None),
    };
    Report {
        code,
        message,
        hint,
    }
}

/// `keyhole serve` refused its listen address or TLS files: the user's
/// input, except a file the OS would not let us read.
fn tls_report(e: &TlsError, message: String) -> Report {
    use TlsError as T;
    let (code, hint) = match e {
        T::PlainNonLoopback { .. } => (
            Exit::Usage,
            Some(
                "--insecure-listen is for a TLS-terminating proxy in front of keyhole, or a \
                 network you trust; otherwise give a certificate and its key (PEM) with \
                 --tls-cert PATH --tls-key PATH"
                    .into(),
            ),
        ),
        T::Missing { .. } => (Exit::NotFound, None),
        T::Unreadable { .. } => (Exit::Failure, None),
        T::BadCertificate { .. } | T::BadKey { .. } | T::Rejected { .. } => (
            Exit::Usage,
            Some("--tls-cert takes a PEM certificate chain, --tls-key its PEM private key".into()),
        ),
        T::Mismatch { .. } => (
            Exit::Usage,
            Some("pass the private key the certificate was issued for".into()),
        ),
    };
    Report {
        code,
        message,
        hint,
    }
}

/// The data dir is held: say by whom, and what to do instead.
fn locked_report(path: &Path) -> Report {
    let message = format!(
        "data directory {} is in use by another keyhole process (is `keyhole serve` running?)",
        path.display()
    );
    let hint = match ServeInfo::read(path) {
        Some(info) => format!(
            "stop it (`kill {}`), or use the HTTP API at {} while it runs",
            info.pid, info.address
        ),
        None => "stop the other keyhole process, or use the HTTP API of `keyhole serve`".into(),
    };
    Report {
        code: Exit::Locked,
        message,
        hint: Some(hint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_through_context_and_runtime_wrapping() {
        let err = anyhow::Error::new(RuntimeError::Store(StoreError::UnknownEnvironment(
            "staging".into(),
        )))
        .context("deploying x");
        let r = report(&err);
        assert_eq!(r.code, Exit::NotFound);
        assert!(r.message.starts_with("deploying x: unknown environment"));
        assert!(r.hint.unwrap().contains("keyhole env create staging"));

        let err = anyhow::Error::new(StoreError::Sealed {
            reason: "master key not available at /k".into(),
        });
        assert_eq!(report(&err).code, Exit::Sealed);

        let dir = tempfile::tempdir().unwrap();
        let err = anyhow::Error::new(StoreError::Locked {
            path: dir.path().into(),
        });
        let r = report(&err);
        assert_eq!(r.code, Exit::Locked);
        assert!(r.message.contains("keyhole serve"), "{}", r.message);
    }
}
