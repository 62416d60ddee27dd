//! Who is calling, and what they may do: the admin credential, project
//! keys, and the access rules of collections and buckets.
//!
//! Layer: services. Issues project keys (only the SHA-256 of a key's secret
//! is stored), checks tokens, revokes keys with immediate effect, and
//! decides access (`Auth::allows`, the one place every data API asks).
//! Knows no HTTP: the gateway maps [`AuthError`] to statuses.
//!
//! A key's token is `wok_<sk|pk>_<project>_<id>_<secret>`: the project and
//! id find the key without a query across projects; the 256-bit secret
//! proves it. Every live key is held in memory (loaded at start, kept in
//! step by issue, revoke and project removal, which all go through here):
//! a token is checked without the store, and an unknown key costs what a
//! wrong secret does, so timing tells nothing and nothing is amplified.
//!
//! Each key also has an S3 secret of its own (SigV4 needs the secret on
//! both sides), kept sealed (AES-256-GCM) under the server key and
//! rotatable on its own; the admin's S3 secret is derived from the admin
//! token. A presigned object URL is signed with the signer's S3 secret
//! ([`Auth::presign_signature`]), so rotating it or revoking the key
//! revokes the URL.
//!
//! Access rules are in memory too, loaded at start like the keys; a name
//! never given a rule is `Private` without being remembered, so asking
//! never reads the store nor grows the map. [`Auth::may_write_some`] tells
//! whether a request that names its collections only in its body (a
//! batch) can be refused before it is read. [`Auth::changes`] moves on
//! every revocation, project removal and rule change: holders of
//! long-lived connections (realtime) check their caller again.
//!
//! App users live in [`accounts`] (sign-up, sessions, access tokens, and
//! in `accounts/email.rs` the codes and links mailed to them); [`mail`]
//! sends their mail over each project's SMTP server through a bounded
//! outbox, off the request path.

pub mod accounts;
mod common_passwords;
pub mod limits;
pub mod mail;
pub mod rules;

pub use accounts::{AccountError, Accounts, Identity};

use domain::{
    Access, AccessRule, ApiKey, KeyKind, ProjectId, ResourceKind, UnixMillis, now_millis,
};
use hmac::{Hmac, Mac};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use store::{ProjectStore, StoreError};

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// The admin credential: the whole platform.
    Admin,
    /// A key of one project.
    Key {
        project: ProjectId,
        kind: KeyKind,
        id: String,
    },
    /// The credentials wok gave an instance of a native function of
    /// `project` ([`Auth::function_credentials`]): its project's data,
    /// functions and events, as a service key, but no management (no
    /// deploys, no access rules), and only until `expires`.
    Function {
        project: ProjectId,
        /// Its access key's id part (the expiry and a nonce).
        id: String,
        expires: UnixMillis,
    },
    /// An app user of a project, signed in ([`Accounts::verify`]): what
    /// its project's public keys may do, as the access rules say.
    User(Arc<Identity>),
}

impl Caller {
    /// Whether this caller has full access to `project`'s functions and data.
    pub fn serves(&self, project: &ProjectId) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Key {
                project: own,
                kind: KeyKind::Service,
                ..
            }
            | Caller::Function { project: own, .. } => own == project,
            Caller::Key { .. } | Caller::User(_) => false,
        }
    }

    /// Whether this caller may manage `project`'s functions and access
    /// rules (deploy, remove, roll back, set a rule): what it serves,
    /// except a function's credentials, which must not outlive themselves
    /// by deploying code or opening data up.
    pub fn manages(&self, project: &ProjectId) -> bool {
        !matches!(self, Caller::Function { .. }) && self.serves(project)
    }

    /// Whether this caller belongs to `project` at all: the admin, or any
    /// live key of it (public keys included; access rules decide the rest).
    pub fn member_of(&self, project: &ProjectId) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Key { project: own, .. } | Caller::Function { project: own, .. } => {
                own == project
            }
            Caller::User(identity) => &identity.project == project,
        }
    }

    /// The project a credential belongs to (the admin's: `default`), which
    /// requests that name none act in.
    pub fn own_project(&self) -> ProjectId {
        match self {
            Caller::Admin => ProjectId::default_project(),
            Caller::Key { project, .. } | Caller::Function { project, .. } => project.clone(),
            Caller::User(identity) => identity.project.clone(),
        }
    }

    /// Who the writes this caller makes are for, as change events name
    /// it (the kinds are those of `invoke::AuthKind`).
    pub fn actor(&self) -> domain::Actor {
        let (kind, id) = match self {
            Caller::Admin => ("admin", None),
            Caller::Key {
                kind: KeyKind::Service,
                id,
                ..
            } => ("service-key", Some(id.clone())),
            Caller::Key { id, .. } => ("public-key", Some(id.clone())),
            Caller::Function { id, .. } => ("function", Some(id.clone())),
            Caller::User(identity) => ("user", Some(identity.user_id.clone())),
        };
        domain::Actor {
            kind: kind.to_owned(),
            id,
        }
    }

    /// The S3 access key id of this credential.
    pub fn s3_access_key(&self) -> String {
        match self {
            Caller::Admin => ADMIN_S3_ACCESS_KEY.to_owned(),
            Caller::Key { project, kind, id } => format!("wok_{}_{project}_{id}", kind.tag()),
            Caller::Function { project, id, .. } => format!("{FUNCTION_PREFIX}{project}_{id}"),
            // No S3 pair: app users reach objects through REST and
            // presigned URLs, which name the user and its session.
            Caller::User(identity) => format!(
                "{USER_PREFIX}{}_{}_{}",
                identity.project, identity.user_id, identity.session_id
            ),
        }
    }
}

