//! Projects and the keys that act for them.
use crate::{ProjectId, UnixMillis};
use std::fmt;

/// A project as stored: the tenancy unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub created_at: UnixMillis,
}

/// What a project key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Full access to the project's functions and data (servers, CI).
    Service,
    /// For app clients: only what the project's access rules let anyone do.
    Public,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Service => "service",
            KeyKind::Public => "public",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "service" => Some(KeyKind::Service),
            "public" => Some(KeyKind::Public),
            _ => None,
        }
    }

    /// The short tag in a key's token: `sk` or `pk`.
    pub fn tag(self) -> &'static str {
        match self {
            KeyKind::Service => "sk",
            KeyKind::Public => "pk",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A project key as stored: never its secret, only the secret's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Unique within the project; shown in listings and used to revoke.
    pub id: String,
    pub project: ProjectId,
    pub kind: KeyKind,
    /// A label chosen by whoever created the key.
    pub name: String,
    pub secret_sha256: [u8; 32],
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}
