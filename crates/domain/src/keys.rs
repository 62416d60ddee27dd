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
    /// Its S3 secret, sealed with the server key (nonce, ciphertext, tag);
    /// `None` for keys from before S3 secrets were their own.
    pub s3_secret: Option<Vec<u8>>,
}

/// What a project's public keys (and app users) may do with one
/// collection or bucket. Service keys and the admin credential may always
/// do everything in their project; rules only ever narrow what public keys
/// and users do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum AccessRule {
    /// Service keys only (the default).
    #[default]
    Private,
    /// Public keys may read (get, list, query).
    PublicRead,
    /// Public keys may read and write.
    PublicReadWrite,
    /// Per-user rules: a JSON object of CEL expressions by operation, as
    /// written (`auth::rules` checks and applies them).
    Custom(std::sync::Arc<str>),
}

impl AccessRule {
    pub fn as_str(&self) -> &str {
        match self {
            AccessRule::Private => "private",
            AccessRule::PublicRead => "public-read",
            AccessRule::PublicReadWrite => "public-read-write",
            AccessRule::Custom(rules) => rules,
        }
    }

    /// A preset by name, or per-user rules (a JSON object, not checked
    /// here).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "private" => Some(AccessRule::Private),
            "public-read" => Some(AccessRule::PublicRead),
            "public-read-write" => Some(AccessRule::PublicReadWrite),
            rules if rules.trim_start().starts_with('{') => Some(AccessRule::Custom(rules.into())),
            _ => None,
        }
    }

    /// Whether a public key may do `access` under this rule, whatever the
    /// data. Per-user rules decide per request, so they answer no here:
    /// a path that does not apply them refuses.
    pub fn lets_public(&self, access: Access) -> bool {
        match (self, access) {
            (AccessRule::Private | AccessRule::Custom(_), _) => false,
            (AccessRule::PublicRead, Access::Read) => true,
            (AccessRule::PublicRead, Access::Write) => false,
            (AccessRule::PublicReadWrite, _) => true,
        }
    }
}

/// Reading or writing data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

/// The kinds of data an access rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Collection,
    Bucket,
    /// A topic: public keys may subscribe to it (read) as its rule says.
    Topic,
    /// A key-value store: service keys only, unless per-user rules open
    /// some of its keys.
    KvStore,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 4] = [
        ResourceKind::Collection,
        ResourceKind::Bucket,
        ResourceKind::Topic,
        ResourceKind::KvStore,
    ];

    /// The kind [`ResourceKind::as_str`] names.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Collection => "collection",
            ResourceKind::Bucket => "bucket",
            ResourceKind::Topic => "topic",
            ResourceKind::KvStore => "kv",
        }
    }
}
