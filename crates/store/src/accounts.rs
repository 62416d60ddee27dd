//! The accounts contract: a project's app users, their sessions and
//! refresh tokens, and the project's token signing keys.
//!
//! Users belong to one project; an email is unique within it (stored as
//! given, compared lowercased by the caller, which lowercases it first).
//! A session is live until it ends (logout, ban, delete, password change,
//! a replayed refresh token); an ended session stays, with its end time,
//! so that every node can refuse its access tokens until they expire
//! ([`AccountStore::ended_sessions`]). Refresh tokens are stored as their
//! SHA-256 only, and each is used once: [`AccountStore::refresh`] is the
//! whole rotation, in one transaction.
//!
//! One-time email codes ([`EmailCode`]) prove that someone reads an inbox:
//! each holds only hashes of its two secrets (a short code to type, a long
//! token for a link), is bound to its project, flow and address, is used
//! once ([`AccountStore::use_email_code`] and
//! [`AccountStore::use_email_link`] take it in one statement), and dies
//! after a few wrong codes for its address and flow. A project has at most
//! one outstanding code per flow and address: a new one replaces it.
//!
//! Second factors ([`Factor`], TOTP) hold their secret sealed by the
//! caller, and the last time step a code was accepted for: a code is
//! accepted only for a later step ([`AccountStore::use_totp_step`], one
//! transaction that also uses up its [`Challenge`]), so no code is ever
//! accepted twice, whichever node sees it. A challenge lives a few minutes
//! and dies after a few wrong codes.
//!
//! Login tickets ([`LoginTicket`]) are minted by the service side for a
//! user it already knows; only their SHA-256 is kept, and each is used once
//! ([`AccountStore::use_login_ticket`] takes it in one statement).
//!
//! Linked identities ([`LinkedIdentity`]) are a user's accounts at external
//! OpenID Connect providers: one user per issuer and subject in a project
//! (a second link of the same pair is refused). Pending flows
//! ([`PendingFlow`]) are the short-lived, single-use steps of a sign-in
//! that crosses a redirect (a provider's `state`, an authorization code
//! bound to a PKCE challenge): kept by the SHA-256 of their secret with a
//! JSON document the accounts service defines, taken once in one
//! statement, and forgotten at expiry.
use crate::StoreError;
use domain::{ProjectId, UnixMillis};

/// An app user of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub project: ProjectId,
    /// A UUID, given by the caller.
    pub id: String,
    /// Lowercased; unique in the project.
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The PHC string of the password's hash (argon2id).
    pub password_hash: Option<String>,
    pub email_confirmed_at: Option<UnixMillis>,
    /// Signed in anonymously and not yet given an email.
    pub anonymous: bool,
    pub banned_until: Option<UnixMillis>,
    /// Set by the project's service side only.
    pub app_metadata: serde_json::Value,
    /// Set by the user.
    pub user_metadata: serde_json::Value,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub last_sign_in_at: Option<UnixMillis>,
}

/// A signed-in session of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub project: ProjectId,
    /// A UUID, given by the caller.
    pub id: String,
    pub user_id: String,
    pub created_at: UnixMillis,
    /// When its refresh token last turned.
    pub refreshed_at: UnixMillis,
    /// Authenticator assurance level: 1, or 2 after a second factor.
    pub aal: u8,
    pub ended_at: Option<UnixMillis>,
}

/// Which live sessions of a user to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending<'a> {
    /// This one.
    One(&'a str),
    /// Every one.
    All,
    /// Every one but this.
    Others(&'a str),
}

/// What [`AccountStore::refresh`] did with a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// The token was the newest of its session: it is used up, and the new
    /// one stands in its place.
    Rotated(Session),
    /// The token had been used less than the grace ago (a client that
    /// lost the answer, two tabs at once): the new one stands too.
    Again(Session),
    /// The token had been used before the grace: someone replays it. The
    /// whole session is ended now.
    Replayed { session_id: String },
    /// No such token, or its session has ended.
    Refused,
}

/// One ES256 key that signs a project's access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub project: ProjectId,
    /// The `kid` of its tokens.
    pub kid: String,
    /// The PKCS#8 private key, sealed by the caller.
    pub sealed_private: Vec<u8>,
    pub created_at: UnixMillis,
    /// When it stopped being honoured (its tokens refused).
    pub retired_at: Option<UnixMillis>,
}

/// What a one-time email code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    /// Confirms a new user's email.
    Signup,
    /// Signs in (a magic link, or an email one-time code).
    MagicLink,
    /// Signs in to set a new password.
    Recovery,
    /// Confirms a user's new email, which becomes its email.
    EmailChange,
}

