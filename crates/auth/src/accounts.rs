//! App users of a project: sign-up and sign-in, sessions, and the access
//! tokens that carry them.
//!
//! An access token is an ES256 JWT (`typ` `JWT`, a `kid`) signed by its
//! project's own key, so a token of one project never verifies on
//! another. Verification pins the algorithm, refuses headers that point
//! elsewhere for a key (`jku`, `jwk`, `x5u`, `x5c`, `crit`), and checks
//! `iss`, `aud` and `exp` against the caller's clock. Every key is held in
//! memory (loaded at start, kept in step by rotation, and by
//! [`Accounts::reload`] with several nodes); a project gets its first key
//! on first use, and a rotated-out key is honoured until it is retired.
//!
//! A session ends at once: logout, ban, delete, a password change and a
//! replayed refresh token record its end, and every access token naming
//! an ended session is refused from then on, whatever its `exp`. Ended
//! sessions are remembered in memory for [`MAX_ACCESS_LIFETIME_MS`]
//! (longer than any token lives). Verified tokens are cached (bounded),
//! and the ended check runs on every use, cached or not.
//!
//! Refresh tokens are 256-bit random strings, stored as their SHA-256,
//! each used once: the store turns the newest into the next, answers a
//! reuse within [`REFRESH_GRACE_MS`] again (a client that lost the
//! answer), and ends the whole session on a later reuse (a replay).
//!
//! Passwords are hashed with argon2id at OWASP's parameters (19 MiB, two
//! passes), never truncated, at most [`MAX_PASSWORD_BYTES`]. Hashing runs
//! on threads of its own ([`hashing`]), one per core at a lower OS
//! priority, and at most [`PASSWORD_QUEUE`] hashes wait: a login flood
//! gets [`AccountError::Busy`] rather than the other routes' cores. A
//! sign-in for an unknown email does the work of a wrong password, so
//! timing tells nothing.
use crate::AuthError;
use crate::limits::{Limits, Quotas};
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{ProjectId, UnixMillis};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use store::accounts::{Ending, Factor, Refreshed, Session, SigningKey, User};

mod email;
mod hashing;
pub mod mfa;
pub mod providers;
pub mod tickets;
pub use email::{Links, NewCode, SignedUp, VerifyKind};
pub use providers::{ProviderLanding, ProviderSettings, RedirectOutcome, client_code_challenge};
use store::{AccountStore, StoreError};

/// How long an access token lives, in seconds.
pub const ACCESS_LIFETIME_S: i64 = 3600;
/// How long an ended session is remembered: longer than any access
/// token lives.
pub const MAX_ACCESS_LIFETIME_MS: i64 = 24 * 3600 * 1000;
/// How far back a reload reads ended sessions before its previous read:
/// a session end committed late, or stamped by a node whose clock is
/// behind, by less than this is still seen.
const ENDED_OVERLAP_MS: i64 = 60_000;
/// How long a used refresh token may be used again without being taken
/// for a replay.
pub const REFRESH_GRACE_MS: i64 = 10_000;
/// Shortest password accepted, in characters (ASVS 5.0 6.2.1).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes: bounds the hashing work.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Password hashes that may wait for a core; more are refused.
pub const PASSWORD_QUEUE: usize = 64;
/// Verified tokens kept.
const VERIFIED_CACHE: usize = 16_384;
/// Longest token kept in that cache: claims carry `user_metadata`, which
/// users set, so a cache of long tokens would hold a lot; longer ones are
/// verified at every use. (At most 16,384 × (4 KiB + its claims).)
const MAX_CACHED_TOKEN_BYTES: usize = 4096;
/// The audience of every access token (GoTrue's).
pub const AUDIENCE: &str = "authenticated";
/// Longest a mailed code or link lives, in seconds.
pub const MAX_EMAIL_CODE_LIFETIME_S: i64 = 600;
/// Wrong codes for an address and flow that kill its outstanding code.
pub const MAX_CODE_FAILURES: u32 = 5;

/// A project's auth settings (`GET/PUT .../auth/v1/admin/config`, `wok
/// auth config`). Every field has a default; a project never given any
/// has them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// New users may sign up with an email and a password.
    pub signup: bool,
    /// Anonymous users may sign in.
    pub anonymous: bool,
    /// How long an access token lives, in seconds (60 to 86,400).
    pub access_token_lifetime_s: i64,
    /// Shortest password, in characters (8 to 128).
    pub password_min_length: usize,
    /// Password sign-ins and refreshes per client address, a minute.
    pub sign_ins_per_address_per_minute: u32,
    /// Password sign-ins per account and client address, an hour.
    pub sign_ins_per_account_per_hour: u32,
    /// New users (sign-ups, anonymous sign-ins) per client address, an
    /// hour.
    pub new_users_per_address_per_hour: u32,
    /// Where links in mails land when a request names no `redirect_to`.
    pub site_url: Option<String>,
    /// Where else links may land: exact URLs, or a prefix ending in `*`
    /// (which must reach into the path: `https://app.example.com/*`).
    pub redirect_urls: Vec<String>,
    /// New users and new emails must be confirmed with a mailed code
    /// before they count.
    pub email_confirmation: bool,
    /// How long a mailed code or link works, in seconds (1 to 600).
    pub email_code_lifetime_s: i64,
    /// Requests that mail a code, per client address, an hour.
    pub emails_per_address_per_hour: u32,
    /// Requests that mail a code, per recipient, an hour.
    pub emails_per_recipient_per_hour: u32,
    /// The SMTP server the project's mail goes out through; without one,
    /// nothing is mailed (the service side can make links itself).
    pub smtp: Option<SmtpSettings>,
    /// How long a second factor's challenge takes codes, in seconds (1 to
    /// 300).
    pub mfa_challenge_lifetime_s: i64,
    /// Codes tried for one second factor, an hour.
    pub mfa_verifications_per_factor_per_hour: u32,
    /// The OpenID Connect providers users may sign in with.
    pub providers: Vec<ProviderSettings>,
    /// Signed-in users may link a provider's identity to themselves
    /// (`linkIdentity`) and unlink one.
    pub manual_linking: bool,
    /// Sign-ins with a provider begun (`/authorize`) per client address,
    /// an hour.
    pub provider_sign_ins_per_address_per_hour: u32,
}

/// A project's SMTP server, as stored: its password sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub username: Option<String>,
    /// Given in a request only: sealed before it is stored, never shown.
    /// Left out, the password set before stays; `""` removes it.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// The password, sealed under a key derived from the server key
    /// (base64 of the nonce and the sealed bytes); never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_password: Option<String>,
    /// Whether a password is set (shown; ignored in a request).
    #[serde(default)]
    pub password_set: bool,
    /// The sender: `Name <address>` or an address.
    pub from: String,
    #[serde(default)]
    pub tls: crate::mail::SmtpTls,
}

fn default_smtp_port() -> u16 {
    587
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            signup: true,
            anonymous: true,
            access_token_lifetime_s: ACCESS_LIFETIME_S,
            password_min_length: MIN_PASSWORD_CHARS,
            sign_ins_per_address_per_minute: 60,
            sign_ins_per_account_per_hour: 30,
            new_users_per_address_per_hour: 30,
            site_url: None,
            redirect_urls: Vec::new(),
            email_confirmation: false,
            email_code_lifetime_s: MAX_EMAIL_CODE_LIFETIME_S,
            emails_per_address_per_hour: 30,
            emails_per_recipient_per_hour: 5,
            smtp: None,
            mfa_challenge_lifetime_s: mfa::MAX_CHALLENGE_LIFETIME_S,
            mfa_verifications_per_factor_per_hour: 30,
            providers: Vec::new(),
            manual_linking: false,
            provider_sign_ins_per_address_per_hour: 60,
        }
    }
}