/// One collection or bucket of one project.
type Resource = (ProjectId, ResourceKind, String);

/// What a caller may do with a resource ([`Auth::decide`]).
#[derive(Debug, Clone)]
pub enum Decision {
    All,
    Nothing,
    /// What the resource's per-user rules allow this caller, asked per
    /// document or event (and as a filter for queries).
    Rules(Arc<rules::RuleSet>, rules::Subject),
    /// What a bucket's or key-value store's per-user rules allow this
    /// caller, asked per key (and per listed prefix).
    Paths(Arc<rules::PathRules>, rules::Subject),
}

/// The caller, as per-user rules see it.
pub fn subject(caller: &Caller) -> rules::Subject {
    match caller {
        Caller::User(identity) => rules::Subject {
            uid: Some(identity.user_id.clone()),
            session: Some(identity.session_id.clone()),
            aal: identity.aal,
            anonymous: identity.anonymous,
            claims: identity.claims.clone(),
        },
        _ => rules::Subject::default(),
    }
}

/// Every access rule set, and per project and kind of resource how many
/// of them let public keys write (absent: none), kept together.
#[derive(Default)]
struct Rules {
    by_name: HashMap<Resource, AccessRule>,
    /// The per-user rules among them, parsed.
    compiled: HashMap<Resource, rules::Compiled>,
    public_writers: HashMap<(ProjectId, ResourceKind), usize>,
}

impl Rules {
    fn set(&mut self, resource: Resource, rule: AccessRule) {
        let owner = (resource.0.clone(), resource.1);
        match &rule {
            AccessRule::Custom(text) => {
                // Checked when set; a stored one that no longer parses
                // refuses everything (no entry: nothing is allowed).
                match rules::Compiled::parse(resource.1, text) {
                    Ok(compiled) => {
                        self.compiled.insert(resource.clone(), compiled);
                    }
                    Err(error) => {
                        self.compiled.remove(&resource);
                        tracing::warn!(
                            "the rules of {} {:?} of project {:?} do not parse, so they refuse everything: {error}",
                            resource.1.as_str(),
                            resource.2,
                            resource.0.as_str()
                        );
                    }
                }
            }
            _ => {
                self.compiled.remove(&resource);
            }
        }
        let before = self.by_name.insert(resource, rule.clone());
        self.count(owner, before, Some(rule));
    }

    fn remove(&mut self, resource: &Resource) {
        let owner = (resource.0.clone(), resource.1);
        let before = self.by_name.remove(resource);
        self.compiled.remove(resource);
        self.count(owner, before, None);
    }

