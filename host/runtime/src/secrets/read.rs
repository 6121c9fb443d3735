//! One read: the request authorised against what the deployment may read,
//! looked up in the store, audited (or refused if it cannot be), and the
//! value revealed once per run.

use std::borrow::Cow;

use keyhole_audit::{ReadOutcome, RequestedScope, ResolvedScope, SecretRead};
use keyhole_store::{Resolved, Scope, StoreError};

use super::guest::{Found, Request, ScopeKind};
use super::{
    AUDIT_UNAVAILABLE, MAX_NOTES, Revealed, SecretsCtx, error_outcome, resolved_scope, to_wit_error,
};
use crate::access::Denial;
use crate::bindings::keyhole::listener::secrets::SecretError;

/// Why a lookup gave no value: the guest's error, and for a denial the
/// rule that denied it.
struct Refusal {
    error: SecretError,
    denial: Option<Denial>,
}

impl From<SecretError> for Refusal {
    fn from(error: SecretError) -> Self {
        Refusal {
            error,
            denial: None,
        }
    }
}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        Refusal {
            error: SecretError::AccessDenied,
            denial: Some(denial),
        }
    }
}

impl SecretsCtx {
    pub(super) fn get_secret(&mut self, req: Request, info: bool) -> Result<Found, SecretError> {
        let looked_up = self.look_up(&req, info);
        let requested = req.explicit.then_some(RequestedScope {
            environment: req.environment.as_deref(),
            space: req.space.as_deref(),
        });
        let found = looked_up.as_ref().ok().map(|(r, _)| resolved_scope(r));
        let (outcome, denial) = match &looked_up {
            Ok(_) => (ReadOutcome::Ok, None),
            Err(r) => (error_outcome(&r.error), r.denial),
        };
        if let Some(d) = denial {
            self.note(format!(
                "get-secret {}: access-denied ({})",
                req.name,
                d.reason()
            ));
        }
        // The entry is accepted before the value is handed out; if it
        // cannot be, the value drops (and zeroizes) here, unrevealed.
        self.audited(
            &req.name,
            requested,
            found,
            outcome,
            denial.map(Denial::reason),
        )?;
        let (resolved, environment) = looked_up.map_err(|r| r.error)?;
        let (kind, space) = match &resolved.scope {
            Scope::Space(s) if info => (ScopeKind::Space, Some(s.clone())),
            Scope::Space(_) => (ScopeKind::Space, None),
            Scope::Environment(_) => (ScopeKind::Environment, None),
        };
        let found = |value| Found {
            value,
            kind,
            environment,
            space,
            version: resolved.version,
        };
        // A value read again (same name, unchanged) is handed out from the
        // copy already revealed: a guest calling get-secret in a loop must
        // not grow host memory, or the scrubbing after the run, per call.
        if let Some((_, seen)) = self
            .revealed
            .iter()
            .find(|(n, v)| *n == req.name && v.expose() == resolved.value.expose())
        {
            return Ok(found(seen.0.clone()));
        }
        // The store's copy zeroizes as it drops here; see `Revealed`.
        let revealed = Revealed::new(resolved.value.expose());
        let value = revealed.0.clone();
        self.revealed.push((req.name, revealed));
        Ok(found(value))
    }

    /// What the store has for the request, and the environment it was
    /// read in, if the deployment may read it. The name is checked against
    /// the declared ones before any lookup.
    fn look_up(
        &mut self,
        req: &Request,
        info: bool,
    ) -> Result<(Resolved, Option<String>), Refusal> {
        keyhole_store::validate_name(&req.name).map_err(to_wit_error)?;
        self.reader.access.check_name(&req.name)?;
        let result = {
            let (environment, space) = self.authorize(req)?;
            self.host
                .store
                .resolve_on_topic(&environment, space, &req.name, &self.topic)
                .map(|r| (r, info.then(|| environment.into_owned())))
        };
        result.map_err(|e| {
            if let StoreError::TopicBound { .. } = e {
                return Denial::TopicMismatch.into();
            }
            if e.is_unavailable() {
                self.note(format!("get-secret {}: {e}", req.name));
            }
            to_wit_error(e).into()
        })
    }