impl AuthSettings {
    /// Why these settings cannot be, if they cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(60..=MAX_ACCESS_LIFETIME_MS / 1000).contains(&self.access_token_lifetime_s) {
            return Err(format!(
                "access_token_lifetime_s must be from 60 to {}",
                MAX_ACCESS_LIFETIME_MS / 1000
            ));
        }
        if !(MIN_PASSWORD_CHARS..=128).contains(&self.password_min_length) {
            return Err(format!(
                "password_min_length must be from {MIN_PASSWORD_CHARS} to 128"
            ));
        }
        for (name, value) in [
            (
                "sign_ins_per_address_per_minute",
                self.sign_ins_per_address_per_minute,
            ),
            (
                "sign_ins_per_account_per_hour",
                self.sign_ins_per_account_per_hour,
            ),
            (
                "new_users_per_address_per_hour",
                self.new_users_per_address_per_hour,
            ),
            (
                "emails_per_address_per_hour",
                self.emails_per_address_per_hour,
            ),
            (
                "emails_per_recipient_per_hour",
                self.emails_per_recipient_per_hour,
            ),
            (
                "mfa_verifications_per_factor_per_hour",
                self.mfa_verifications_per_factor_per_hour,
            ),
            (
                "provider_sign_ins_per_address_per_hour",
                self.provider_sign_ins_per_address_per_hour,
            ),
        ] {
            if !(1..=100_000).contains(&value) {
                return Err(format!("{name} must be from 1 to 100000"));
            }
        }
        if !(1..=MAX_EMAIL_CODE_LIFETIME_S).contains(&self.email_code_lifetime_s) {
            return Err(format!(
                "email_code_lifetime_s must be from 1 to {MAX_EMAIL_CODE_LIFETIME_S}"
            ));
        }
        if !(1..=mfa::MAX_CHALLENGE_LIFETIME_S).contains(&self.mfa_challenge_lifetime_s) {
            return Err(format!(
                "mfa_challenge_lifetime_s must be from 1 to {}",
                mfa::MAX_CHALLENGE_LIFETIME_S
            ));
        }
        if let Some(site_url) = &self.site_url {
            redirect_url(site_url, false).map_err(|why| format!("site_url {site_url:?} {why}"))?;
        }
        if self.redirect_urls.len() > 100 {
            return Err("redirect_urls may hold at most 100 URLs".to_owned());
        }
        for url in &self.redirect_urls {
            redirect_url(url, true).map_err(|why| format!("redirect_urls: {url:?} {why}"))?;
        }
        if let Some(smtp) = &self.smtp {
            if smtp.host.trim().is_empty() || smtp.host.chars().any(char::is_whitespace) {
                return Err("smtp.host must be a host name or address".to_owned());
            }
            if smtp.port == 0 {
                return Err("smtp.port must be from 1 to 65535".to_owned());
            }
            smtp.from
                .parse::<lettre::message::Mailbox>()
                .map_err(|error| format!("smtp.from {:?} is not a sender: {error}", smtp.from))?;
        }
        for provider in &self.providers {
            provider.validate()?;
        }
        Ok(())
    }

    /// Whether a link may land on `url`: the site URL, or one the
    /// allow-list names.
    pub fn allows_redirect(&self, url: &str) -> bool {
        self.site_url.as_deref() == Some(url)
            || self
                .redirect_urls
                .iter()
                .any(|allowed| match allowed.strip_suffix('*') {
                    Some(prefix) => url.starts_with(prefix),
                    None => allowed == url,
                })
    }

    /// The settings as shown: no sealed password, whether one is set.
    pub fn shown(&self) -> AuthSettings {
        let mut shown = self.clone();
        if let Some(smtp) = &mut shown.smtp {
            smtp.password_set = smtp.sealed_password.is_some();
            smtp.sealed_password = None;
            smtp.password = None;
        }
        for provider in &mut shown.providers {
            provider.client_secret_set = provider.sealed_client_secret.is_some();
            provider.sealed_client_secret = None;
            provider.client_secret = None;
        }
        shown
    }

    fn quotas(&self) -> Quotas {
        Quotas {
            sign_ins_per_address_per_minute: self.sign_ins_per_address_per_minute,
            sign_ins_per_account_per_hour: self.sign_ins_per_account_per_hour,
            new_users_per_address_per_hour: self.new_users_per_address_per_hour,
            emails_per_address_per_hour: self.emails_per_address_per_hour,
            emails_per_recipient_per_hour: self.emails_per_recipient_per_hour,
            mfa_verifications_per_factor_per_hour: self.mfa_verifications_per_factor_per_hour,
            provider_sign_ins_per_address_per_hour: self.provider_sign_ins_per_address_per_hour,
        }
    }
}

/// Why `url` cannot be a site URL or an allowed redirect (`wildcard`: it
/// may end in `*`), if it cannot.
fn redirect_url(url: &str, wildcard: bool) -> Result<(), String> {
    let exact = match url.strip_suffix('*') {
        Some(prefix) if wildcard => prefix,
        _ => url,
    };
    let Some((scheme, rest)) = exact.split_once("://") else {
        return Err("is not an absolute URL (scheme://host/...)".to_owned());
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if !scheme_ok || host.is_empty() || url.len() > 2048 {
        return Err("is not an absolute URL (scheme://host/...)".to_owned());
    }
    if exact.contains('*') || exact.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("may hold `*` only at its end, and no spaces".to_owned());
    }
    if exact.len() != url.len() && rest.len() == host.len() {
        // `https://app.example.com*` would let `https://app.example.com.evil.com` in.
        return Err("must reach into the path before its `*` (https://host/*)".to_owned());
    }
    Ok(())
}

/// What the service side sets of a user (GoTrue's admin fields).
#[derive(Debug, Default)]
pub struct AdminChange {
    pub email: Option<String>,
    pub password: Option<String>,
    /// Whether the email counts as confirmed.
    pub email_confirm: Option<bool>,
    /// Merged into `user_metadata`, key by key.
    pub user_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Merged into `app_metadata`, key by key.
    pub app_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// `Some(None)`: unban; `Some(Some(d))`: banned for `d` from now,
    /// which ends every session.
    pub ban: Option<Option<std::time::Duration>>,
}

/// The issuer of a project's access tokens.
pub fn issuer(project: &ProjectId) -> String {
    format!("urn:wok:{project}")
}

/// A verified app user's request: who, in which session, and the token's
/// claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub project: ProjectId,
    pub user_id: String,
    pub session_id: String,
    /// `authenticated` (anonymous users too, as in GoTrue).
    pub role: String,
    /// Authenticator assurance level: 1, or 2 after a second factor.
    pub aal: u8,
    pub anonymous: bool,
    /// The token's `exp`, in seconds.
    pub expires_at: i64,
    /// Every claim of the token.
    pub claims: serde_json::Value,
}

/// A way of signing in, as the token's `amr` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Amr {
    method: String,
    timestamp: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    app_metadata: serde_json::Value,
    #[serde(default)]
    user_metadata: serde_json::Value,
    role: String,
    aal: String,
    #[serde(default)]
    amr: Vec<Amr>,
    session_id: String,
    #[serde(default)]
    is_anonymous: bool,
}

impl Claims {
    /// What a token of `user` in `session` says, issued at `iat` until
    /// `exp` (seconds).
    fn of(user: &User, session: &Session, amr: Vec<Amr>, iat: i64, exp: i64) -> Self {
        Claims {
            iss: issuer(&user.project),
            sub: user.id.clone(),
            aud: AUDIENCE.to_owned(),
            exp,
            iat,
            email: user.email.clone().unwrap_or_default(),
            phone: user.phone.clone().unwrap_or_default(),
            app_metadata: user.app_metadata.clone(),
            user_metadata: user.user_metadata.clone(),
            role: AUDIENCE.to_owned(),
            aal: format!("aal{}", session.aal),
            amr,
            session_id: session.id.clone(),
            is_anonymous: user.anonymous,
        }
    }
}

/// A session just opened or refreshed: what the client keeps.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    /// Seconds.
    pub expires_in: i64,
    /// Unix seconds.
    pub expires_at: i64,
    pub refresh_token: String,
    pub session_id: String,
    pub user: User,
    /// The user's second factors.
    pub factors: Vec<Factor>,
    /// The user's identities at providers.
    pub identities: Vec<store::accounts::LinkedIdentity>,
    /// After a sign-in with a provider: the provider's own tokens (GoTrue's
    /// `provider_token` and `provider_refresh_token`), given this once.
    pub provider_tokens: Option<ProviderTokens>,
}

/// A provider's access and refresh tokens, from its code exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
}

