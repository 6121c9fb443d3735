//! Injected secrets: a listener uses a credential without being able to
//! read it.
//!
//! A deployment may bind a secret to an origin and a request header
//! (`keyhole deploy --inject 'SLACK_TOKEN@https://slack.com/Authorization:
//! Bearer {}'`). On every outbound request to that origin the host reads the
//! secret for the event (the space's override, else the environment's: what
//! `get-secret(name, none)` reads), audits the read as injected, and sets
//! the header, replacing any the guest set. The guest never holds the value:
//!
//! - `get-secret` of an injected name is `access-denied` (`secrets.rs`),
//!   decided before any lookup, like every other denial;
//! - a rule matches the request's own origin (scheme, host, port), and
//!   wasi-http's `default_send_request` follows no redirect: a 3xx goes
//!   back to the guest, whose next request is matched afresh;
//! - what comes back is scrubbed of it (`http_scrub.rs`), and a request
//!   carrying it asks for an identity encoding, so an echo cannot come back
//!   compressed past the scrubber.
//!
//! The header is set in `OutboundHooks::send_request` (`http.rs`), on the
//! `http::Request` the guest has already given up: nothing the guest holds
//! refers to its headers any more.
//!
//! Here: the deploy-spec form ([`Injection`]) and its one text syntax, the
//! checked rules a deployment keeps ([`Rules`]), and the per-run
//! [`Injector`]. A deployment without injections has no rules (`None`), so
//! its runs pay one branch in `get-secret` and none in `send_request`.

use std::sync::Arc;

use http::header::{ACCEPT_ENCODING, HeaderName, HeaderValue};
use keyhole_audit::{InjectedInto, SecretRead};
use keyhole_store::StoreError;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::access::Denial;
use crate::bindings::keyhole::listener::secrets::SecretError;
use crate::http::AllowedOrigin;
use crate::secrets::{
    Reader, Revealed, SecretsCtx, SecretsHost, read_outcome, resolved_scope, to_wit_error,
};

/// Where the secret's value goes in a template.
pub const PLACEHOLDER: &str = "{}";
/// The text form `--inject` takes.
pub const SYNTAX: &str = "SECRET@ORIGIN/HEADER: TEMPLATE";
/// An example of [`SYNTAX`], for messages and help.
pub const EXAMPLE: &str = "SLACK_TOKEN@https://slack.com/Authorization: Bearer {}";
/// Most injections one deployment may have.
pub const MAX_INJECTIONS: usize = 16;
/// Longest template, in bytes.
const MAX_TEMPLATE: usize = 1024;

/// Headers an injection may not set: the host or the connection sets them
/// (`host`, framing, hop-by-hop), a proxy would read them, or keyhole
/// itself sets them on a request carrying a secret (`accept-encoding`).
const REFUSED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "http2-settings",
    "accept-encoding",
    "content-encoding",
];

/// Why an injection is refused, in the user's terms (`--inject` names the
/// flag; the API answers it as a bad request).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInjection(pub String);

fn placeholder() -> String {
    PLACEHOLDER.into()
}

/// One injection as a deployment asks for it: put `secret` in `header` of
/// every request to `origin`, written as `template` with `{}` standing for
/// the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// The secret's name, e.g. `SLACK_TOKEN`.
    pub secret: String,
    /// The origin the value may go to, as `--allow-http` takes one
    /// (`https://slack.com`, `http://127.0.0.1:8099`, `slack.com`).
    pub origin: String,
    /// The request header it goes in, e.g. `Authorization`.
    pub header: String,
    /// The header's value, holding `{}` once, e.g. `Bearer {}`.
    #[serde(default = "placeholder")]
    pub template: String,
}

impl Injection {
    /// Parses and checks the text form, [`SYNTAX`]: the secret's name up
    /// to the first `@`; the origin up to the first `/` after its `://`
    /// (so colons and ports in it need no escaping); the header name up to
    /// the first `:`; the rest, trimmed, is the template (`{}` when there
    /// is no `:`). E.g. `SLACK_TOKEN@https://slack.com/Authorization: Bearer {}`,
    /// `API_KEY@http://127.0.0.1:8099/X-Api-Key`.
    pub fn parse(text: &str) -> Result<Self, InvalidInjection> {
        let usage = format!("expected {SYNTAX}, e.g. '{EXAMPLE}'");
        let (secret, rest) = text
            .split_once('@')
            .ok_or_else(|| InvalidInjection(format!("no `@` after the secret's name; {usage}")))?;
        let after_scheme = rest.find("://").map_or(0, |i| i + 3);
        let slash = rest[after_scheme..]
            .find('/')
            .map(|i| after_scheme + i)
            .ok_or_else(|| InvalidInjection(format!("no `/HEADER` after the origin; {usage}")))?;
        let (origin, place) = (&rest[..slash], &rest[slash + 1..]);
        let (header, template) = match place.split_once(':') {
            Some((header, template)) => (header, template.trim()),
            None => (place, PLACEHOLDER),
        };
        let injection = Injection {
            secret: secret.trim().into(),
            origin: origin.into(),
            header: header.trim().into(),
            template: template.into(),
        };
        injection.rule().map_err(InvalidInjection)?;
        Ok(injection)
    }

