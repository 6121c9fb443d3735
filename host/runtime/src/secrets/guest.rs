//! The WIT boundary of `get-secret` and `get-secret-info`: linking both
//! interface versions, and copying a call's arguments out of guest memory
//! only after their lengths are checked.

use std::sync::Arc;

// The store's own limits: a name or id longer than the store accepts is
// refused before it is copied out of guest memory.
use keyhole_store::{MAX_ID_LEN, MAX_NAME_LEN};
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, Lower, WasmStr};

use super::{SecretsView, error_outcome};
use crate::bindings::keyhole::listener::secrets::SecretError;
use crate::metrics::CallOutcome;

/// The interface in each WIT version keyhole serves: 0.2.0 adds
/// `get-secret-info`; `get-secret` is the same in both.
const INTERFACE_0_1: &str = "keyhole:listener/secrets@0.1.0";
const INTERFACE_0_2: &str = "keyhole:listener/secrets@0.2.0";

/// WIT `secret-info` (0.2.0), lowered from the one host copy of the value
/// as `get-secret` lowers it (see [`Revealed`]).
#[derive(ComponentType, Lower)]
#[component(record)]
struct SecretInfo {
    value: Arc<str>,
    kind: ScopeKind,
    environment: String,
    space: Option<String>,
    version: u64,
}

/// WIT `scope-kind` (0.2.0).
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
pub(super) enum ScopeKind {
    #[component(name = "environment")]
    Environment,
    #[component(name = "space")]
    Space,
}

/// `record scope` as it sits in guest memory, not yet copied.
#[derive(ComponentType, Lift)]
#[component(record)]
struct GuestScope {
    environment: Option<WasmStr>,
    space: Option<WasmStr>,
}

/// Links `get-secret` of both WIT versions, and 0.2.0's `get-secret-info`,
/// into `linker`.
pub fn add_to_linker<T: SecretsView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    for interface in [INTERFACE_0_1, INTERFACE_0_2] {
        let mut inst = linker.instance(interface)?;
        inst.func_wrap(
            "get-secret",
            |mut cx: StoreContextMut<'_, T>, (name, scope): (WasmStr, Option<GuestScope>)| {
                let result = call(&mut cx, &name, scope.as_ref(), false).map(|found| found.value);
                Ok((result,))
            },
        )?;
        if interface == INTERFACE_0_2 {
            inst.func_wrap(
                "get-secret-info",
                |mut cx: StoreContextMut<'_, T>, (name, scope): (WasmStr, Option<GuestScope>)| {
                    let result =
                        call(&mut cx, &name, scope.as_ref(), true).map(|found| SecretInfo {
                            value: found.value,
                            kind: found.kind,
                            environment: found.environment.unwrap_or_default(),
                            space: found.space,
                            version: found.version,
                        });
                    Ok((result,))
                },
            )?;
        }
    }
    Ok(())
}

/// One call of `get-secret` or (`info`) `get-secret-info`: the read, its
/// audit entry and its metrics.
fn call<T: SecretsView + 'static>(
    cx: &mut StoreContextMut<'_, T>,
    name: &WasmStr,
    scope: Option<&GuestScope>,
    info: bool,
) -> Result<Found, SecretError> {
    let request = read_request(cx, name, scope);
    let ctx = cx.data_mut().secrets();
    let result = match request {
        Ok(req) => ctx.get_secret(req, info),
        // Refused before anything was copied: the entry has no name.
        Err(e) => ctx
            .audited("", None, None, error_outcome(&e), None)
            .and(Err(e)),
    };
    let outcome = match &result {
        Ok(_) => CallOutcome::Ok,
        Err(SecretError::NotFound) => CallOutcome::NotFound,
        Err(SecretError::AccessDenied) => CallOutcome::AccessDenied,
        Err(SecretError::InvalidName(_)) => CallOutcome::InvalidName,
        Err(SecretError::Unavailable(_)) => CallOutcome::Unavailable,
    };
    ctx.host.metrics.get_secret(outcome);
    result
}

/// A value a read found, and where (the environment only when asked for:
/// `get-secret` copies nothing it does not return).
pub(super) struct Found {
    pub(super) value: Arc<str>,
    pub(super) kind: ScopeKind,
    pub(super) environment: Option<String>,
    pub(super) space: Option<String>,
    pub(super) version: u64,
}

pub(super) struct Request {
    pub(super) name: String,
    pub(super) environment: Option<String>,
    pub(super) space: Option<String>,
    pub(super) explicit: bool,
}

/// Copies the arguments out of guest memory, refusing oversize ones first.
fn read_request<T: 'static>(
    cx: &mut StoreContextMut<'_, T>,
    name: &WasmStr,
    scope: Option<&GuestScope>,
) -> Result<Request, SecretError> {
    let name = bounded(cx, name, MAX_NAME_LEN, "secret name")?;
    let (environment, space) = match scope {
        None => (None, None),
        Some(s) => (
            s.environment
                .as_ref()
                .map(|e| bounded(cx, e, MAX_ID_LEN, "environment id"))
                .transpose()?,
            s.space
                .as_ref()
                .map(|e| bounded(cx, e, MAX_ID_LEN, "space id"))
                .transpose()?,
        ),
    };
    Ok(Request {
        name,
        environment,
        space,
        explicit: scope.is_some(),
    })
}

/// Borrows the string in place (no allocation), checks its length, and only
/// then copies it.
fn bounded<T: 'static>(
    cx: &mut StoreContextMut<'_, T>,
    s: &WasmStr,
    max: usize,
    what: &str,
) -> Result<String, SecretError> {
    let text = s
        .to_str(&*cx)
        .map_err(|_| SecretError::InvalidName(format!("{what} is not valid UTF-8")))?;
    if text.len() > max {
        return Err(SecretError::InvalidName(format!(
            "{what} is {} bytes; the limit is {max}",
            text.len()
        )));
    }
    Ok(text.into_owned())
}