/// What a user may change of itself.
#[derive(Debug, Default)]
pub struct UserChange {
    pub email: Option<String>,
    pub password: Option<String>,
    /// Merged into `user_metadata`, key by key.
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Which of a user's sessions a logout ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    /// Every one.
    Global,
    /// The caller's.
    Local,
    /// Every one but the caller's.
    Others,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("invalid login credentials")]
    InvalidCredentials,
    #[error("a user with this email address has already been registered")]
    EmailTaken,
    #[error("{0}")]
    WeakPassword(String),
    #[error("{0}")]
    Invalid(String),
    #[error("sign-ups are disabled for this project")]
    SignupDisabled,
    #[error("anonymous sign-ins are disabled for this project")]
    AnonymousDisabled,
    #[error("the user is banned")]
    Banned,
    #[error("invalid refresh token: refresh token not found")]
    RefreshNotFound,
    #[error("invalid refresh token: already used")]
    RefreshReused,
    #[error("the user does not exist")]
    UserNotFound,
    #[error("too many password checks at once; try again shortly")]
    Busy,
    #[error("the email address is not confirmed")]
    EmailNotConfirmed,
    #[error("the code or link has expired or is invalid")]
    CodeInvalid,
    #[error("the user has no such factor")]
    FactorNotFound,
    #[error("the challenge has expired, was used, or had too many wrong codes: ask for a new one")]
    ChallengeExpired,
    #[error("invalid TOTP code entered")]
    MfaCodeInvalid,
    #[error("a session at aal2 is needed: verify a factor first")]
    InsufficientAal,
    #[error("the user has {0} factors already: unenroll one first")]
    TooManyFactors(usize),
    #[error("the user has a factor with this friendly name already")]
    FactorNameTaken,
    #[error("the ticket has expired, was used, or is invalid")]
    TicketInvalid,
    #[error("provider {0:?} is not enabled for this project")]
    ProviderUnknown(String),
    /// The provider could not be reached or understood (wok's side of
    /// the sign-in failed).
    #[error("the identity provider failed: {0}")]
    Provider(String),
    /// The provider refused the sign-in, or gave nothing to go on.
    #[error("{0}")]
    ProviderRefused(String),
    #[error("the provider's ID token is not valid: {0}")]
    IdTokenInvalid(String),
    /// The provider's (verified) email is another user's, who signs in
    /// another way: never merged silently.
    #[error(
        "an account with this email exists and signs in another way: sign in to it as before (the {0} identity is not linked to it automatically)"
    )]
    AccountExists(String),
    #[error("the sign-in flow has expired, was used, or is invalid")]
    FlowStateInvalid,
    #[error("the code verifier does not match the code challenge")]
    BadCodeVerifier,
    #[error("linking identities is disabled for this project")]
    ManualLinkingDisabled,
    #[error("this identity is linked to another user already")]
    IdentityTaken,
    #[error("the user has no such identity")]
    IdentityNotFound,
    #[error("the user's only way of signing in cannot be unlinked")]
    SingleIdentity,
    /// Too many mails asked for from this address or to this recipient,
    /// or the outbox is full: try again after this long.
    #[error("too many emails asked for; try again later")]
    EmailRateLimited(std::time::Duration),
    /// A rate limit of the project: try again after this long.
    #[error("too many requests from this address or for this account; try again later")]
    RateLimited(std::time::Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key that verifies tokens.
struct Verifier {
    project: ProjectId,
    key: DecodingKey,
    /// Its public JWK, as the JWKS endpoint publishes it.
    jwk: serde_json::Value,
}

/// Every project's signing keys.
#[derive(Default)]
struct Keys {
    /// Honoured keys, by `kid`.
    by_kid: HashMap<String, Verifier>,
    /// The newest honoured key of each project: what signs.
    signing: HashMap<ProjectId, (String, Arc<EncodingKey>)>,
}

/// The accounts of every project.
pub struct Accounts {
    store: Arc<dyn AccountStore>,
    /// Seals signing keys at rest (a key derived from the server key).
    sealer: LessSafeKey,
    keys: RwLock<Keys>,
    /// Sessions ended in the last [`MAX_ACCESS_LIFETIME_MS`], and when.
    ended: RwLock<HashMap<String, UnixMillis>>,
    verified: Mutex<HashMap<String, Arc<Identity>>>,
    /// Threads that hash passwords, one per core.
    hashers: hashing::Hashers,
    /// One first key per project, even when requests race.
    key_creation: tokio::sync::Mutex<()>,
    /// What an unknown email's sign-in verifies against.
    decoy_hash: String,
    /// Moves whenever a session ends: long-lived connections check again.
    changes: tokio::sync::watch::Sender<u64>,
    /// The settings of projects that have any.
    settings: RwLock<HashMap<ProjectId, AuthSettings>>,
    /// When [`Accounts::reload`] last read the ended sessions.
    ended_read: Mutex<Option<UnixMillis>>,
    /// Each project's rate limiters, made on first use after its settings.
    limits: RwLock<HashMap<ProjectId, Arc<Limits>>>,
    /// Keys the hashes of mailed codes (derived from the server key), so
    /// that a copy of the store does not give the codes away.
    code_key: [u8; 32],
    /// Mail waiting to go out.
    outbox: crate::mail::Outbox,
    /// Calls to identity providers.
    idp: providers::IdpClient,
    /// Providers' discovered metadata and keys, by issuer, and when.
    discoveries:
        RwLock<HashMap<String, (UnixMillis, Arc<openidconnect::core::CoreProviderMetadata>)>>,
}

/// Something a client does that a rate limit counts.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// A password sign-in for this email.
    SignIn(&'a str),
    Refresh,
    /// A sign-up, or an anonymous sign-in.
    NewUser,
    /// A request that mails a code to this address.
    Email(&'a str),
    /// A code or link given back, or a login ticket.
    Verify,
    /// A code tried for this second factor.
    MfaVerify(&'a str),
    /// A sign-in with a provider begun.
    ProviderSignIn,
}

impl Accounts {
    /// Every signing key and recently ended session, from the store;
    /// mail goes out over SMTP.
    pub async fn open(
        store: Arc<dyn AccountStore>,
        server_key: [u8; 32],
        now: UnixMillis,
    ) -> Result<Self, StoreError> {
        Self::open_with_mailer(
            store,
            server_key,
            now,
            Arc::new(crate::mail::Smtp),
            crate::mail::OUTBOX,
        )
        .await
    }

    /// [`Accounts::open`], with mail sent by `mailer` through an outbox of
    /// `outbox` places.
    pub async fn open_with_mailer(
        store: Arc<dyn AccountStore>,
        server_key: [u8; 32],
        now: UnixMillis,
        mailer: Arc<dyn crate::mail::Mailer>,
        outbox: usize,
    ) -> Result<Self, StoreError> {
        let derived = |purpose: &[u8]| -> [u8; 32] {
            use hmac::Mac;
            let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&server_key)
                .expect("HMAC takes keys of any length");
            mac.update(purpose);
            mac.finalize().into_bytes().into()
        };
        let sealing = derived(b"wok-signing-keys");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let accounts = Self {
            store,
            sealer: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &sealing).expect("a 256-bit key"),
            ),
            keys: RwLock::default(),
            ended: RwLock::default(),
            verified: Mutex::default(),
            hashers: hashing::Hashers::start(cores),
            key_creation: tokio::sync::Mutex::new(()),
            decoy_hash: argon2::Argon2::default()
                .hash_password(b"a password nobody has")
                .expect("hashing a password")
                .to_string(),
            changes: tokio::sync::watch::Sender::new(0),
            settings: RwLock::default(),
            ended_read: Mutex::default(),
            limits: RwLock::default(),
            code_key: derived(b"wok-email-codes"),
            outbox: crate::mail::Outbox::start(mailer, outbox),
            idp: providers::IdpClient::new()?,
            discoveries: RwLock::default(),
        };
        accounts.reload(now).await?;
        Ok(accounts)
    }

    /// Reads the signing keys and the sessions ended lately again: what
    /// another node sharing the store changed.
    pub async fn reload(&self, now: UnixMillis) -> Result<(), StoreError> {
        let mut keys = Keys::default();
        for stored in self.store.signing_keys().await? {
            if stored.retired_at.is_some() {
                continue;
            }
            let Some(pair) = self.unseal(&stored) else {
                return Err(StoreError::Corrupt(format!(
                    "the signing key {:?} of project {:?} does not open with the server key",
                    stored.kid,
                    stored.project.as_str()
                )));
            };
            keys.add(&stored, &pair);
        }
        // Only what ended since the last read (with an overlap for commits
        // that land late and clocks that differ between nodes): every
        // session end of the cluster moves the change counter, and a
        // reload must not read a day of them each time.
        let oldest = now - MAX_ACCESS_LIFETIME_MS;
        let since = match *self.ended_read.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(read) => (read - ENDED_OVERLAP_MS).max(oldest),
            None => oldest,
        };
        let ended = self.store.ended_sessions(since).await?;
        *self.ended_read.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        let grew = {
            let mut memory = self.ended.write().unwrap_or_else(|p| p.into_inner());
            let before = memory.len();
            memory.retain(|_, at| *at >= now - MAX_ACCESS_LIFETIME_MS);
            let kept = memory.len();
            memory.extend(ended.into_iter().map(|(_, id, at)| (id, at)));
            memory.len() > kept || kept < before
        };
        let mut settings = HashMap::new();
        for (project, stored) in self.store.auth_settings().await? {
            let parsed = serde_json::from_value::<AuthSettings>(stored).map_err(|error| {
                StoreError::Corrupt(format!(
                    "the auth settings of project {:?}: {error}",
                    project.as_str()
                ))
            })?;
            settings.insert(project, parsed);
        }
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        if grew {
            self.changes.send_modify(|count| *count += 1);
        }
        Ok(())
    }

    /// A project's auth settings.
    pub fn settings(&self, project: &ProjectId) -> AuthSettings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(project)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces a project's auth settings; they apply from the moment this
    /// returns.
    /// An SMTP password given in them is sealed; one left out stays as it
    /// was. Their shown form.
    pub async fn set_settings(
        &self,
        project: &ProjectId,
        mut settings: AuthSettings,
    ) -> Result<AuthSettings, AccountError> {
        settings.validate().map_err(AccountError::Invalid)?;
        self.check_providers(&settings.providers)
            .map_err(AccountError::Invalid)?;
        self.seal_provider_secrets(project, &mut settings.providers);
        if let Some(smtp) = &mut settings.smtp {
            let before = self
                .settings(project)
                .smtp
                .and_then(|smtp| smtp.sealed_password);
            smtp.sealed_password = match smtp.password.take() {
                Some(password) if password.is_empty() => None,
                Some(password) => {
                    Some(self.seal_secret(&smtp_sealing_context(project), password.as_bytes()))
                }
                None => before,
            };
            smtp.password_set = smtp.sealed_password.is_some();
        }
        let stored = serde_json::to_value(&settings).expect("settings serialize");
        self.store.set_auth_settings(project, &stored).await?;
        self.settings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(project.clone(), settings.clone());
        Ok(settings.shown())
    }

    /// Counts `attempt` from `address` against the project's limits, or
    /// says how long to wait. (`None`: a native function's connection from
    /// inside its sandbox, counted as one address.)
    pub fn admit(
        &self,
        project: &ProjectId,
        attempt: Attempt<'_>,
        address: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        let address = address.unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        let limits = self.limits_of(project);
        match attempt {
            Attempt::SignIn(email) => limits.sign_in(&email.trim().to_lowercase(), address),
            Attempt::Refresh => limits.refresh(address),
            Attempt::NewUser => limits.new_user(address),
            Attempt::Verify => limits.refresh(address),
            Attempt::MfaVerify(factor_id) => limits.mfa_verify(factor_id, address),
            Attempt::ProviderSignIn => limits.provider_sign_in(address),
            Attempt::Email(email) => {
                return limits
                    .email(&email.trim().to_lowercase(), address)
                    .map_err(AccountError::EmailRateLimited);
            }
        }
        .map_err(AccountError::RateLimited)
    }

    fn limits_of(&self, project: &ProjectId) -> Arc<Limits> {
        let quotas = self.settings(project).quotas();
        if let Some(limits) = self
            .limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(project)
            .filter(|limits| limits.quotas == quotas)
        {
            return limits.clone();
        }
        let limits = Arc::new(Limits::new(quotas));
        self.limits
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(project.clone(), limits.clone());
        limits
    }

    /// Moves whenever a session ends.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether a verified identity's session is still live.
    pub fn still_live(&self, identity: &Identity, now: UnixMillis) -> bool {
        identity.expires_at * 1000 > now
            && !self
                .ended
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&identity.session_id)
    }

    /// The public keys that verify `project`'s tokens, as a JWKS.
    pub fn jwks(&self, project: &ProjectId) -> serde_json::Value {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let mut jwks: Vec<_> = keys
            .by_kid
            .values()
            .filter(|verifier| &verifier.project == project)
            .map(|verifier| verifier.jwk.clone())
            .collect();
        jwks.sort_by(|a, b| a["kid"].as_str().cmp(&b["kid"].as_str()));
        serde_json::json!({ "keys": jwks })
    }

    /// Makes a new signing key for `project`, which signs from now on;
    /// the older ones are honoured until retired. Its `kid`.
    pub async fn rotate_key(
        &self,
        project: &ProjectId,
        now: UnixMillis,
    ) -> Result<String, StoreError> {
        let document = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|_| StoreError::backend("the system random number generator failed", true))?;
        let kid = uuid::Uuid::new_v4().simple().to_string();
        let mut key = SigningKey {
            project: project.clone(),
            kid: kid.clone(),
            sealed_private: Vec::new(),
            created_at: now,
            retired_at: None,
        };
        key.sealed_private = self.seal(&key, document.as_ref());
        self.store.add_signing_key(&key).await?;
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add(&key, document.as_ref());
        Ok(kid)
    }

    /// Stops honouring a key: its tokens are refused from now on. Whether
    /// it was honoured.
    pub async fn retire_key(
        &self,
        project: &ProjectId,
        kid: &str,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        let retired = self.store.retire_signing_key(project, kid, now).await?;
        self.reload(now).await?;
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(retired)
    }

    /// The key that signs `project`'s tokens, made on first use.
    async fn signer(
        &self,
        project: &ProjectId,
        now: UnixMillis,
    ) -> Result<(String, Arc<EncodingKey>), StoreError> {
        if let Some(signing) = self.signing(project) {
            return Ok(signing);
        }
        let _one = self.key_creation.lock().await;
        if let Some(signing) = self.signing(project) {
            return Ok(signing);
        }
        self.rotate_key(project, now).await?;
        Ok(self.signing(project).expect("the key just made"))
    }

    fn signing(&self, project: &ProjectId) -> Option<(String, Arc<EncodingKey>)> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .signing
            .get(project)
            .cloned()
    }

    fn seal(&self, key: &SigningKey, private: &[u8]) -> Vec<u8> {
        self.seal_bytes(&sealing_context(key), private)
    }

    fn unseal(&self, key: &SigningKey) -> Option<Vec<u8>> {
        self.open_bytes(&sealing_context(key), &key.sealed_private)
    }

    /// `secret` sealed (AES-256-GCM) and bound to `context`: the nonce,
    /// then the sealed bytes.
    fn seal_bytes(&self, context: &[u8], secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random number generator");
        let mut sealed = secret.to_vec();
        self.sealer
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut sealed,
            )
            .expect("sealing a short secret");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    fn open_bytes(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, sealed) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = sealed.to_vec();
        let opened = self
            .sealer
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .ok()?;
        Some(opened.to_vec())
    }

    /// A secret sealed for a JSON document (base64).
    fn seal_secret(&self, context: &[u8], secret: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.seal_bytes(context, secret))
    }

    /// A secret [`Accounts::seal_secret`] sealed, if it opens.
    fn open_secret(&self, context: &[u8], sealed: &str) -> Option<Vec<u8>> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        self.open_bytes(context, &bytes)
    }

    /// Who an access token is, if it is a live one of its project.
    pub fn verify(&self, token: &str, now: UnixMillis) -> Result<Arc<Identity>, AuthError> {
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        let identity = match cached {
            Some(identity) => identity,
            None => {
                let identity = Arc::new(self.verify_uncached(token)?);
                if token.len() <= MAX_CACHED_TOKEN_BYTES {
                    let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                    if cache.len() >= VERIFIED_CACHE {
                        cache.clear();
                    }
                    cache.insert(token.to_owned(), identity.clone());
                }
                identity
            }
        };
        if identity.expires_at * 1000 <= now {
            return Err(AuthError::TokenExpired);
        }
        if self
            .ended
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&identity.session_id)
        {
            return Err(AuthError::SessionEnded);
        }
        Ok(identity)
    }

    /// Who signed a presigned URL that names `user_id` and `session_id`
    /// (its signature checked by the caller), as of now: the session must
    /// still be live and the user neither banned nor gone. The identity
    /// carries what a fresh token of the session would say, and lasts
    /// until `expires_at` (seconds), the URL's end. Reads the store.
    pub async fn presigned_identity(
        &self,
        project: &ProjectId,
        user_id: &str,
        session_id: &str,
        expires_at: i64,
        now: UnixMillis,
    ) -> Result<Arc<Identity>, AuthError> {
        if self
            .ended
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(session_id)
        {
            return Err(AuthError::SessionEnded);
        }
        let session = self
            .store
            .session(project, session_id)
            .await?
            .filter(|session| session.user_id == user_id && session.ended_at.is_none())
            .ok_or(AuthError::SessionEnded)?;
        let user = self
            .store
            .user(project, user_id)
            .await?
            .filter(|user| user.banned_until.is_none_or(|until| until <= now))
            .ok_or(AuthError::SessionEnded)?;
        let claims = Claims::of(
            &user,
            &session,
            Vec::new(),
            now.div_euclid(1000),
            expires_at,
        );
        Ok(Arc::new(Identity {
            project: project.clone(),
            user_id: user.id,
            session_id: session.id,
            role: AUDIENCE.to_owned(),
            aal: session.aal,
            anonymous: user.anonymous,
            expires_at,
            claims: serde_json::to_value(claims).unwrap_or_default(),
        }))
    }

    /// The signature and claims of a token (not its expiry, nor its
    /// session).
    fn verify_uncached(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        let pointed_elsewhere = header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some();
        if header.alg != Algorithm::ES256
            || header.typ.as_deref() != Some("JWT")
            || pointed_elsewhere
        {
            return Err(AuthError::InvalidToken);
        }
        let kid = header.kid.ok_or(AuthError::InvalidToken)?;
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let verifier = keys.by_kid.get(&kid).ok_or(AuthError::InvalidToken)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer(&verifier.project)]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked against the server's clock, on every use.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &verifier.key, &validation)
            .map_err(|_| AuthError::InvalidToken)?
            .claims;
        let parsed: Claims =
            serde_json::from_value(claims.clone()).map_err(|_| AuthError::InvalidToken)?;
        Ok(Identity {
            project: verifier.project.clone(),
            user_id: parsed.sub,
            session_id: parsed.session_id,
            role: parsed.role,
            aal: if parsed.aal == "aal2" { 2 } else { 1 },
            anonymous: parsed.is_anonymous,
            expires_at: parsed.exp,
            claims,
        })
    }

    /// Signs an access token for `user` in `session`, which `method`
    /// began; a session at `aal2` names its second factor too, proven at
    /// `mfa_at` (else when the session began).
    async fn issue(
        &self,
        user: &User,
        session: &Session,
        refresh_token: String,
        method: &str,
        mfa_at: Option<UnixMillis>,
        now: UnixMillis,
    ) -> Result<Issued, StoreError> {
        let (kid, key) = self.signer(&user.project, now).await?;
        let lifetime = self.settings(&user.project).access_token_lifetime_s;
        let iat = now.div_euclid(1000);
        let claims = Claims::of(
            user,
            session,
            amr(session, method, mfa_at),
            iat,
            iat + lifetime,
        );
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid);
        header.typ = Some("JWT".to_owned());
        let access_token = jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|error| StoreError::backend(format!("signing a token: {error}"), false))?;
        Ok(Issued {
            access_token,
            expires_in: lifetime,
            expires_at: claims.exp,
            refresh_token,
            session_id: session.id.clone(),
            user: user.clone(),
            factors: self.store.factors(&user.project, &user.id).await?,
            identities: self
                .store
                .linked_identities(&user.project, &user.id)
                .await?,
            provider_tokens: None,
        })
    }

    /// Opens a session for `user`.
    async fn open_session(
        &self,
        user: &User,
        method: &str,
        now: UnixMillis,
    ) -> Result<Issued, StoreError> {
        let session = Session {
            project: user.project.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            created_at: now,
            refreshed_at: now,
            aal: 1,
            ended_at: None,
        };
        let (refresh_token, hash) = new_refresh_token();
        self.store.create_session(&session, &hash).await?;
        self.issue(user, &session, refresh_token, method, None, now)
            .await
    }

    /// Hashes a password off the async threads, within the cap.
    async fn hash(&self, password: String) -> Result<String, AccountError> {
        self.hashing_work(move || {
            argon2::Argon2::default()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| {
                    AccountError::Store(StoreError::backend(format!("hashing: {error}"), false))
                })
        })
        .await?
    }

    /// Whether `password` has `hash` (a PHC string), off the async
    /// threads, within the cap.
    async fn check(&self, password: String, hash: String) -> Result<bool, AccountError> {
        self.hashing_work(move || {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
    }

    async fn hashing_work<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AccountError> {
        match self.hashers.run(work).await {
            Ok(Some(done)) => Ok(done),
            Ok(None) => Err(AccountError::Store(StoreError::backend(
                "a password hashing task failed",
                false,
            ))),
            Err(hashing::Busy) => Err(AccountError::Busy),
        }
    }

    /// A new user with an email and a password, signed in, its email
    /// taken as confirmed (with `email_confirmation` on, the gateway signs
    /// up through [`Accounts::sign_up_by_email`] instead).
    pub async fn sign_up(
        &self,
        project: &ProjectId,
        email: &str,
        password: &str,
        data: serde_json::Map<String, serde_json::Value>,
        now: UnixMillis,
    ) -> Result<Issued, AccountError> {
        let settings = self.settings(project);
        if !settings.signup {
            return Err(AccountError::SignupDisabled);
        }
        let email = valid_email(email)?;
        valid_password(password, &settings)?;
        let password_hash = self.hash(password.to_owned()).await?;
        let user = User {
            password_hash: Some(password_hash),
            email_confirmed_at: Some(now),
            last_sign_in_at: Some(now),
            ..new_user(project, Some(email), data, now)
        };
        match self.store.create_user(&user).await {
            Err(StoreError::EmailTaken) => return Err(AccountError::EmailTaken),
            other => other?,
        }
        Ok(self.open_session(&user, "password", now).await?)
    }

    /// A new anonymous user, signed in.
    pub async fn sign_in_anonymously(
        &self,
        project: &ProjectId,
        data: serde_json::Map<String, serde_json::Value>,
        now: UnixMillis,
    ) -> Result<Issued, AccountError> {
        if !self.settings(project).anonymous {
            return Err(AccountError::AnonymousDisabled);
        }
        let user = User {
            anonymous: true,
            app_metadata: serde_json::json!({}),
            last_sign_in_at: Some(now),
            ..new_user(project, None, data, now)
        };
        self.store.create_user(&user).await?;
        Ok(self.open_session(&user, "anonymous", now).await?)
    }

    /// Signs in with an email and a password.
    pub async fn sign_in_with_password(
        &self,
        project: &ProjectId,
        email: &str,
        password: &str,
        now: UnixMillis,
    ) -> Result<Issued, AccountError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AccountError::InvalidCredentials);
        }
        let user = self
            .store
            .user_by_email(project, &email.trim().to_lowercase())
            .await?;
        let hash = user
            .as_ref()
            .and_then(|user| user.password_hash.clone())
            .unwrap_or_else(|| self.decoy_hash.clone());
        let matches = self.check(password.to_owned(), hash).await?;
        let Some(mut user) = user.filter(|user| matches && user.password_hash.is_some()) else {
            return Err(AccountError::InvalidCredentials);
        };
        if user.banned_until.is_some_and(|until| until > now) {
            return Err(AccountError::Banned);
        }
        // Told only to whoever knows the password.
        if user.email_confirmed_at.is_none() && self.settings(project).email_confirmation {
            return Err(AccountError::EmailNotConfirmed);
        }
        user.last_sign_in_at = Some(now);
        self.store.update_user(&user).await?;
        Ok(self.open_session(&user, "password", now).await?)
    }

    /// Turns a refresh token into a new access token and refresh token.
    pub async fn refresh(
        &self,
        project: &ProjectId,
        refresh_token: &str,
        now: UnixMillis,
    ) -> Result<Issued, AccountError> {
        let used: [u8; 32] = Sha256::digest(refresh_token.as_bytes()).into();
        let (next_token, next) = new_refresh_token();
        let session = match self
            .store
            .refresh(project, &used, &next, now, REFRESH_GRACE_MS)
            .await?
        {
            Refreshed::Rotated(session) | Refreshed::Again(session) => session,
            Refreshed::Replayed { session_id } => {
                self.ended_now(&[session_id], now);
                return Err(AccountError::RefreshReused);
            }
            Refreshed::Refused => return Err(AccountError::RefreshNotFound),
        };
        let user = self.store.user(project, &session.user_id).await?;
        let Some(user) = user else {
            return Err(AccountError::RefreshNotFound);
        };
        if user.banned_until.is_some_and(|until| until > now) {
            self.end(project, &user.id, Ending::One(&session.id), now)
                .await?;
            return Err(AccountError::Banned);
        }
        let method = if user.anonymous {
            "anonymous"
        } else {
            "password"
        };
        Ok(self
            .issue(&user, &session, next_token, method, None, now)
            .await?)
    }

    /// The user an identity is.
    pub async fn user(&self, identity: &Identity) -> Result<User, AccountError> {
        self.store
            .user(&identity.project, &identity.user_id)
            .await?
            .ok_or(AccountError::UserNotFound)
    }

    /// Changes a user's email, password or data. A new password ends the
    /// user's other sessions. An anonymous user given an email becomes a
    /// permanent one, keeping its id.
    pub async fn update_user(
        &self,
        identity: &Identity,
        change: UserChange,
        now: UnixMillis,
    ) -> Result<User, AccountError> {
        let mut user = self.user(identity).await?;
        if let Some(email) = &change.email {
            user.email = Some(valid_email(email)?);
            user.email_confirmed_at = Some(now);
            if user.anonymous {
                user.anonymous = false;
                user.app_metadata =
                    serde_json::json!({"provider": "email", "providers": ["email"]});
            }
        }
        if let Some(password) = &change.password {
            valid_password(password, &self.settings(&identity.project))?;
            user.password_hash = Some(self.hash(password.clone()).await?);
        }
        if let Some(data) = change.data {
            let mut merged = match user.user_metadata {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            merged.extend(data);
            user.user_metadata = serde_json::Value::Object(merged);
        }
        user.updated_at = now;
        match self.store.update_user(&user).await {
            Ok(true) => {}
            Ok(false) => return Err(AccountError::UserNotFound),
            Err(StoreError::EmailTaken) => return Err(AccountError::EmailTaken),
            Err(error) => return Err(error.into()),
        }
        if change.password.is_some() {
            self.end(
                &identity.project,
                &user.id,
                Ending::Others(&identity.session_id),
                now,
            )
            .await?;
        }
        Ok(user)
    }

    /// A project's users, ordered by id: a page of them and how many
    /// there are.
    pub async fn list_users(
        &self,
        project: &ProjectId,
        offset: u64,
        limit: usize,
    ) -> Result<(Vec<User>, u64), StoreError> {
        let users = self.store.users(project, offset, limit).await?;
        let total = self.store.count_users(project).await?;
        Ok((users, total))
    }

    /// One user of a project.
    pub async fn find_user(&self, project: &ProjectId, id: &str) -> Result<User, AccountError> {
        self.store
            .user(project, id)
            .await?
            .ok_or(AccountError::UserNotFound)
    }

    /// A user made by the service side: with an email (and a password, or
    /// none: it signs in by other ways), confirmed or not.
    pub async fn admin_create_user(
        &self,
        project: &ProjectId,
        email: &str,
        change: AdminChange,
        now: UnixMillis,
    ) -> Result<User, AccountError> {
        let email = valid_email(email)?;
        let mut user = new_user(project, Some(email), serde_json::Map::new(), now);
        self.apply_admin_change(&mut user, &change, now).await?;
        match self.store.create_user(&user).await {
            Err(StoreError::EmailTaken) => Err(AccountError::EmailTaken),
            other => Ok(other.map(|()| user)?),
        }
    }

    /// Changes a user as the service side may. A new password or a ban
    /// ends every session of the user.
    pub async fn admin_update_user(
        &self,
        project: &ProjectId,
        id: &str,
        change: AdminChange,
        now: UnixMillis,
    ) -> Result<User, AccountError> {
        let mut user = self.find_user(project, id).await?;
        if let Some(email) = &change.email {
            user.email = Some(valid_email(email)?);
            user.anonymous = false;
        }
        self.apply_admin_change(&mut user, &change, now).await?;
        user.updated_at = now;
        match self.store.update_user(&user).await {
            Ok(true) => {}
            Ok(false) => return Err(AccountError::UserNotFound),
            Err(StoreError::EmailTaken) => return Err(AccountError::EmailTaken),
            Err(error) => return Err(error.into()),
        }
        if change.password.is_some() || matches!(change.ban, Some(Some(_))) {
            self.end(project, id, Ending::All, now).await?;
        }
        Ok(user)
    }

    async fn apply_admin_change(
        &self,
        user: &mut User,
        change: &AdminChange,
        now: UnixMillis,
    ) -> Result<(), AccountError> {
        if let Some(password) = &change.password {
            valid_password(password, &self.settings(&user.project))?;
            user.password_hash = Some(self.hash(password.clone()).await?);
        }
        match change.email_confirm {
            Some(true) if user.email_confirmed_at.is_none() => user.email_confirmed_at = Some(now),
            Some(false) => user.email_confirmed_at = None,
            _ => {}
        }
        for (metadata, merged) in [
            (&mut user.user_metadata, &change.user_metadata),
            (&mut user.app_metadata, &change.app_metadata),
        ] {
            if let Some(merged) = merged {
                let mut map = match std::mem::take(metadata) {
                    serde_json::Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                map.extend(merged.clone());
                *metadata = serde_json::Value::Object(map);
            }
        }
        match change.ban {
            Some(Some(duration)) => {
                let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
                user.banned_until = Some(now.saturating_add(millis));
            }
            Some(None) => user.banned_until = None,
            None => {}
        }
        Ok(())
    }

    /// Deletes a user and ends its sessions; whether there was one.
    pub async fn admin_delete_user(
        &self,
        project: &ProjectId,
        id: &str,
        now: UnixMillis,
    ) -> Result<bool, StoreError> {
        match self.store.delete_user(project, id, now).await? {
            Some(ended) => {
                self.ended_now(&ended, now);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// A user's live sessions.
    pub async fn sessions_of(
        &self,
        project: &ProjectId,
        user_id: &str,
    ) -> Result<Vec<Session>, StoreError> {
        self.store.live_sessions(project, user_id).await
    }

    /// Ends every session of a user; how many.
    pub async fn end_sessions_of(
        &self,
        project: &ProjectId,
        user_id: &str,
        now: UnixMillis,
    ) -> Result<usize, StoreError> {
        let ended = self
            .store
            .end_sessions(project, user_id, Ending::All, now)
            .await?;
        self.ended_now(&ended, now);
        Ok(ended.len())
    }

    /// A project's signing keys, retired ones included, oldest first.
    pub async fn signing_keys(&self, project: &ProjectId) -> Result<Vec<SigningKey>, StoreError> {
        let mut keys = self.store.signing_keys().await?;
        keys.retain(|key| &key.project == project);
        for key in &mut keys {
            key.sealed_private.clear();
        }
        Ok(keys)
    }

    /// Ends the caller's session, the others, or all of the user's.
    pub async fn logout(
        &self,
        identity: &Identity,
        scope: LogoutScope,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let which = match scope {
            LogoutScope::Global => Ending::All,
            LogoutScope::Local => Ending::One(&identity.session_id),
            LogoutScope::Others => Ending::Others(&identity.session_id),
        };
        self.end(&identity.project, &identity.user_id, which, now)
            .await
    }

    /// Ends sessions, and refuses their tokens on this node at once.
    async fn end(
        &self,
        project: &ProjectId,
        user_id: &str,
        which: Ending<'_>,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let ended = self
            .store
            .end_sessions(project, user_id, which, now)
            .await?;
        self.ended_now(&ended, now);
        Ok(())
    }

    fn ended_now(&self, sessions: &[String], now: UnixMillis) {
        if sessions.is_empty() {
            return;
        }
        self.ended
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(sessions.iter().map(|id| (id.clone(), now)));
        self.changes.send_modify(|count| *count += 1);
    }
}

impl Keys {
    /// Adds a key (PKCS#8); the newest of its project signs.
    fn add(&mut self, key: &SigningKey, private: &[u8]) {
        let Ok(pair) = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            private,
            &ring::rand::SystemRandom::new(),
        ) else {
            return;
        };
        // An uncompressed point: 0x04, then x and y.
        let point = pair.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        );
        let Ok(decoding) = DecodingKey::from_ec_components(&x, &y) else {
            return;
        };
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": key.kid, "alg": "ES256", "use": "sig", "key_ops": ["verify"],
        });
        self.by_kid.insert(
            key.kid.clone(),
            Verifier {
                project: key.project.clone(),
                key: decoding,
                jwk,
            },
        );
        // Keys come oldest first: the last one added signs.
        self.signing.insert(
            key.project.clone(),
            (key.kid.clone(), Arc::new(EncodingKey::from_ec_der(private))),
        );
    }
}