    fn count(
        &mut self,
        owner: (ProjectId, ResourceKind),
        before: Option<AccessRule>,
        after: Option<AccessRule>,
    ) {
        let writes = |rule: Option<AccessRule>| rule == Some(AccessRule::PublicReadWrite);
        match (writes(before), writes(after)) {
            (false, true) => *self.public_writers.entry(owner).or_default() += 1,
            (true, false) => {
                if let Some(count) = self.public_writers.get_mut(&owner) {
                    *count -= 1;
                    if *count == 0 {
                        self.public_writers.remove(&owner);
                    }
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Shaped like a wok key, but no live key matches (unknown, revoked,
    /// wrong secret, or its project is gone).
    #[error("the key is unknown or revoked")]
    InvalidKey,
    /// Neither the admin credential nor shaped like a key.
    #[error("the credential is not valid")]
    NotACredential,
    /// A function's credentials past their end.
    #[error("the function credentials have expired")]
    Expired,
    /// Shaped like an access token, but not a valid one of a project
    /// (signature, key, algorithm, issuer, audience).
    #[error("invalid JWT: unable to parse or verify signature")]
    InvalidToken,
    #[error("the access token has expired")]
    TokenExpired,
    /// The token's session was ended (logout, ban, delete, a new
    /// password).
    #[error("the session of this access token has ended")]
    SessionEnded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A newly issued key: its stored form and the token, shown only once,
/// and its S3 pair.
pub struct IssuedKey {
    pub key: ApiKey,
    pub token: String,
    pub s3: S3Pair,
}

/// An S3 access key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Pair {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Credentials for an instance of a native function: a bearer token and
/// an S3 pair, both acting as [`Caller::Function`] until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCredentials {
    pub token: String,
    pub s3: S3Pair,
    pub expires: UnixMillis,
}

/// How function credentials begin (`wok_fn_<project>_<id>`), beside the
/// keys' `wok_sk_` and `wok_pk_`.
const FUNCTION_PREFIX: &str = "wok_fn_";
/// What a presigned URL of an app user is signed as:
/// `wok_user_<project>_<user id>_<session id>`.
const USER_PREFIX: &str = "wok_user_";

/// Who signed a presigned URL.
#[derive(Debug, Clone, PartialEq)]
pub enum Signer {
    /// A key, a function's credentials or the admin: a caller as it is.
    Caller(Caller),
    /// An app user in a session, which must still be live
    /// ([`Accounts::presigned_identity`] says who it is now).
    User {
        project: ProjectId,
        user_id: String,
        session_id: String,
    },
}

/// The parts of a user's presigned access key.
fn parse_user_key(access_key: &str) -> Option<(ProjectId, &str, &str)> {
    let rest = access_key.strip_prefix(USER_PREFIX)?;
    let (rest, session) = rest.rsplit_once('_')?;
    let (project, user) = rest.rsplit_once('_')?;
    let id = |text: &str| {
        !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (id(user) && id(session)).then_some(())?;
    Some((ProjectId::new(project).ok()?, user, session))
}

pub struct Auth {
    store: Arc<dyn ProjectStore>,
    admin_token: String,
    /// Every live key. Issue, revocation and project removal go through
    /// [`Auth`], which updates this first-hand.
    live: RwLock<HashMap<(ProjectId, String), ApiKey>>,
    /// Seals and opens S3 secrets at rest.
    server_key: LessSafeKey,
    /// Every access rule set (absent ones are `Private`); rules change
    /// only through [`Auth::set_rule`] and [`Auth::forget_rule`], which
    /// update this first-hand.
    rules: RwLock<Rules>,
    /// Bumped by every revocation, project removal and rule change: what
    /// long-lived connections watch to check their access again.
    changes: tokio::sync::watch::Sender<u64>,
    /// Projects seen to exist; [`Auth::remove_project`] drops them.
    projects: RwLock<std::collections::HashSet<ProjectId>>,
    /// Signs function credentials (derived from the server key, so that
    /// every node that shares it accepts them, and nothing is stored).
    function_key: [u8; 32],
    /// Held by a reload (its read of the store and its replacement of the
    /// memory) and by each change made here (its store write and memory
    /// update): a reload cannot read the store before a change and put the
    /// memory back after it (a revoked key accepted again).
    serial: tokio::sync::Mutex<()>,
}

/// Runs a change in a task of its own, to its end: a caller that stops
/// waiting (a client that goes) must not leave the store changed and the
/// memory that answers requests not.
async fn to_the_end<T: Send + 'static>(
    change: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::spawn(change).await {
        Ok(result) => result,
        Err(error) => Err(StoreError::backend(
            format!("a change of keys or rules failed: {error}"),
            false,
        )),
    }
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the OS random number generator");
    hex::encode(buffer)
}

/// Whether `secret` and `kind` are those of `key`.
fn check_secret(key: &ApiKey, kind: KeyKind, secret: &str) -> Result<(), AuthError> {
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    if key.kind != kind || !constant_time_eq(&digest, &key.secret_sha256) {
        return Err(AuthError::InvalidKey);
    }
    Ok(())
}

/// The S3 access key id of the admin credential.
pub const ADMIN_S3_ACCESS_KEY: &str = "wok_admin";

/// The project an S3 access key id acts for (`default` for the admin).
pub fn project_of_access_key(access_key: &str) -> Option<ProjectId> {
    if access_key == ADMIN_S3_ACCESS_KEY {
        return Some(ProjectId::default_project());
    }
    if let Some(rest) = access_key.strip_prefix(FUNCTION_PREFIX) {
        return ProjectId::new(rest.split_once('_')?.0).ok();
    }
    if let Some((project, _, _)) = parse_user_key(access_key) {
        return Some(project);
    }
    parse_access_key(access_key).map(|(_, project, _)| project)
}

/// The parts of an S3 access key id (`wok_<sk|pk>_<project>_<id>`).
fn parse_access_key(access_key: &str) -> Option<(KeyKind, ProjectId, &str)> {
    let mut parts = access_key.split('_');
    if parts.next()? != "wok" {
        return None;
    }
    let kind = match parts.next()? {
        "sk" => KeyKind::Service,
        "pk" => KeyKind::Public,
        _ => return None,
    };
    let project = ProjectId::new(parts.next()?).ok()?;
    let id = parts.next()?;
    if parts.next().is_some() || id.is_empty() {
        return None;
    }
    Some((kind, project, id))
}

/// The parts of a key token, if it is shaped like one.
fn parse_token(token: &str) -> Option<(KeyKind, ProjectId, &str, &str)> {
    // The token is the access key id, `_`, and the secret (hex: no `_`).
    let (access_key, secret) = token.rsplit_once('_')?;
    let (kind, project, id) = parse_access_key(access_key)?;
    if secret.is_empty() {
        return None;
    }
    Some((kind, project, id, secret))
}

impl Auth {
    /// An `Auth` with no key loaded (see [`Auth::open`]).
    fn new(store: Arc<dyn ProjectStore>, admin_token: String, server_key: [u8; 32]) -> Self {
        Self {
            store,
            admin_token,
            live: RwLock::new(HashMap::new()),
            server_key: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &server_key).expect("a 256-bit key"),
            ),
            rules: RwLock::new(Rules::default()),
            changes: tokio::sync::watch::Sender::new(0),
            projects: RwLock::new(std::collections::HashSet::new()),
            serial: tokio::sync::Mutex::new(()),
            function_key: {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&server_key)
                    .expect("HMAC takes keys of any length");
                mac.update(b"wok-function-credentials");
                mac.finalize().into_bytes().into()
            },
        }
    }

    /// An `Auth` holding every live key of every project (a start-up read,
    /// project by project). Keys from before S3 secrets were their own get
    /// theirs now: the secret they had (derived from the admin token),
    /// sealed, so that their S3 clients keep working and a later rotation
    /// of the admin token leaves them alone.
    pub async fn open(
        store: Arc<dyn ProjectStore>,
        admin_token: String,
        server_key: [u8; 32],
    ) -> Result<Self, StoreError> {
        let auth = Self::new(store, admin_token, server_key);
        auth.load().await?;
        Ok(auth)
    }

    /// Reads every live key and rule again, and forgets the projects
    /// removed since: what another node sharing the store changed. Long
    /// connections check their access again.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _serial = self.serial.lock().await;
        let projects = self.load().await?;
        self.projects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|project| projects.contains(project));
        self.changed();
        Ok(())
    }