    /// Adds a note to the run record, unless it is there already or the
    /// record has its fill: a guest calling in a loop adds one.
    fn note(&mut self, text: String) {
        if self.notes.len() < MAX_NOTES && !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }

    /// Records the call in the audit log, or refuses it (`unavailable`) if
    /// the entry cannot be accepted: fail closed.
    pub(super) fn audited(
        &mut self,
        name: &str,
        requested: Option<RequestedScope<'_>>,
        resolved: Option<ResolvedScope<'_>>,
        outcome: ReadOutcome,
        reason: Option<&str>,
    ) -> Result<(), SecretError> {
        let refused = match &self.host.audit {
            // Only a sealed store has no audit log, and it serves nothing.
            None => Some("the store is sealed".to_owned()),
            Some(log) => log
                .secret_read(&SecretRead {
                    requested,
                    resolved,
                    reason,
                    ..self
                        .reader
                        .read_entry(&self.event_id, &self.topic, name, outcome)
                })
                .err()
                .map(|e| e.0),
        };
        match refused {
            None => {
                self.host.metrics.audit_entry();
                Ok(())
            }
            // Sealed: the call failed anyway, and says why.
            Some(_) if outcome != ReadOutcome::Ok && self.host.audit.is_none() => Ok(()),
            Some(why) => {
                self.host.metrics.audit_refused();
                self.note(format!("get-secret {name}: {AUDIT_UNAVAILABLE} ({why})"));
                Err(SecretError::Unavailable(AUDIT_UNAVAILABLE.into()))
            }
        }
    }

    /// Decides which scope a request reads, or denies it. Denial happens
    /// before any lookup of the name, so it reveals nothing about whether
    /// the name exists; and it does not depend on whether a scope exists
    /// outside what the deployment may read, so it reveals nothing about
    /// which scopes exist either:
    ///
    /// - an environment is denied unless it is the own one or granted,
    ///   whether it exists or not;
    /// - a space named alone is denied unless it is granted or belongs to
    ///   the own or a granted environment, so a space that exists nowhere
    ///   is denied like another environment's (answering `not-found` for
    ///   it would tell a listener which space ids exist on the host);
    /// - a space named with an allowed environment reads from that
    ///   environment: a space outside it, existing or not, is `not-found`.
    ///
    /// Allowed means the own environment, or granted (`access.rs`).
    fn authorize<'r>(&'r self, req: &'r Request) -> Result<ReadScope<'r>, Refusal> {
        if !req.explicit {
            return Ok((
                Cow::Borrowed(&*self.reader.environment),
                self.space.as_deref(),
            ));
        }
        for id in req.environment.iter().chain(req.space.iter()) {
            keyhole_store::validate_id(id).map_err(to_wit_error)?;
        }
        let environment: Cow<'r, str> = match (&req.environment, &req.space) {
            (Some(env), _) => Cow::Borrowed(env),
            // A space named alone reads from the environment it belongs to.
            (None, Some(space)) => match self.host.store.space(space) {
                Ok(Some(info)) => Cow::Owned(info.environment),
                // In no environment, so in none the deployment may read.
                Ok(None) => return Err(Denial::ScopeNotGranted.into()),
                Err(e) => return Err(to_wit_error(e).into()),
            },
            (None, None) => Cow::Borrowed(&*self.reader.environment),
        };
        self.reader.access.check_scope(
            &self.reader.environment,
            &environment,
            req.space.as_deref(),
        )?;
        Ok((environment, req.space.as_deref()))
    }
}

/// The environment and optional space a request reads from.
type ReadScope<'r> = (Cow<'r, str>, Option<&'r str>);