/// A new user of `project`: an id of its own, the email (if any) as the
/// way it signs in, nothing confirmed, no password, never signed in.
pub(crate) fn new_user(
    project: &ProjectId,
    email: Option<String>,
    user_metadata: serde_json::Map<String, serde_json::Value>,
    now: UnixMillis,
) -> User {
    User {
        project: project.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        email,
        phone: None,
        password_hash: None,
        email_confirmed_at: None,
        anonymous: false,
        banned_until: None,
        app_metadata: serde_json::json!({"provider": "email", "providers": ["email"]}),
        user_metadata: serde_json::Value::Object(user_metadata),
        created_at: now,
        updated_at: now,
        last_sign_in_at: None,
    }
}

/// The methods a session was proven by, newest first (as GoTrue): its
/// second factor (at `aal2`), then how it began.
fn amr(session: &Session, method: &str, mfa_at: Option<UnixMillis>) -> Vec<Amr> {
    let began = session.created_at.div_euclid(1000);
    let mut amr = Vec::with_capacity(2);
    if session.aal >= 2 {
        amr.push(Amr {
            method: "totp".to_owned(),
            timestamp: mfa_at.map_or(began, |at| at.div_euclid(1000)),
        });
    }
    amr.push(Amr {
        method: method.to_owned(),
        timestamp: began,
    });
    amr
}