    /// Loads every live key and rule into memory; the live projects.
    async fn load(&self) -> Result<std::collections::HashSet<ProjectId>, StoreError> {
        let store = &self.store;
        let mut live = HashMap::new();
        let mut projects = std::collections::HashSet::new();
        for project in store.list_projects().await? {
            for mut key in store.keys(&project.id).await? {
                if key.revoked_at.is_some() {
                    continue;
                }
                if key.s3_secret.is_none() {
                    let access_key = Self::s3_access_key(&key);
                    let sealed = self.seal(&access_key, &self.legacy_s3_secret(&access_key));
                    store
                        .set_key_s3_secret(&key.project, &key.id, &sealed)
                        .await?;
                    key.s3_secret = Some(sealed);
                }
                live.insert((key.project.clone(), key.id.clone()), key);
            }
            projects.insert(project.id);
        }
        let mut rules = Rules::default();
        for (project, kind, name, rule) in store.access_rules().await? {
            rules.set((project, kind, name), rule);
        }
        *self
            .live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = live;
        *self
            .rules
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = rules;
        Ok(projects)
    }

    /// A secret sealed for one access key (the id is bound in, so a sealed
    /// secret cannot be moved to another key): nonce, then ciphertext and tag.
    fn seal(&self, access_key: &str, secret: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random number generator");
        let mut sealed = secret.as_bytes().to_vec();
        self.server_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(access_key.as_bytes()),
                &mut sealed,
            )
            .expect("sealing a short secret");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// The secret sealed for `access_key`, if the server key opens it.
    fn unseal(&self, access_key: &str, sealed: &[u8]) -> Option<String> {
        let (nonce, sealed) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = sealed.to_vec();
        let opened = self
            .server_key
            .open_in_place(nonce, Aad::from(access_key.as_bytes()), &mut buffer)
            .ok()?;
        String::from_utf8(opened.to_vec()).ok()
    }

    /// Whether `project` is known to exist, without the store.
    pub fn project_known(&self, project: &ProjectId) -> bool {
        self.projects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(project)
    }

    /// Whether `project` exists (live); reads the store the first time.
    pub async fn project_exists(&self, project: &ProjectId) -> Result<bool, StoreError> {
        if self.project_known(project) {
            return Ok(true);
        }
        let exists = self.store.project(project).await?.is_some();
        if exists {
            self.projects
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(project.clone());
        }
        Ok(exists)
    }

    /// Whether `caller` may do `access` on a collection or bucket of
    /// `project`: the admin and the project's service keys always may; its
    /// public keys as the resource's rule says; nobody else. Never reads
    /// the store (every rule is in memory).
    ///
    /// Per-user rules (with accounts) will be decided here too, from the
    /// caller and the rule, so every data API keeps asking this one place.
    pub fn allows(
        &self,
        caller: &Caller,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
        access: Access,
    ) -> bool {
        if caller.serves(project) {
            return true;
        }
        caller.member_of(project) && self.rule(project, kind, name).lets_public(access)
    }

    /// What `caller` may do of `access` on a collection (bucket, topic) of
    /// `project`: everything, nothing, or what its per-user rules say,
    /// request by request. Never reads the store.
    pub fn decide(
        &self,
        caller: &Caller,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
        access: Access,
    ) -> Decision {
        if caller.serves(project) {
            return Decision::All;
        }
        if !caller.member_of(project) {
            return Decision::Nothing;
        }
        let rules = self
            .rules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let resource = (project.clone(), kind, name.to_owned());
        match rules.by_name.get(&resource) {
            Some(AccessRule::Custom(_)) => match rules.compiled.get(&resource) {
                Some(rules::Compiled::Set(compiled)) => {
                    Decision::Rules(compiled.clone(), subject(caller))
                }
                Some(rules::Compiled::Paths(compiled)) => {
                    Decision::Paths(compiled.clone(), subject(caller))
                }
                None => Decision::Nothing,
            },
            Some(rule) if rule.lets_public(access) => Decision::All,
            _ => Decision::Nothing,
        }
    }

    /// Whether `caller` may write to some collection (bucket, topic) of
    /// `project`: what a request naming its resources only in its body
    /// (a batch) is checked for before the body is read.
    pub fn may_write_some(&self, caller: &Caller, project: &ProjectId, kind: ResourceKind) -> bool {
        if caller.serves(project) {
            return true;
        }
        caller.member_of(project)
            && self
                .rules
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .public_writers
                .contains_key(&(project.clone(), kind))
    }