impl Flow {
    pub const ALL: [Flow; 4] = [
        Flow::Signup,
        Flow::MagicLink,
        Flow::Recovery,
        Flow::EmailChange,
    ];

    /// Its stored name (GoTrue's verification type).
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Signup => "signup",
            Flow::MagicLink => "magiclink",
            Flow::Recovery => "recovery",
            Flow::EmailChange => "email_change",
        }
    }

    pub fn from_stored(text: &str) -> Option<Flow> {
        Flow::ALL.into_iter().find(|flow| flow.as_str() == text)
    }
}

/// A one-time email code: what was mailed, as hashes only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailCode {
    pub project: ProjectId,
    pub flow: Flow,
    /// The (lowercased) address it was sent to: the user's email, or its
    /// new one for [`Flow::EmailChange`].
    pub email: String,
    /// The user it is for; `None` for a code made for an address nobody
    /// has (the same work as for one somebody has, and never usable).
    pub user_id: Option<String>,
    /// A keyed hash of the short code.
    pub code_hash: [u8; 32],
    /// The SHA-256 of the link's token.
    pub link_hash: [u8; 32],
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// What [`AccountStore::use_email_code`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeUse {
    /// The code was right: it is used up.
    Used(EmailCode),
    /// The code was wrong: one more failure for the outstanding codes of
    /// the address and flows, which die at the limit.
    Wrong,
    /// No live code for the address and flows.
    None,
}

/// Whether a second factor has been proven yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorStatus {
    /// Enrolled, no code accepted yet: it does not count.
    Unverified,
    /// A code was accepted once: it raises sessions to `aal2`.
    Verified,
}

impl FactorStatus {
    /// Its stored name (GoTrue's).
    pub fn as_str(self) -> &'static str {
        match self {
            FactorStatus::Unverified => "unverified",
            FactorStatus::Verified => "verified",
        }
    }

    pub fn from_stored(text: &str) -> Option<FactorStatus> {
        [FactorStatus::Unverified, FactorStatus::Verified]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// A user's second factor (a TOTP authenticator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub project: ProjectId,
    /// A UUID, given by the caller.
    pub id: String,
    pub user_id: String,
    /// `totp`.
    pub factor_type: String,
    pub friendly_name: Option<String>,
    /// The shared secret, sealed by the caller.
    pub sealed_secret: Vec<u8>,
    pub status: FactorStatus,
    /// The time step a code was last accepted for: only later ones are.
    pub last_used_step: Option<i64>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A challenge of a factor: what a code is checked against, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub project: ProjectId,
    /// A UUID, given by the caller.
    pub id: String,
    pub factor_id: String,
    pub user_id: String,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// What [`AccountStore::use_totp_step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepUse {
    /// The step was later than any accepted before: the factor (verified
    /// now) remembers it, and the challenge is used up.
    Used(Factor),
    /// The step was accepted before (a replayed code): refused, and one
    /// more failure for the challenge.
    Replayed,
    /// No live challenge of that id for that factor.
    NoChallenge,
}

/// A login ticket the service side minted for a user: its hash only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginTicket {
    pub project: ProjectId,
    /// The SHA-256 of the ticket.
    pub hash: [u8; 32],
    pub user_id: String,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// A user's account at an external OpenID Connect provider.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedIdentity {
    pub project: ProjectId,
    /// A UUID, given by the caller.
    pub id: String,
    pub user_id: String,
    /// The project's name for the provider (`google`, `corp`).
    pub provider: String,
    /// The provider's issuer URL; with `subject`, unique in the project.
    pub issuer: String,
    /// The `sub` of the provider's ID tokens.
    pub subject: String,
    /// The email the provider said, lowercased (not necessarily the user's).
    pub email: Option<String>,
    /// The claims shown as GoTrue's `identity_data`.
    pub data: serde_json::Value,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub last_sign_in_at: Option<UnixMillis>,
}

/// What a [`PendingFlow`] is a step of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PendingKind {
    /// A sign-in sent to an external provider, waiting for its callback
    /// (keyed by the `state` it carries).
    ProviderState,
    /// An authorization code given to a client, waiting to be traded for
    /// a session with its PKCE verifier.
    AuthCode,
    /// The PKCE challenge of a client that asked for a mailed link (keyed
    /// by the link's token): following the link gives that client a code.
    LinkChallenge,
}