/// What a sealed signing key is bound to: its project and `kid`.
fn sealing_context(key: &SigningKey) -> Vec<u8> {
    format!("wok-signing-key:{}:{}", key.project, key.kid).into_bytes()
}

/// What a project's sealed SMTP password is bound to.
fn smtp_sealing_context(project: &ProjectId) -> Vec<u8> {
    format!("wok-smtp-password:{project}").into_bytes()
}

/// A new refresh token and its SHA-256.
fn new_refresh_token() -> (String, [u8; 32]) {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the OS random number generator");
    let token = URL_SAFE_NO_PAD.encode(secret);
    let hash = Sha256::digest(token.as_bytes()).into();
    (token, hash)
}

/// An email address, trimmed and lowercased, if it is shaped like one.
fn valid_email(email: &str) -> Result<String, AccountError> {
    let email = email.trim().to_lowercase();
    let shaped = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !shaped {
        return Err(AccountError::Invalid(
            "the email address is not valid".to_owned(),
        ));
    }
    Ok(email)
}

/// Refuses a password too short, too long or too common.
fn valid_password(password: &str, settings: &AuthSettings) -> Result<(), AccountError> {
    let shortest = settings.password_min_length;
    if password.chars().count() < shortest {
        return Err(AccountError::WeakPassword(format!(
            "the password must be at least {shortest} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::WeakPassword(format!(
            "the password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    if crate::common_passwords::is_common(password) {
        return Err(AccountError::WeakPassword(
            "the password is one of the most common passwords".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::ProjectStore;
    use store::accounts::FactorStatus;
    use store_sqlite::SqliteStore;

    async fn accounts() -> (tempfile::TempDir, Arc<SqliteStore>, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("wok.db")).unwrap());
        for name in ["shop", "blog"] {
            store
                .create_project(&ProjectId::new(name).unwrap())
                .await
                .unwrap();
        }
        let accounts = Accounts::open(store.clone(), [3; 32], NOW).await.unwrap();
        (dir, store, accounts)
    }

    const NOW: UnixMillis = 1_800_000_000_000;

    fn shop() -> ProjectId {
        ProjectId::new("shop").unwrap()
    }

    /// A token signed by `project`'s own key, with a header and claims
    /// of the test's choosing.
    fn signed(accounts: &Accounts, project: &ProjectId, header: Header, claims: &Value) -> String {
        let (_, key) = accounts.signing(project).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    use serde_json::Value;

    fn claims_of(token: &str) -> Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn tokens_verify_only_as_issued_by_their_project() {
        let (_dir, _store, accounts) = accounts().await;
        let (shop, blog) = (shop(), ProjectId::new("blog").unwrap());
        let issued = accounts
            .sign_up(
                &shop,
                "Ann@Example.com",
                "a long passphrase",
                Default::default(),
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(issued.user.email.as_deref(), Some("ann@example.com"));
        let identity = accounts.verify(&issued.access_token, NOW).unwrap();
        assert_eq!(
            (identity.project.as_str(), identity.user_id.as_str()),
            ("shop", issued.user.id.as_str())
        );
        let header = jsonwebtoken::decode_header(&issued.access_token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let kid = header.kid.clone().unwrap();
        let claims = claims_of(&issued.access_token);
        assert_eq!(claims["iss"], "urn:wok:shop");
        assert_eq!(claims["aud"], "authenticated");
        assert_eq!(claims["exp"], claims["iat"].as_i64().unwrap() + 3600);

        // Another project's key signs another project's tokens; neither
        // verifies as the other.
        let blogger = accounts
            .sign_up(
                &blog,
                "ann@example.com",
                "a long passphrase",
                Default::default(),
                NOW,
            )
            .await
            .unwrap();
        assert_ne!(
            jsonwebtoken::decode_header(&blogger.access_token)
                .unwrap()
                .kid,
            Some(kid.clone())
        );
        let mut claiming_blog = claims.clone();
        claiming_blog["iss"] = "urn:wok:blog".into();
        let mut with_kid = Header::new(Algorithm::ES256);
        with_kid.kid = Some(kid.clone());
        with_kid.typ = Some("JWT".to_owned());
        let forged = signed(&accounts, &shop, with_kid.clone(), &claiming_blog);
        assert!(matches!(
            accounts.verify(&forged, NOW),
            Err(AuthError::InvalidToken)
        ));

        // Refused: another audience, a missing exp, alg none, HS256 keyed
        // with the public key, keys pointed at elsewhere, no typ, an
        // unknown kid, a changed payload.
        let mut other_audience = claims.clone();
        other_audience["aud"] = "somebody-else".into();
        let mut no_exp = claims.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        for refused in [&other_audience, &no_exp] {
            let token = signed(&accounts, &shop, with_kid.clone(), refused);
            assert!(matches!(
                accounts.verify(&token, NOW),
                Err(AuthError::InvalidToken)
            ));
        }
        let encode = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
        let none = format!(
            "{}.{}.",
            encode(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid})),
            encode(&claims)
        );
        assert!(matches!(
            accounts.verify(&none, NOW),
            Err(AuthError::InvalidToken)
        ));
        let jwk = accounts.jwks(&shop)["keys"][0].clone();
        let public = [
            &[4u8][..],
            &URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap(),
            &URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap(),
        ]
        .concat();
        for secret in [public.clone(), serde_json::to_vec(&jwk).unwrap()] {
            let mut hs256 = Header::new(Algorithm::HS256);
            hs256.kid = Some(kid.clone());
            hs256.typ = Some("JWT".to_owned());
            let token =
                jsonwebtoken::encode(&hs256, &claims, &EncodingKey::from_secret(&secret).unwrap())
                    .unwrap();
            assert!(matches!(
                accounts.verify(&token, NOW),
                Err(AuthError::InvalidToken)
            ));
        }
        let mut jku = with_kid.clone();
        jku.jku = Some("https://attacker.example/jwks.json".to_owned());
        let mut no_typ = with_kid.clone();
        no_typ.typ = None;
        let mut unknown_kid = with_kid.clone();
        unknown_kid.kid = Some("nobody".to_owned());
        for header in [jku, no_typ, unknown_kid] {
            let token = signed(&accounts, &shop, header, &claims);
            assert!(matches!(
                accounts.verify(&token, NOW),
                Err(AuthError::InvalidToken)
            ));
        }
        let mut parts: Vec<&str> = issued.access_token.split('.').collect();
        let mut richer = claims.clone();
        richer["app_metadata"] = serde_json::json!({"roles": ["admin"]});
        let richer = encode(&richer);
        parts[1] = &richer;
        assert!(matches!(
            accounts.verify(&parts.join("."), NOW),
            Err(AuthError::InvalidToken)
        ));
        // The same token, verified again (from the cache), is still checked
        // for expiry.
        assert!(
            accounts
                .verify(&issued.access_token, NOW + 3_599_000)
                .is_ok()
        );
        assert!(matches!(
            accounts.verify(&issued.access_token, NOW + 3_600_000),
            Err(AuthError::TokenExpired)
        ));
    }

    #[tokio::test]
    async fn a_rotated_key_is_honoured_until_retired_and_survives_a_restart() {
        let (_dir, store, accounts) = accounts().await;
        let shop = shop();
        let old = accounts
            .sign_in_anonymously(&shop, Default::default(), NOW)
            .await
            .unwrap();
        let old_kid = jsonwebtoken::decode_header(&old.access_token)
            .unwrap()
            .kid
            .unwrap();
        let new_kid = accounts.rotate_key(&shop, NOW).await.unwrap();
        let new = accounts
            .sign_in_anonymously(&shop, Default::default(), NOW)
            .await
            .unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new.access_token).unwrap().kid,
            Some(new_kid.clone())
        );
        assert_eq!(accounts.jwks(&shop)["keys"].as_array().unwrap().len(), 2);
        assert!(accounts.verify(&old.access_token, NOW).is_ok());
        // Another node (or a restart) reads the same keys.
        let reopened = Accounts::open(store.clone(), [3; 32], NOW).await.unwrap();
        assert!(reopened.verify(&old.access_token, NOW).is_ok());
        assert!(reopened.verify(&new.access_token, NOW).is_ok());
        assert!(accounts.retire_key(&shop, &old_kid, NOW).await.unwrap());
        assert!(matches!(
            accounts.verify(&old.access_token, NOW),
            Err(AuthError::InvalidToken)
        ));
        assert!(accounts.verify(&new.access_token, NOW).is_ok());
        assert_eq!(accounts.jwks(&shop)["keys"][0]["kid"], new_kid.as_str());
        // Without the server key, the stored keys do not open.
        assert!(Accounts::open(store, [4; 32], NOW).await.is_err());
    }

    #[tokio::test]
    async fn sessions_end_at_once_and_a_replayed_refresh_token_ends_its_session() {
        let (_dir, store, accounts) = accounts().await;
        let shop = shop();
        let password = "a long passphrase";
        let first = accounts
            .sign_up(&shop, "ann@example.com", password, Default::default(), NOW)
            .await
            .unwrap();
        let second = accounts
            .sign_in_with_password(&shop, "ANN@example.com", password, NOW)
            .await
            .unwrap();
        assert_eq!(first.user.id, second.user.id);
        assert!(matches!(
            accounts
                .sign_in_with_password(&shop, "ann@example.com", "a wrong passphrase", NOW)
                .await,
            Err(AccountError::InvalidCredentials)
        ));
        assert!(matches!(
            accounts
                .sign_in_with_password(&shop, "nobody@example.com", password, NOW)
                .await,
            Err(AccountError::InvalidCredentials)
        ));
        assert!(matches!(
            accounts
                .sign_up(&shop, "ann@example.com", password, Default::default(), NOW)
                .await,
            Err(AccountError::EmailTaken)
        ));
        for weak in ["short", "password123", "Iloveyou1"] {
            assert!(
                matches!(
                    accounts
                        .sign_up(&shop, "bob@example.com", weak, Default::default(), NOW)
                        .await,
                    Err(AccountError::WeakPassword(_))
                ),
                "{weak}"
            );
        }

        // Refresh: the token turns; a reuse within the grace is answered;
        // a reuse after it ends the session, and its access tokens with it.
        let turned = accounts
            .refresh(&shop, &first.refresh_token, NOW + 1000)
            .await
            .unwrap();
        assert_eq!(turned.session_id, first.session_id);
        assert_ne!(turned.refresh_token, first.refresh_token);
        assert!(
            accounts
                .refresh(&shop, &first.refresh_token, NOW + 2000)
                .await
                .is_ok()
        );
        assert!(matches!(
            accounts
                .refresh(
                    &shop,
                    &first.refresh_token,
                    NOW + 1000 + REFRESH_GRACE_MS + 1
                )
                .await,
            Err(AccountError::RefreshReused)
        ));
        for token in [&first.access_token, &turned.access_token] {
            assert!(matches!(
                accounts.verify(token, NOW + 20_000),
                Err(AuthError::SessionEnded)
            ));
        }
        assert!(matches!(
            accounts
                .refresh(&shop, &turned.refresh_token, NOW + 20_000)
                .await,
            Err(AccountError::RefreshNotFound)
        ));
        // The other session lives on; another node learns of the ended one.
        let identity = accounts.verify(&second.access_token, NOW + 20_000).unwrap();
        let other_node = Accounts::open(store.clone(), [3; 32], NOW + 20_000)
            .await
            .unwrap();
        assert!(matches!(
            other_node.verify(&turned.access_token, NOW + 20_000),
            Err(AuthError::SessionEnded)
        ));
        assert!(
            other_node
                .verify(&second.access_token, NOW + 20_000)
                .is_ok()
        );

        // A new password ends the other sessions, not the caller's.
        let third = accounts
            .sign_in_with_password(&shop, "ann@example.com", password, NOW + 21_000)
            .await
            .unwrap();
        accounts
            .update_user(
                &identity,
                UserChange {
                    password: Some("another long passphrase".to_owned()),
                    ..Default::default()
                },
                NOW + 22_000,
            )
            .await
            .unwrap();
        assert!(accounts.verify(&second.access_token, NOW + 23_000).is_ok());
        assert!(matches!(
            accounts.verify(&third.access_token, NOW + 23_000),
            Err(AuthError::SessionEnded)
        ));
        assert!(
            accounts
                .sign_in_with_password(
                    &shop,
                    "ann@example.com",
                    "another long passphrase",
                    NOW + 24_000
                )
                .await
                .is_ok()
        );
        // A global logout ends every session.
        accounts
            .logout(&identity, LogoutScope::Global, NOW + 25_000)
            .await
            .unwrap();
        assert!(matches!(
            accounts.verify(&second.access_token, NOW + 25_000),
            Err(AuthError::SessionEnded)
        ));
        assert!(
            store
                .live_sessions(&shop, &identity.user_id)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// Takes every mail and never finishes sending it.
    struct Stuck(tokio::sync::mpsc::UnboundedSender<crate::mail::Mail>);

    #[store::async_trait]
    impl crate::mail::Mailer for Stuck {
        async fn send(
            &self,
            _server: &crate::mail::SmtpServer,
            mail: &crate::mail::Mail,
        ) -> Result<(), String> {
            let _ = self.0.send(mail.clone());
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_full_outbox_refuses_every_address_alike_and_nobody_is_mailed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("wok.db")).unwrap());
        store.create_project(&shop()).await.unwrap();
        let (sent, mut mails) = tokio::sync::mpsc::unbounded_channel();
        let accounts =
            Accounts::open_with_mailer(store.clone(), [3; 32], NOW, Arc::new(Stuck(sent)), 1)
                .await
                .unwrap();
        let settings = AuthSettings {
            smtp: Some(SmtpSettings {
                host: "127.0.0.1".to_owned(),
                port: 25,
                username: None,
                password: None,
                sealed_password: None,
                password_set: false,
                from: "no-reply@shop.example".to_owned(),
                tls: crate::mail::SmtpTls::None,
            }),
            ..AuthSettings::default()
        };
        accounts.set_settings(&shop(), settings).await.unwrap();
        accounts
            .sign_up(
                &shop(),
                "ann@example.com",
                "a long passphrase",
                Default::default(),
                NOW,
            )
            .await
            .unwrap();
        let links = Links {
            auth_url: "http://wok.test/p/shop/auth/v1".to_owned(),
            redirect_to: None,
            code_challenge: None,
        };
        // The outbox holds one mail, the worker a few more being sent:
        // then every request is refused, whoever it is for.
        let mut accepted = 0;
        loop {
            match accounts
                .request_recovery(&shop(), "ann@example.com", &links, NOW)
                .await
            {
                Ok(()) => accepted += 1,
                Err(AccountError::EmailRateLimited(_)) => break,
                Err(other) => panic!("{other}"),
            }
            assert!(accepted <= 8, "the outbox grows");
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            accounts
                .request_recovery(&shop(), "nobody@example.com", &links, NOW)
                .await,
            Err(AccountError::EmailRateLimited(_))
        ));
        let mail = mails.recv().await.unwrap();
        assert_eq!(mail.to, "ann@example.com");
        assert!(
            mail.body
                .contains("http://wok.test/p/shop/auth/v1/verify?token=")
        );
        while let Ok(mail) = mails.try_recv() {
            assert_eq!(mail.to, "ann@example.com", "nobody is mailed");
        }
    }

    #[test]
    fn redirects_land_only_where_allowed() {
        let settings = AuthSettings {
            site_url: Some("https://app.example.com/".to_owned()),
            redirect_urls: vec![
                "https://app.example.com/welcome/*".to_owned(),
                "myapp://callback".to_owned(),
            ],
            ..AuthSettings::default()
        };
        settings.validate().unwrap();
        for allowed in [
            "https://app.example.com/",
            "https://app.example.com/welcome/",
            "https://app.example.com/welcome/a?b=c",
            "myapp://callback",
        ] {
            assert!(settings.allows_redirect(allowed), "{allowed}");
        }
        for refused in [
            "https://app.example.com",
            "https://app.example.com/other",
            "https://app.example.com.evil.com/welcome/",
            "https://evil.com/?https://app.example.com/welcome/",
            "myapp://callback/x",
        ] {
            assert!(!settings.allows_redirect(refused), "{refused}");
        }
        for invalid in [
            "https://app.example.com*",
            "/welcome/*",
            "https://*.example.com/",
            "x",
        ] {
            let settings = AuthSettings {
                redirect_urls: vec![invalid.to_owned()],
                ..AuthSettings::default()
            };
            assert!(settings.validate().is_err(), "{invalid}");
        }
        // Settings stored before mail existed still read.
        let old: AuthSettings = serde_json::from_value(serde_json::json!({
            "signup": false, "anonymous": true, "access_token_lifetime_s": 600,
            "password_min_length": 8, "sign_ins_per_address_per_minute": 60,
            "sign_ins_per_account_per_hour": 30, "new_users_per_address_per_hour": 30,
        }))
        .unwrap();
        assert_eq!(old.email_code_lifetime_s, 600);
        assert!(old.smtp.is_none() && !old.email_confirmation);
    }

    /// The code of `enrolled`'s factor for `now`, shifted by `steps`.
    fn code(enrolled: &mfa::Enrolled, now: UnixMillis, steps: i64) -> String {
        let secret = totp_rs::Secret::try_from_base32(&enrolled.secret).unwrap();
        let totp = totp_rs::Builder::new()
            .with_secret(secret.to_vec())
            .build()
            .unwrap();
        let at = (now / 1000 + steps * mfa::TOTP_STEP_S as i64) as u64;
        totp.generate(at).to_string()
    }

    #[tokio::test]
    async fn a_totp_code_raises_its_session_once_and_refreshes_keep_aal2() {
        let (_dir, store, accounts) = accounts().await;
        let shop = shop();
        let signed_in = accounts
            .sign_up(
                &shop,
                "ann@example.com",
                "a long passphrase",
                Default::default(),
                NOW,
            )
            .await
            .unwrap();
        let identity = accounts.verify(&signed_in.access_token, NOW).unwrap();
        let enrolled = accounts
            .enroll_totp(&identity, Some("phone".to_owned()), None, NOW)
            .await
            .unwrap();
        assert!(
            enrolled
                .uri
                .starts_with("otpauth://totp/shop:ann%40example.com?secret=")
        );
        assert!(
            !store.factors(&shop, &identity.user_id).await.unwrap()[0]
                .sealed_secret
                .windows(enrolled.secret.len())
                .any(|window| window == enrolled.secret.as_bytes()),
            "the secret is sealed"
        );
        let factor_id = enrolled.factor.id.clone();
        assert!(matches!(
            accounts
                .enroll_totp(&identity, Some("phone".to_owned()), None, NOW)
                .await,
            Err(AccountError::FactorNameTaken)
        ));

        // A wrong code, then the right one: aal2, its factor verified.
        let challenge = accounts
            .challenge_factor(&identity, &factor_id, NOW)
            .await
            .unwrap();
        let wrong = format!(
            "{:06}",
            (code(&enrolled, NOW, 0).parse::<u32>().unwrap() + 1) % 1_000_000
        );
        assert!(matches!(
            accounts
                .verify_factor(&identity, &factor_id, &challenge.id, &wrong, NOW)
                .await,
            Err(AccountError::MfaCodeInvalid)
        ));
        let raised = accounts
            .verify_factor(
                &identity,
                &factor_id,
                &challenge.id,
                &code(&enrolled, NOW, 0),
                NOW + 1000,
            )
            .await
            .unwrap();
        assert_eq!(raised.session_id, identity.session_id);
        let claims = claims_of(&raised.access_token);
        assert_eq!(claims["aal"], "aal2");
        assert_eq!(claims["amr"][0]["method"], "totp");
        assert_eq!(claims["amr"][1]["method"], "password");
        assert_eq!(raised.factors[0].status, FactorStatus::Verified);
        let raised_identity = accounts.verify(&raised.access_token, NOW + 1000).unwrap();
        assert_eq!(raised_identity.aal, 2);

        // The same code, through a new challenge: refused, even a step
        // later (the skew still takes it).
        let again = accounts
            .challenge_factor(&identity, &factor_id, NOW + 2000)
            .await
            .unwrap();
        for at in [NOW + 2000, NOW + 31_000] {
            assert!(matches!(
                accounts
                    .verify_factor(
                        &identity,
                        &factor_id,
                        &again.id,
                        &code(&enrolled, NOW, 0),
                        at
                    )
                    .await,
                Err(AccountError::MfaCodeInvalid)
            ));
        }
        // A used challenge takes no other code.
        assert!(matches!(
            accounts
                .verify_factor(
                    &identity,
                    &factor_id,
                    &challenge.id,
                    &code(&enrolled, NOW, 1),
                    NOW + 3000
                )
                .await,
            Err(AccountError::ChallengeExpired)
        ));
        // An expired challenge takes none either.
        let expiring = accounts
            .challenge_factor(&identity, &factor_id, NOW + 4000)
            .await
            .unwrap();
        assert!(matches!(
            accounts
                .verify_factor(
                    &identity,
                    &factor_id,
                    &expiring.id,
                    &code(&enrolled, NOW + 4000 + 300_000, 0),
                    NOW + 4000 + 300_000
                )
                .await,
            Err(AccountError::ChallengeExpired)
        ));

        // Both the old refresh token and the new one refresh at aal2.
        for refresh_token in [&signed_in.refresh_token, &raised.refresh_token] {
            let refreshed = accounts
                .refresh(&shop, refresh_token, NOW + 5000)
                .await
                .unwrap();
            assert_eq!(claims_of(&refreshed.access_token)["aal"], "aal2");
        }
        // Another session of the user is at aal1: it neither enrolls nor
        // unenrolls; the raised one does.
        let other = accounts
            .sign_in_with_password(&shop, "ann@example.com", "a long passphrase", NOW + 6000)
            .await
            .unwrap();
        let other = accounts.verify(&other.access_token, NOW + 6000).unwrap();
        assert_eq!(other.aal, 1);
        assert!(matches!(
            accounts.enroll_totp(&other, None, None, NOW + 6000).await,
            Err(AccountError::InsufficientAal)
        ));
        assert!(matches!(
            accounts.unenroll(&other, &factor_id).await,
            Err(AccountError::InsufficientAal)
        ));
        accounts
            .unenroll(&raised_identity, &factor_id)
            .await
            .unwrap();
        assert!(matches!(
            accounts.unenroll(&raised_identity, &factor_id).await,
            Err(AccountError::FactorNotFound)
        ));
    }

    #[tokio::test]
    async fn a_login_ticket_signs_in_once_within_its_lifetime() {
        let (_dir, _store, accounts) = accounts().await;
        let (shop, blog) = (shop(), ProjectId::new("blog").unwrap());
        use tickets::TicketFor;
        assert!(matches!(
            accounts
                .mint_ticket(&shop, TicketFor::User("nobody"), None, NOW)
                .await,
            Err(AccountError::UserNotFound)
        ));
        assert!(matches!(
            accounts
                .mint_ticket(
                    &shop,
                    TicketFor::Email {
                        email: "dan@example.com",
                        create: false
                    },
                    None,
                    NOW
                )
                .await,
            Err(AccountError::UserNotFound)
        ));
        let minted = accounts
            .mint_ticket(
                &shop,
                TicketFor::Email {
                    email: "Dan@example.com",
                    create: true,
                },
                None,
                NOW,
            )
            .await
            .unwrap();
        assert!(minted.ticket.starts_with(tickets::TICKET_PREFIX));
        assert_eq!(minted.expires_at, NOW + 300_000);
        assert!(minted.user.email_confirmed_at.is_some());
        assert!(matches!(
            accounts
                .sign_in_with_ticket(&blog, &minted.ticket, NOW)
                .await,
            Err(AccountError::TicketInvalid)
        ));
        let issued = accounts
            .sign_in_with_ticket(&shop, &minted.ticket, NOW + 1000)
            .await
            .unwrap();
        assert_eq!(issued.user.id, minted.user.id);
        assert_eq!(
            claims_of(&issued.access_token)["amr"][0]["method"],
            "ticket"
        );
        assert!(matches!(
            accounts
                .sign_in_with_ticket(&shop, &minted.ticket, NOW + 2000)
                .await,
            Err(AccountError::TicketInvalid)
        ));
        // Expired; too long-lived; a banned user's.
        let short = accounts
            .mint_ticket(&shop, TicketFor::User(&minted.user.id), Some(1), NOW)
            .await
            .unwrap();
        assert!(matches!(
            accounts
                .sign_in_with_ticket(&shop, &short.ticket, NOW + 1000)
                .await,
            Err(AccountError::TicketInvalid)
        ));
        assert!(matches!(
            accounts
                .mint_ticket(&shop, TicketFor::User(&minted.user.id), Some(601), NOW)
                .await,
            Err(AccountError::Invalid(_))
        ));
        let banned = accounts
            .mint_ticket(&shop, TicketFor::User(&minted.user.id), None, NOW)
            .await
            .unwrap();
        accounts
            .admin_update_user(
                &shop,
                &minted.user.id,
                AdminChange {
                    ban: Some(Some(std::time::Duration::from_secs(3600))),
                    ..AdminChange::default()
                },
                NOW,
            )
            .await
            .unwrap();
        assert!(matches!(
            accounts
                .sign_in_with_ticket(&shop, &banned.ticket, NOW + 1000)
                .await,
            Err(AccountError::Banned)
        ));
    }

    #[tokio::test]
    async fn an_anonymous_user_becomes_permanent_keeping_its_id() {
        let (_dir, _store, accounts) = accounts().await;
        let shop = shop();
        let anonymous = accounts
            .sign_in_anonymously(&shop, Default::default(), NOW)
            .await
            .unwrap();
        let identity = accounts.verify(&anonymous.access_token, NOW).unwrap();
        assert!(identity.anonymous);
        assert_eq!(identity.claims["is_anonymous"], true);
        let user = accounts
            .update_user(
                &identity,
                UserChange {
                    email: Some("carl@example.com".to_owned()),
                    password: Some("a long passphrase".to_owned()),
                    ..Default::default()
                },
                NOW,
            )
            .await
            .unwrap();
        assert!(!user.anonymous);
        let signed_in = accounts
            .sign_in_with_password(&shop, "carl@example.com", "a long passphrase", NOW)
            .await
            .unwrap();
        assert_eq!(signed_in.user.id, anonymous.user.id);
    }
}