    /// Changes whenever a key is revoked, a project removed or a rule
    /// changed: holders of a long-lived connection then check again
    /// ([`Auth::still_valid`], [`Auth::allows`]).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|count| *count += 1);
    }

    /// Whether `caller`'s credential is still live (not revoked, its
    /// project not removed).
    pub fn still_valid(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Admin => true,
            Caller::Function {
                project, expires, ..
            } => *expires > now_millis() && self.project_known(project),
            Caller::Key { project, id, .. } => self
                .live
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains_key(&(project.clone(), id.clone())),
            // Whether its session is live is for `Accounts::still_live`.
            Caller::User(identity) => {
                identity.expires_at * 1000 > now_millis() && self.project_known(&identity.project)
            }
        }
    }

    /// The rule of a collection or bucket (`Private` when never set); a
    /// name never set is not remembered, so asking costs no memory.
    pub fn rule(&self, project: &ProjectId, kind: ResourceKind, name: &str) -> AccessRule {
        self.rules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .by_name
            .get(&(project.clone(), kind, name.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets a rule kept in memory, after its resource was removed (and
    /// its stored rule with it).
    pub fn forget_rule(&self, project: &ProjectId, kind: ResourceKind, name: &str) {
        self.rules
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&(project.clone(), kind, name.to_owned()));
        self.changed();
    }

    /// Sets a rule; it applies from the moment this returns (and, once
    /// begun, even if the caller stops waiting).
    pub async fn set_rule(
        self: &Arc<Self>,
        project: &ProjectId,
        kind: ResourceKind,
        name: &str,
        rule: AccessRule,
    ) -> Result<(), StoreError> {
        let (this, project, name) = (self.clone(), project.clone(), name.to_owned());
        to_the_end(async move {
            let _serial = this.serial.lock().await;
            this.store
                .set_access_rule(&project, kind, &name, rule.clone())
                .await?;
            this.rules
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .set((project, kind, name), rule);
            this.changed();
            Ok(())
        })
        .await
    }

    /// Who `token` (a bearer credential) is. Never reads the store: every
    /// live key is in memory, and an unknown key costs what a wrong secret
    /// does (the secret is hashed either way).
    pub fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            return Ok(Caller::Admin);
        }
        if let Some((access_key, signature)) = token.rsplit_once('_')
            && let Some(caller) = self.function_caller(access_key)
        {
            // The signature first: an expired token tells nothing more
            // than a forged one.
            let expected = self.function_mac("token", access_key);
            if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
                return Err(AuthError::InvalidKey);
            }
            return caller;
        }
        let (kind, project, id, secret) = parse_token(token).ok_or(AuthError::NotACredential)?;
        let lookup = (project, id.to_owned());
        let key = self
            .live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&lookup)
            .cloned();
        match key {
            Some(key) => check_secret(&key, kind, secret)?,
            None => {
                // The work of a wrong secret, so that timing tells nothing.
                let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
                std::hint::black_box(constant_time_eq(&digest, &[0; 32]));
                return Err(AuthError::InvalidKey);
            }
        }
        Ok(Caller::Key {
            project: lookup.0,
            kind,
            id: lookup.1,
        })
    }

    /// The S3 access key id of a credential: a key's token without its
    /// secret, or [`ADMIN_S3_ACCESS_KEY`].
    pub fn s3_access_key(key: &ApiKey) -> String {
        format!("wok_{}_{}_{}", key.kind.tag(), key.project, key.id)
    }

    /// The admin's S3 secret, and the one keys had before theirs were
    /// their own: HMAC-SHA256 keyed with the admin token.
    fn legacy_s3_secret(&self, access_key: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.admin_token.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"wok-s3-secret:");
        mac.update(access_key.as_bytes());
        hex::encode(mac.finalize().into_bytes())[..40].to_owned()
    }

    /// The S3 secret of an access key id: a live key's own (unsealed), or
    /// the admin's (derived from the admin token); `None` for anything else.
    pub fn s3_secret(&self, access_key: &str) -> Option<String> {
        if access_key == ADMIN_S3_ACCESS_KEY {
            return Some(self.legacy_s3_secret(access_key));
        }
        if let Some(caller) = self.function_caller(access_key) {
            return caller
                .ok()
                .map(|_| self.function_mac("s3", access_key)[..40].to_owned());
        }
        let (kind, project, id) = parse_access_key(access_key)?;
        let live = self
            .live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = live.get(&(project, id.to_owned()))?;
        if key.kind != kind {
            return None;
        }
        self.unseal(access_key, key.s3_secret.as_deref()?)
    }

    /// Gives a key a new S3 secret, effective at once (the old one, and
    /// presigned URLs signed with it, stop working); returns it. `None`
    /// if there is no such live key.
    pub async fn rotate_s3_secret(
        self: &Arc<Self>,
        project: &ProjectId,
        id: &str,
    ) -> Result<Option<S3Pair>, StoreError> {
        let (this, lookup) = (self.clone(), (project.clone(), id.to_owned()));
        to_the_end(async move { this.rotate_s3_secret_now(lookup).await }).await
    }

    async fn rotate_s3_secret_now(
        &self,
        lookup: (ProjectId, String),
    ) -> Result<Option<S3Pair>, StoreError> {
        let _serial = self.serial.lock().await;
        let (project, id) = (&lookup.0, lookup.1.as_str());
        let Some(key) = self
            .live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&lookup)
            .cloned()
        else {
            return Ok(None);
        };
        let access_key = Self::s3_access_key(&key);
        let secret = random_hex(20);
        let sealed = self.seal(&access_key, &secret);
        if !self.store.set_key_s3_secret(project, id, &sealed).await? {
            return Ok(None);
        }
        if let Some(key) = self
            .live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get_mut(&lookup)
        {
            key.s3_secret = Some(sealed);
        }
        Ok(Some(S3Pair {
            access_key_id: access_key,
            secret_access_key: secret,
        }))
    }

    /// The signature of a presigned request: HMAC-SHA256, keyed with the
    /// signer's S3 secret, over what the URL may do (method, project, path)
    /// and until when. It binds the URL to its signer, so revoking the key
    /// revokes its URLs.
    pub fn presign_signature(
        &self,
        access_key: &str,
        method: &str,
        project: &ProjectId,
        path: &str,
        expires: i64,
    ) -> Option<String> {
        // A user has no S3 secret: its URLs are keyed with one derived
        // from the server key, for it and its session alone.
        let secret = match parse_user_key(access_key) {
            Some(_) => self.function_mac("user-presign", access_key),
            None => self.s3_secret(access_key)?,
        };
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(format!("wok-presign\n{method}\n{project}\n{path}\n{expires}").as_bytes());
        Some(hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks a presigned request's signature; the caller is its signer.
    pub fn verify_presigned(
        &self,
        access_key: &str,
        method: &str,
        project: &ProjectId,
        path: &str,
        expires: i64,
        signature: &str,
    ) -> Result<Signer, AuthError> {
        let expected = self
            .presign_signature(access_key, method, project, path, expires)
            .ok_or(AuthError::InvalidKey)?;
        if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(AuthError::InvalidKey);
        }
        if let Some((own, user_id, session_id)) = parse_user_key(access_key) {
            if &own != project || !self.project_known(project) {
                return Err(AuthError::InvalidKey);
            }
            return Ok(Signer::User {
                project: own,
                user_id: user_id.to_owned(),
                session_id: session_id.to_owned(),
            });
        }
        self.s3_caller(access_key).map(Signer::Caller)
    }

    /// Who an S3 access key id is: the admin, or a live key (from memory).
    /// The request's signature, checked with [`Auth::s3_secret`], proves
    /// the rest.
    pub fn s3_caller(&self, access_key: &str) -> Result<Caller, AuthError> {
        if access_key == ADMIN_S3_ACCESS_KEY {
            return Ok(Caller::Admin);
        }
        if let Some(caller) = self.function_caller(access_key) {
            return caller;
        }
        let (kind, project, id) = parse_access_key(access_key).ok_or(AuthError::InvalidKey)?;
        let known = self
            .live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(project.clone(), id.to_owned()))
            .is_some_and(|key| key.kind == kind);
        if !known {
            return Err(AuthError::InvalidKey);
        }
        Ok(Caller::Key {
            project,
            kind,
            id: id.to_owned(),
        })
    }

    /// Credentials for an instance of a native function of `project`,
    /// valid for `lifetime` from now. Nothing is stored: they are signed
    /// (HMAC-SHA256 with a key derived from the server key) and carry
    /// their expiry, so they end on time on every node, and no list of
    /// them grows. The server gives them only to the instance, in its
    /// environment.
    pub fn function_credentials(
        &self,
        project: &ProjectId,
        lifetime: std::time::Duration,
    ) -> FunctionCredentials {
        // The project has a live function: it exists. Its removal forgets
        // it, and these credentials with it.
        self.projects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(project.clone());
        let lifetime = UnixMillis::try_from(lifetime.as_millis()).unwrap_or(UnixMillis::MAX);
        let expires = now_millis().saturating_add(lifetime) / 1000;
        let access_key = format!("{FUNCTION_PREFIX}{project}_{expires}x{}", random_hex(8));
        FunctionCredentials {
            token: format!("{access_key}_{}", self.function_mac("token", &access_key)),
            s3: S3Pair {
                secret_access_key: self.function_mac("s3", &access_key)[..40].to_owned(),
                access_key_id: access_key,
            },
            expires: expires * 1000,
        }
    }

    /// HMAC-SHA256 of one use (`token`, `s3`) of a function access key.
    fn function_mac(&self, usage: &str, access_key: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.function_key)
            .expect("HMAC takes keys of any length");
        mac.update(usage.as_bytes());
        mac.update(b"\n");
        mac.update(access_key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Who a function access key id (`wok_fn_<project>_<expires>x<nonce>`,
    /// the expiry in Unix seconds) is: `None` when it is not shaped like
    /// one, an error once it has expired. Its signature proves the rest.
    fn function_caller(&self, access_key: &str) -> Option<Result<Caller, AuthError>> {
        let rest = access_key.strip_prefix(FUNCTION_PREFIX)?;
        let (project, id) = rest.split_once('_')?;
        let project = ProjectId::new(project).ok()?;
        let (expires, nonce) = id.split_once('x')?;
        let expires = expires.parse::<UnixMillis>().ok()?.checked_mul(1000)?;
        if nonce.is_empty() || !nonce.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        if expires <= now_millis() {
            return Some(Err(AuthError::Expired));
        }
        // A removed project's credentials end with it.
        if !self.project_known(&project) {
            return Some(Err(AuthError::InvalidKey));
        }
        Some(Ok(Caller::Function {
            project,
            id: id.to_owned(),
            expires,
        }))
    }

    /// Issues a key of `project`; the returned token is the only copy of
    /// its secret. Its S3 secret is sealed with the server key.
    pub async fn issue(
        &self,
        project: &ProjectId,
        kind: KeyKind,
        name: &str,
    ) -> Result<IssuedKey, StoreError> {
        let id = random_hex(6);
        let secret = random_hex(32);
        let mut key = ApiKey {
            id: id.clone(),
            project: project.clone(),
            kind,
            name: name.to_owned(),
            secret_sha256: Sha256::digest(secret.as_bytes()).into(),
            created_at: now_millis(),
            revoked_at: None,
            s3_secret: None,
        };
        let access_key = Self::s3_access_key(&key);
        let s3_secret = random_hex(20);
        key.s3_secret = Some(self.seal(&access_key, &s3_secret));
        let _serial = self.serial.lock().await;
        self.store.create_key(&key).await?;
        self.live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((project.clone(), id.clone()), key.clone());
        let token = format!("wok_{}_{project}_{id}_{secret}", kind.tag());
        Ok(IssuedKey {
            key,
            token,
            s3: S3Pair {
                access_key_id: access_key,
                secret_access_key: s3_secret,
            },
        })
    }

    /// Revokes a key; from the moment this returns, the key is refused
    /// (and, once begun, even if the caller stops waiting).
    pub async fn revoke(
        self: &Arc<Self>,
        project: &ProjectId,
        id: &str,
    ) -> Result<bool, StoreError> {
        let (this, project, id) = (self.clone(), project.clone(), id.to_owned());
        to_the_end(async move {
            let _serial = this.serial.lock().await;
            let revoked = this.store.revoke_key(&project, &id).await?;
            this.live
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&(project, id));
            this.changed();
            Ok(revoked)
        })
        .await
    }

    /// Removes an empty project and revokes all its keys at once (and,
    /// once begun, even if the caller stops waiting).
    pub async fn remove_project(self: &Arc<Self>, project: &ProjectId) -> Result<bool, StoreError> {
        let (this, project) = (self.clone(), project.clone());
        to_the_end(async move {
            let _serial = this.serial.lock().await;
            let removed = this.store.remove_project(&project).await?;
            this.projects
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&project);
            this.live
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .retain(|(owner, _), _| *owner != project);
            this.changed();
            Ok(removed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store_sqlite::SqliteStore;

    #[tokio::test]
    async fn a_revocation_or_rule_change_whose_caller_left_still_takes_effect() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ProjectStore> =
            Arc::new(SqliteStore::open(&dir.path().join("wok.db")).unwrap());
        let auth = Arc::new(Auth::new(store.clone(), "admin-secret".to_owned(), [7; 32]));
        let shop = ProjectId::new("shop").unwrap();
        store.create_project(&shop).await.unwrap();
        let issued = auth.issue(&shop, KeyKind::Service, "ci").await.unwrap();
        let public = auth.issue(&shop, KeyKind::Public, "web").await.unwrap();
        let public = auth.authenticate(&public.token).unwrap();

        // Each call is begun (polled once) and then dropped, as a request
        // handler is when its client goes.
        fn begin_then_drop(call: impl std::future::Future) {
            let call = std::pin::pin!(call);
            let waker = std::task::Waker::noop();
            let _ = call.poll(&mut std::task::Context::from_waker(waker));
        }
        begin_then_drop(auth.revoke(&shop, &issued.key.id));
        begin_then_drop(auth.set_rule(
            &shop,
            ResourceKind::Collection,
            "posts",
            AccessRule::PublicRead,
        ));

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while auth.authenticate(&issued.token).is_ok()
            || !auth.allows(
                &public,
                &shop,
                ResourceKind::Collection,
                "posts",
                Access::Read,
            )
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the stored changes never reached memory"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // What memory says is what the store says.
        let stored = store.keys(&shop).await.unwrap();
        let revoked = stored.iter().find(|key| key.id == issued.key.id).unwrap();
        assert!(revoked.revoked_at.is_some());
    }

    #[tokio::test]
    async fn function_credentials_act_for_their_project_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ProjectStore> =
            Arc::new(SqliteStore::open(&dir.path().join("wok.db")).unwrap());
        let auth = Arc::new(Auth::new(store.clone(), "admin-secret".to_owned(), [7; 32]));
        let shop = ProjectId::new("shop").unwrap();
        store.create_project(&shop).await.unwrap();
        let hour = std::time::Duration::from_secs(3600);
        let given = auth.function_credentials(&shop, hour);
        let caller = auth.authenticate(&given.token).unwrap();
        assert!(caller.serves(&shop) && caller.member_of(&shop));
        assert!(!caller.manages(&shop), "no deploys, no rules");
        assert!(!caller.serves(&ProjectId::default_project()));
        assert!(auth.still_valid(&caller));
        assert!((given.expires - now_millis() - 3_600_000).abs() < 2000);
        // The S3 pair is the same credential.
        assert_eq!(auth.s3_caller(&given.s3.access_key_id).unwrap(), caller);
        assert_eq!(caller.s3_access_key(), given.s3.access_key_id);
        assert_eq!(
            auth.s3_secret(&given.s3.access_key_id).as_deref(),
            Some(given.s3.secret_access_key.as_str())
        );
        assert_eq!(
            project_of_access_key(&given.s3.access_key_id),
            Some(shop.clone())
        );
        // Another node with the same server key takes them (once it knows
        // the project exists); another key not.
        let same = Auth::new(store.clone(), "other-admin".to_owned(), [7; 32]);
        assert!(same.project_exists(&shop).await.unwrap());
        assert_eq!(same.authenticate(&given.token).unwrap(), caller);
        let other = Auth::new(store.clone(), "admin-secret".to_owned(), [8; 32]);
        assert!(matches!(
            other.authenticate(&given.token),
            Err(AuthError::InvalidKey)
        ));
        assert_ne!(
            other.s3_secret(&given.s3.access_key_id).as_deref(),
            Some(given.s3.secret_access_key.as_str())
        );
        // Moved to another project or made to last longer: forged.
        let moved = given.token.replacen("wok_fn_shop_", "wok_fn_bank_", 1);
        assert!(matches!(
            auth.authenticate(&moved),
            Err(AuthError::InvalidKey)
        ));
        let id = given.s3.access_key_id.rsplit('_').next().unwrap();
        let (expires, nonce) = id.split_once('x').unwrap();
        let longer = given.token.replacen(
            &format!("_{expires}x{nonce}"),
            &format!("_{}x{nonce}", expires.parse::<i64>().unwrap() + 86_400),
            1,
        );
        assert!(matches!(
            auth.authenticate(&longer),
            Err(AuthError::InvalidKey)
        ));
        // Expired: refused, as token and as S3 pair.
        let expired = auth.function_credentials(&shop, std::time::Duration::ZERO);
        assert!(matches!(
            auth.authenticate(&expired.token),
            Err(AuthError::Expired)
        ));
        assert_eq!(auth.s3_secret(&expired.s3.access_key_id), None);
        assert!(auth.s3_caller(&expired.s3.access_key_id).is_err());
        let lapsed = Caller::Function {
            project: shop.clone(),
            id: "0x00".to_owned(),
            expires: now_millis() - 1,
        };
        assert!(!auth.still_valid(&lapsed));
        // A removed project's credentials end with it.
        assert!(auth.remove_project(&shop).await.unwrap());
        assert!(!auth.still_valid(&caller));
        assert!(auth.authenticate(&given.token).is_err());
        assert!(auth.s3_caller(&given.s3.access_key_id).is_err());
    }

    #[tokio::test]
    async fn issued_keys_authenticate_until_revoked_and_only_with_their_secret() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ProjectStore> =
            Arc::new(SqliteStore::open(&dir.path().join("wok.db")).unwrap());
        let auth = Arc::new(Auth::new(store.clone(), "admin-secret".to_owned(), [7; 32]));
        let shop = ProjectId::new("shop").unwrap();
        store.create_project(&shop).await.unwrap();

        assert_eq!(auth.authenticate("admin-secret").unwrap(), Caller::Admin);
        assert!(matches!(
            auth.authenticate("admin-secreT"),
            Err(AuthError::NotACredential)
        ));

        let issued = auth.issue(&shop, KeyKind::Service, "ci").await.unwrap();
        let caller = auth.authenticate(&issued.token).unwrap();
        assert!(caller.serves(&shop));
        assert!(!caller.serves(&ProjectId::default_project()));
        // Twice: the second check is served from memory.
        assert_eq!(auth.authenticate(&issued.token).unwrap(), caller);

        // The same token with its last secret digit changed.
        let last = if issued.token.ends_with('0') {
            '1'
        } else {
            '0'
        };
        let forged = format!("{}{last}", &issued.token[..issued.token.len() - 1]);
        assert!(matches!(
            auth.authenticate(&forged),
            Err(AuthError::InvalidKey)
        ));
        let other_kind = issued.token.replacen("wok_sk_", "wok_pk_", 1);
        assert!(matches!(
            auth.authenticate(&other_kind),
            Err(AuthError::InvalidKey)
        ));

        let public = auth.issue(&shop, KeyKind::Public, "app").await.unwrap();
        assert!(!auth.authenticate(&public.token).unwrap().serves(&shop));

        // S3 secrets: each key's own, sealed at rest, rotatable alone, kept
        // across a change of the admin token, useless without the server key.
        let pair = &public.s3;
        assert_eq!(
            auth.s3_secret(&pair.access_key_id).as_deref(),
            Some(pair.secret_access_key.as_str())
        );
        let rotated = auth
            .rotate_s3_secret(&shop, &public.key.id)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(rotated.secret_access_key, pair.secret_access_key);
        assert_eq!(
            auth.s3_secret(&pair.access_key_id),
            Some(rotated.secret_access_key.clone())
        );
        let stored = store.key(&shop, &public.key.id).await.unwrap().unwrap();
        let sealed = stored.s3_secret.unwrap();
        assert!(
            !sealed
                .windows(rotated.secret_access_key.len())
                .any(|window| window == rotated.secret_access_key.as_bytes()),
            "the secret is not stored in the clear"
        );
        let reopened = Auth::open(store.clone(), "new-admin-secret".to_owned(), [7; 32])
            .await
            .unwrap();
        assert_eq!(
            reopened.s3_secret(&pair.access_key_id),
            Some(rotated.secret_access_key.clone())
        );
        assert_eq!(
            reopened.authenticate(&public.token).unwrap(),
            auth.authenticate(&public.token).unwrap()
        );
        let wrong_key = Auth::open(store.clone(), "admin-secret".to_owned(), [8; 32])
            .await
            .unwrap();
        assert_eq!(wrong_key.s3_secret(&pair.access_key_id), None);
        assert!(
            auth.authenticate(&format!("wok_pk_shop_nosuchid_{}", "0".repeat(64)))
                .is_err()
        );

        assert!(auth.revoke(&shop, &issued.key.id).await.unwrap());
        assert!(matches!(
            auth.authenticate(&issued.token),
            Err(AuthError::InvalidKey)
        ));
        auth.remove_project(&shop).await.unwrap();
        assert!(matches!(
            auth.authenticate(&public.token),
            Err(AuthError::InvalidKey)
        ));
    }
}