impl PendingKind {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingKind::ProviderState => "provider_state",
            PendingKind::AuthCode => "auth_code",
            PendingKind::LinkChallenge => "link_challenge",
        }
    }

    pub fn from_stored(text: &str) -> Option<PendingKind> {
        [
            PendingKind::ProviderState,
            PendingKind::AuthCode,
            PendingKind::LinkChallenge,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// A single-use step of a sign-in that crosses a redirect.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingFlow {
    pub project: ProjectId,
    pub kind: PendingKind,
    /// The SHA-256 of its secret (the `state`, the code).
    pub hash: [u8; 32],
    /// What the accounts service keeps for the next step.
    pub data: serde_json::Value,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
}

#[async_trait::async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Stores a new user. An email already taken in the project is
    /// refused with [`StoreError::EmailTaken`].
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    async fn user(&self, project: &ProjectId, id: &str) -> Result<Option<User>, StoreError>;
    /// The user with this (lowercased) email.
    async fn user_by_email(
        &self,
        project: &ProjectId,
        email: &str,
    ) -> Result<Option<User>, StoreError>;
    /// Replaces a user's fields (found by project and id); whether there
    /// was one. An email taken by another user is refused with
    /// [`StoreError::EmailTaken`].
    async fn update_user(&self, user: &User) -> Result<bool, StoreError>;
    /// Deletes a user, ending its live sessions and forgetting its
    /// factors, their challenges, its login tickets and its linked
    /// identities; the ids of the
    /// sessions it ended, or `None` if there was no such user.
    async fn delete_user(
        &self,
        project: &ProjectId,
        id: &str,
        now: UnixMillis,
    ) -> Result<Option<Vec<String>>, StoreError>;
    /// The project's users ordered by id, skipping `offset`, at most
    /// `limit`.
    async fn users(
        &self,
        project: &ProjectId,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<User>, StoreError>;
    /// How many users the project has.
    async fn count_users(&self, project: &ProjectId) -> Result<u64, StoreError>;

    /// Stores a new live session with its first refresh token (its
    /// SHA-256).
    async fn create_session(&self, session: &Session, refresh: &[u8; 32])
    -> Result<(), StoreError>;
    async fn session(&self, project: &ProjectId, id: &str) -> Result<Option<Session>, StoreError>;
    /// A user's live sessions, oldest first.
    async fn live_sessions(
        &self,
        project: &ProjectId,
        user_id: &str,
    ) -> Result<Vec<Session>, StoreError>;
    /// Uses the refresh token `used` (its SHA-256) and stores `next` in
    /// its place, in one transaction (see [`Refreshed`]).
    async fn refresh(
        &self,
        project: &ProjectId,
        used: &[u8; 32],
        next: &[u8; 32],
        now: UnixMillis,
        grace_ms: i64,
    ) -> Result<Refreshed, StoreError>;
    /// Adds a refresh token (its SHA-256) to a live session, beside those
    /// it has; whether it was live.
    async fn add_refresh_token(
        &self,
        project: &ProjectId,
        session_id: &str,
        refresh: &[u8; 32],
        now: UnixMillis,
    ) -> Result<bool, StoreError>;
    /// Sets a live session's assurance level; whether it was live.
    async fn set_session_aal(
        &self,
        project: &ProjectId,
        id: &str,
        aal: u8,
    ) -> Result<bool, StoreError>;
    /// Ends live sessions of a user; the ids of those it ended.
    async fn end_sessions(
        &self,
        project: &ProjectId,
        user_id: &str,
        which: Ending<'_>,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError>;
    /// The sessions of every project that ended at `since` or later (so
    /// that their access tokens, still unexpired, are refused).
    async fn ended_sessions(
        &self,
        since: UnixMillis,
    ) -> Result<Vec<(ProjectId, String, UnixMillis)>, StoreError>;

    /// Stores a project's new signing key.
    async fn add_signing_key(&self, key: &SigningKey) -> Result<(), StoreError>;
    /// Retires a key; whether it was honoured until now.
    async fn retire_signing_key(
        &self,
        project: &ProjectId,
        kid: &str,
        now: UnixMillis,
    ) -> Result<bool, StoreError>;
    /// The signing keys of every project, retired ones included, oldest
    /// first.
    async fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError>;

    /// Replaces a project's auth settings (a JSON document the accounts
    /// service defines).
    async fn set_auth_settings(
        &self,
        project: &ProjectId,
        settings: &serde_json::Value,
    ) -> Result<(), StoreError>;
    /// The auth settings of every project that has any.
    async fn auth_settings(&self) -> Result<Vec<(ProjectId, serde_json::Value)>, StoreError>;

    /// Stores a new one-time code, replacing the outstanding one of its
    /// project, flow and address; forgets the project's expired codes.
    async fn put_email_code(&self, code: &EmailCode) -> Result<(), StoreError>;
    /// Uses the live code of `email` in one of `flows` whose code hash is
    /// `code_hash`, at once (two uses of one code: one wins). A wrong code
    /// counts a failure against every live code of the address in those
    /// flows; one with `max_failures` is dead.
    async fn use_email_code(
        &self,
        project: &ProjectId,
        email: &str,
        flows: &[Flow],
        code_hash: &[u8; 32],
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<CodeUse, StoreError>;
    /// Uses the live code of one of `flows` whose link token hashes to
    /// `link_hash`, at once, if it has not died of failures.
    async fn use_email_link(
        &self,
        project: &ProjectId,
        flows: &[Flow],
        link_hash: &[u8; 32],
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<Option<EmailCode>, StoreError>;
    /// The live code of a project, flow and address, if there is one.
    async fn email_code(
        &self,
        project: &ProjectId,
        flow: Flow,
        email: &str,
        now: UnixMillis,
    ) -> Result<Option<EmailCode>, StoreError>;

    /// Stores a new factor.
    async fn create_factor(&self, factor: &Factor) -> Result<(), StoreError>;
    /// A user's factors, oldest first.
    async fn factors(&self, project: &ProjectId, user_id: &str) -> Result<Vec<Factor>, StoreError>;
    /// Deletes a user's factor and its challenges; whether it was there.
    async fn delete_factor(
        &self,
        project: &ProjectId,
        user_id: &str,
        id: &str,
    ) -> Result<bool, StoreError>;
    /// Stores a new challenge; forgets the project's expired ones.
    async fn create_challenge(&self, challenge: &Challenge) -> Result<(), StoreError>;
    /// A live challenge: unexpired, used by no code, and short of
    /// `max_failures` wrong ones.
    async fn challenge(
        &self,
        project: &ProjectId,
        id: &str,
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<Option<Challenge>, StoreError>;
    /// Counts a wrong code against a live challenge, which dies at
    /// `max_failures`; whether it was live.
    async fn fail_challenge(
        &self,
        project: &ProjectId,
        id: &str,
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<bool, StoreError>;
    /// Accepts a code of time step `step` for a factor through one of its
    /// live challenges, in one transaction: only if `step` is later than
    /// the factor's last used step (see [`StepUse`]). Two uses of one step
    /// at once: one wins.
    #[allow(clippy::too_many_arguments)]
    async fn use_totp_step(
        &self,
        project: &ProjectId,
        factor_id: &str,
        challenge_id: &str,
        step: i64,
        now: UnixMillis,
        max_failures: u32,
    ) -> Result<StepUse, StoreError>;

    /// Stores a new login ticket; forgets the project's expired ones.
    async fn put_login_ticket(&self, ticket: &LoginTicket) -> Result<(), StoreError>;
    /// Uses the live ticket of the project with this hash, at once (two
    /// uses of one ticket: one wins).
    async fn use_login_ticket(
        &self,
        project: &ProjectId,
        hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<Option<LoginTicket>, StoreError>;

    /// Stores a new user and its first linked identity, in one
    /// transaction. `Ok(false)`, and nothing stored, if the identity's
    /// issuer and subject are linked already in the project; an email
    /// already taken is refused with [`StoreError::EmailTaken`].
    async fn create_user_with_identity(
        &self,
        user: &User,
        identity: &LinkedIdentity,
    ) -> Result<bool, StoreError>;
    /// The identity of an issuer and subject in a project.
    async fn linked_identity(
        &self,
        project: &ProjectId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<LinkedIdentity>, StoreError>;
    /// A user's linked identities, oldest first.
    async fn linked_identities(
        &self,
        project: &ProjectId,
        user_id: &str,
    ) -> Result<Vec<LinkedIdentity>, StoreError>;
    /// Links an identity to an existing user. `Ok(false)`, and nothing
    /// stored, if its issuer and subject are linked already in the
    /// project (to this user or another).
    async fn create_linked_identity(&self, identity: &LinkedIdentity) -> Result<bool, StoreError>;
    /// Unlinks one of a user's identities; whether it was there.
    async fn delete_linked_identity(
        &self,
        project: &ProjectId,
        user_id: &str,
        id: &str,
    ) -> Result<bool, StoreError>;
    /// Replaces an identity's email, data, `updated_at` and
    /// `last_sign_in_at` (found by project and id); whether there was one.
    async fn update_linked_identity(&self, identity: &LinkedIdentity) -> Result<bool, StoreError>;

    /// Stores a pending flow; forgets the project's expired ones.
    async fn put_pending_flow(&self, flow: &PendingFlow) -> Result<(), StoreError>;
    /// Takes the live pending flow of a project, kind and hash, at once
    /// (two takes of one: one wins); an expired one is never given.
    async fn take_pending_flow(
        &self,
        project: &ProjectId,
        kind: PendingKind,
        hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<Option<PendingFlow>, StoreError>;
}
