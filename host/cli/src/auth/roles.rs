//! The permission table: what each role may do, in one place.
//!
//! A route names the one [`Permission`] it needs (`api::Route::access`),
//! and a token's [`Role`] is a fixed set of permissions. Keeping roles as
//! plain sets, rather than checks spread through handlers, is what lets the
//! role × route matrix test (`host/cli/tests/roles.rs`) and the unit tests
//! below say exactly who may do what.
//!
//! Some permissions are *global*: they act on the whole installation
//! (creating environments, rotating keys, managing tokens, metrics, the
//! audit log), so a token limited to a scope never has them. Only the roles
//! whose permissions are all scopable can be limited to an environment or a
//! space ([`Role::scopable`]).

use std::fmt;
use std::str::FromStr;

/// One thing a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// List environments and spaces (those in the token's scope).
    ScopesRead,
    /// Create spaces (in the token's environment).
    ScopesWrite,
    /// Create environments.
    EnvironmentsWrite,
    /// List secret metadata.
    SecretsRead,
    /// Set and delete secrets.
    SecretsWrite,
    /// Rotate the master key or a scope's data key.
    KeysRotate,
    /// List deployed listeners.
    ListenersRead,
    /// Deploy and undeploy listeners.
    ListenersDeploy,
    /// Emit events.
    EventsEmit,
    /// Read run records.
    RunsRead,
    /// Read the audit log.
    AuditRead,
    /// Create, list and revoke API tokens.
    TokensAdmin,
    /// Read `/metrics`.
    MetricsRead,
}

impl Permission {
    pub const ALL: [Permission; 13] = [
        Permission::ScopesRead,
        Permission::ScopesWrite,
        Permission::EnvironmentsWrite,
        Permission::SecretsRead,
        Permission::SecretsWrite,
        Permission::KeysRotate,
        Permission::ListenersRead,
        Permission::ListenersDeploy,
        Permission::EventsEmit,
        Permission::RunsRead,
        Permission::AuditRead,
        Permission::TokensAdmin,
        Permission::MetricsRead,
    ];

    /// The name used in errors, the OpenAPI document and the docs.
    pub fn name(self) -> &'static str {
        use Permission as P;
        match self {
            P::ScopesRead => "scopes:read",
            P::ScopesWrite => "scopes:write",
            P::EnvironmentsWrite => "environments:write",
            P::SecretsRead => "secrets:read",
            P::SecretsWrite => "secrets:write",
            P::KeysRotate => "keys:rotate",
            P::ListenersRead => "listeners:read",
            P::ListenersDeploy => "listeners:deploy",
            P::EventsEmit => "events:emit",
            P::RunsRead => "runs:read",
            P::AuditRead => "audit:read",
            P::TokensAdmin => "tokens:admin",
            P::MetricsRead => "metrics:read",
        }
    }

    /// Acts on the whole installation: never held by a scoped token.
    pub fn global(self) -> bool {
        use Permission as P;
        matches!(
            self,
            P::EnvironmentsWrite | P::KeysRotate | P::AuditRead | P::TokensAdmin | P::MetricsRead
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A named set of permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Secrets and spaces within its scope.
    SecretsWriter,
    /// Listeners, events and runs within its scope.
    Deployer,
    /// The audit log and every run.
    Auditor,
    /// `/metrics` only (for a Prometheus scraper).
    Monitor,
}

const SECRETS_WRITER: &[Permission] = &[
    Permission::ScopesRead,
    Permission::ScopesWrite,
    Permission::SecretsRead,
    Permission::SecretsWrite,
];
const DEPLOYER: &[Permission] = &[
    Permission::ListenersRead,
    Permission::ListenersDeploy,
    Permission::EventsEmit,
    Permission::RunsRead,
];
const AUDITOR: &[Permission] = &[Permission::AuditRead, Permission::RunsRead];
const MONITOR: &[Permission] = &[Permission::MetricsRead];

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::SecretsWriter,
        Role::Deployer,
        Role::Auditor,
        Role::Monitor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::SecretsWriter => "secrets-writer",
            Role::Deployer => "deployer",
            Role::Auditor => "auditor",
            Role::Monitor => "monitor",
        }
    }

    /// This role's permissions.
    pub fn permissions(self) -> &'static [Permission] {
        match self {
            Role::Admin => &Permission::ALL,
            Role::SecretsWriter => SECRETS_WRITER,
            Role::Deployer => DEPLOYER,
            Role::Auditor => AUDITOR,
            Role::Monitor => MONITOR,
        }
    }

    pub fn allows(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }

    /// Whether a token of this role may be limited to an environment or a
    /// space: only if none of its permissions is global.
    pub fn scopable(self) -> bool {
        self.permissions().iter().all(|p| !p.global())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The names of every role, for messages.
pub fn role_names() -> String {
    Role::ALL.map(Role::name).join(", ")
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?} (roles: {names})", names = role_names())]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| UnknownRole(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn names(r: Role) -> BTreeSet<&'static str> {
        r.permissions().iter().map(|p| p.name()).collect()
    }

    #[test]
    fn the_role_table() {
        assert_eq!(names(Role::Admin).len(), Permission::ALL.len());
        assert_eq!(
            names(Role::SecretsWriter),
            BTreeSet::from([
                "scopes:read",
                "scopes:write",
                "secrets:read",
                "secrets:write"
            ])
        );
        assert_eq!(
            names(Role::Deployer),
            BTreeSet::from([
                "events:emit",
                "listeners:deploy",
                "listeners:read",
                "runs:read"
            ])
        );
        assert_eq!(
            names(Role::Auditor),
            BTreeSet::from(["audit:read", "runs:read"])
        );
        assert_eq!(names(Role::Monitor), BTreeSet::from(["metrics:read"]));
    }

    #[test]
    fn installation_wide_powers_are_admin_only() {
        for p in [
            Permission::EnvironmentsWrite,
            Permission::KeysRotate,
            Permission::TokensAdmin,
        ] {
            let holders: Vec<Role> = Role::ALL.into_iter().filter(|r| r.allows(p)).collect();
            assert_eq!(holders, [Role::Admin], "{p}");
            assert!(p.global());
        }
    }

    #[test]
    fn only_roles_without_global_permissions_can_be_scoped() {
        let scopable: Vec<Role> = Role::ALL.into_iter().filter(|r| r.scopable()).collect();
        assert_eq!(scopable, [Role::SecretsWriter, Role::Deployer]);
    }

    #[test]
    fn names_are_unique_and_parse_back() {
        let perms: BTreeSet<&str> = Permission::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(perms.len(), Permission::ALL.len());
        for r in Role::ALL {
            assert_eq!(r.name().parse::<Role>().unwrap(), r);
            assert_eq!(r.to_string(), r.name());
        }
        let e = "root".parse::<Role>().unwrap_err();
        assert!(e.to_string().contains("secrets-writer"), "{e}");
    }
}