    /// The checked rule, or what is wrong in the user's terms.
    fn rule(&self) -> Result<Rule, String> {
        keyhole_store::validate_name(&self.secret).map_err(|e| format!("secret name: {e}"))?;
        let origin = AllowedOrigin::parse_origin(&self.origin)
            .map_err(|e| format!("origin {:?}: {e}", self.origin))?;
        let header = HeaderName::from_bytes(self.header.as_bytes()).map_err(|_| {
            format!(
                "{:?} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~); \
                 an injection names an origin, without a path",
                self.header
            )
        })?;
        if REFUSED_HEADERS.contains(&header.as_str()) {
            return Err(format!(
                "header {header} is set by keyhole or the connection and cannot carry a secret"
            ));
        }
        if self.template.len() > MAX_TEMPLATE {
            return Err(format!("the template is longer than {MAX_TEMPLATE} bytes"));
        }
        let (prefix, suffix) = match self.template.split_once(PLACEHOLDER) {
            Some((p, s)) if !s.contains(PLACEHOLDER) => (p, s),
            _ => {
                return Err(format!(
                    "the template {:?} must hold `{{}}` exactly once, where the value goes \
                     (e.g. `Bearer {{}}`)",
                    self.template
                ));
            }
        };
        HeaderValue::from_str(&format!("{prefix}{suffix}")).map_err(|_| {
            format!(
                "the template {:?} may hold only printable ASCII characters",
                self.template
            )
        })?;
        Ok(Rule {
            secret: self.secret.as_str().into(),
            origin_text: origin.to_string().into(),
            origin,
            header,
            prefix: prefix.into(),
            suffix: suffix.into(),
        })
    }
}

impl std::fmt::Display for Injection {
    /// The text form, [`SYNTAX`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}/{}: {}",
            self.secret, self.origin, self.header, self.template
        )
    }
}

/// One checked injection, ready for requests.
pub(crate) struct Rule {
    secret: Box<str>,
    origin: AllowedOrigin,
    /// `origin` as audit entries name it, `https://slack.com:443`.
    origin_text: Box<str>,
    header: HeaderName,
    prefix: Box<str>,
    suffix: Box<str>,
}

impl Rule {
    /// The header's value for `value`, marked sensitive; `None` if the
    /// value cannot be in a header (a control character). The text made
    /// on the way is zeroized; the `HeaderValue` is not (see the threat
    /// model).
    fn header_value(&self, value: &str) -> Option<HeaderValue> {
        let mut text = Zeroizing::new(Vec::with_capacity(
            self.prefix.len() + value.len() + self.suffix.len(),
        ));
        text.extend_from_slice(self.prefix.as_bytes());
        text.extend_from_slice(value.as_bytes());
        text.extend_from_slice(self.suffix.as_bytes());
        let mut header = HeaderValue::from_bytes(&text).ok()?;
        header.set_sensitive(true);
        Some(header)
    }
}

/// A deployment's checked injections.
pub(crate) struct Rules {
    rules: Box<[Rule]>,
}

impl Rules {
    /// The rules of `injections`, `None` when there are none; `Err` says
    /// what is wrong with which, in the user's terms.
    pub(crate) fn of(injections: &[Injection]) -> Result<Option<Arc<Rules>>, String> {
        if injections.is_empty() {
            return Ok(None);
        }
        if injections.len() > MAX_INJECTIONS {
            return Err(format!("at most {MAX_INJECTIONS} injections"));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(injections.len());
        for injection in injections {
            let rule = injection
                .rule()
                .map_err(|e| format!("inject {injection}: {e}"))?;
            if rules
                .iter()
                .any(|r| r.origin == rule.origin && r.header == rule.header)
            {
                return Err(format!(
                    "inject {injection}: another injection already sets {} for {}",
                    rule.header, rule.origin
                ));
            }
            rules.push(rule);
        }
        Ok(Some(Arc::new(Rules {
            rules: rules.into(),
        })))
    }

    /// The origins the rules send to: each is allowed by its injection.
    pub(crate) fn origins(&self) -> impl Iterator<Item = &AllowedOrigin> {
        self.rules.iter().map(|r| &r.origin)
    }
}

/// Per run: reads and sets the injected values of each request, and keeps
/// them to scrub what comes back and the run record.
pub(crate) struct Injector {
    rules: Arc<Rules>,
    /// The store, metrics and audit log (`None` while the store is sealed:
    /// then nothing is injected).
    host: Arc<SecretsHost>,
    reader: Arc<Reader>,
    space: Option<Arc<str>>,
    /// The event's topic: a secret bound to topics is injected only on
    /// events whose topic matches one.
    topic: Box<str>,
    event_id: Box<str>,
    /// Every value injected so far this run, by name, once each.
    injected: Vec<(String, Revealed)>,
}

impl Injector {
    /// The injector of a run whose `get-secret` context is `secrets`: the
    /// same event scope, audit log and metrics.
    pub(crate) fn new(rules: Arc<Rules>, secrets: &SecretsCtx) -> Self {
        Injector {
            rules,
            host: secrets.host.clone(),
            reader: secrets.reader.clone(),
            space: secrets.space.clone(),
            topic: secrets.topic.clone(),
            event_id: secrets.event_id.clone(),
            injected: Vec::new(),
        }
    }

    /// Sets the header of every rule for `request`'s origin, replacing the
    /// guest's, and asks for an identity encoding if any was set. Returns
    /// the names injected (empty, unallocated, when no rule applies), or
    /// why the request must not go out, for the run record.
    pub(crate) fn apply<B>(
        &mut self,
        request: &mut http::Request<B>,
    ) -> Result<Vec<String>, String> {
        let rules = self.rules.clone();
        let mut names = Vec::new();
        for rule in rules.rules.iter() {
            if !rule.origin.matches(request.uri()) {
                continue;
            }
            let header = self.read(rule)?;
            let headers = request.headers_mut();
            headers.remove(&rule.header);
            headers.insert(rule.header.clone(), header);
            names.push(rule.secret.to_string());
        }
        if !names.is_empty() {
            // An echo compressed by the server would pass the scrubber.
            request
                .headers_mut()
                .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        Ok(names)
    }

    /// Reads `rule`'s secret for the event, audited as injected, and makes
    /// its header. The value is kept (once) for scrubbing.
    fn read(&mut self, rule: &Rule) -> Result<HeaderValue, String> {
        let name = &*rule.secret;
        let Some(audit) = &self.host.audit else {
            return Err(format!(
                "injected secret {name}: the secret store is sealed"
            ));
        };
        // As `get-secret(name, none)` reads it on this event: a secret
        // bound to other topics is not injected either.
        let looked_up = self.host.store.resolve_on_topic(
            &self.reader.environment,
            self.space.as_deref(),
            name,
            &self.topic,
        );
        let topic_bound = matches!(looked_up, Err(StoreError::TopicBound { .. }));
        let looked_up = looked_up.map_err(to_wit_error);
        let reason = topic_bound.then(|| Denial::TopicMismatch.reason());
        // Accepted before the value is used; if not, it drops unused.
        let entry = SecretRead {
            resolved: looked_up.as_ref().ok().map(resolved_scope),
            injected: Some(InjectedInto {
                origin: &rule.origin_text,
                header: rule.header.as_str(),
            }),
            reason,
            ..self
                .reader
                .read_entry(&self.event_id, &self.topic, name, read_outcome(&looked_up))
        };
        if let Err(why) = audit.secret_read(&entry) {
            self.host.metrics.audit_refused();
            return Err(format!(
                "injected secret {name}: audit log unavailable ({})",
                why.0
            ));
        }
        self.host.metrics.audit_entry();
        let resolved = looked_up.map_err(|e| match e {
            SecretError::NotFound => {
                format!("injected secret {name} is not set for this event's scope")
            }
            SecretError::AccessDenied if topic_bound => {
                format!("injected secret {name} is bound to other topics than this event's")
            }
            SecretError::Unavailable(why) => format!("injected secret {name}: {why}"),
            SecretError::AccessDenied | SecretError::InvalidName(_) => {
                format!("injected secret {name} cannot be read")
            }
        })?;
        let value = resolved.value.expose();
        let header = rule.header_value(value).ok_or_else(|| {
            format!("injected secret {name}: its value cannot be sent in an HTTP header")
        })?;
        if !self
            .injected
            .iter()
            .any(|(n, v)| n == name && v.expose() == value)
        {
            self.injected.push((name.to_owned(), Revealed::new(value)));
        }
        Ok(header)
    }

    /// Handles on every value injected so far (no copies), to scrub a
    /// response with; empty when nothing was injected yet.
    pub(crate) fn values(&self) -> Vec<(String, Revealed)> {
        self.injected
            .iter()
            .map(|(n, v)| (n.clone(), v.share()))
            .collect()
    }

    /// The values injected this run, for scrubbing its record.
    pub(crate) fn take(&mut self) -> Vec<(String, Revealed)> {
        std::mem::take(&mut self.injected)
    }
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
