//! Mailed one-time codes: sign-in by email code or magic link, password
//! recovery, confirming a new user's email and a user's new email, and the
//! links the service side makes to send itself.
//!
//! A code has two secrets: six digits to type and a 256-bit token for a
//! link. The store keeps a keyed hash of the digits (HMAC-SHA-256 under a
//! key derived from the server key, bound to project and address) and the
//! SHA-256 of the token, each code lives at most
//! [`MAX_EMAIL_CODE_LIFETIME_S`](super::MAX_EMAIL_CODE_LIFETIME_S), is used
//! once, and dies after [`MAX_CODE_FAILURES`](super::MAX_CODE_FAILURES)
//! wrong codes for its address and flow.
//!
//! Nothing here tells whether an address has a user: a request for a code
//! takes its place in the outbox first (a full outbox refuses everyone),
//! stores a code whether or not there is a user to mail it to (one for
//! nobody is never mailed, and never usable), and answers before any mail
//! is sent. A sign-up for a taken address, with confirmation on, answers a
//! made-up user shaped like a real one after hashing the password all the
//! same.
use super::providers::RedirectOutcome;
use super::*;
use crate::mail::{Mail, Place, SmtpServer};
use store::accounts::{CodeUse, EmailCode, Flow, PendingFlow, PendingKind};

/// Where the links in mails point: the project's auth routes as clients
/// reach them, and where the link lands after (already allowed).
#[derive(Debug, Clone)]
pub struct Links {
    /// `https://wok.example.com/p/PROJECT/auth/v1`.
    pub auth_url: String,
    /// An allowed redirect target ([`Accounts::redirect_target`]).
    pub redirect_to: Option<String>,
    /// The client's PKCE challenge (S256, [`client_code_challenge`]):
    /// following the link then gives it a code, not a session.
    pub code_challenge: Option<String>,
}

/// A code just made, for the service side to send itself.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub flow: Flow,
    /// The six digits.
    pub code: String,
    /// The link's token (what `token_hash` takes).
    pub token: String,
    pub action_link: String,
    pub redirect_to: Option<String>,
}

/// What a sign-up by email answers.
#[derive(Debug)]
pub enum SignedUp {
    /// Signed in at once (confirmation off).
    Session(Box<Issued>),
    /// A user that must confirm its email first (or, for a taken address,
    /// one shaped like it).
    Unconfirmed(Box<User>),
}

/// The `type` of a verification (GoTrue's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyKind {
    /// `email`, `magiclink`, `signup`: a sign-in code or a new user's
    /// confirmation, either.
    Email,
    Recovery,
    EmailChange,
}

impl VerifyKind {
    pub fn parse(text: &str) -> Option<VerifyKind> {
        match text {
            "email" | "magiclink" | "signup" => Some(VerifyKind::Email),
            "recovery" => Some(VerifyKind::Recovery),
            "email_change" => Some(VerifyKind::EmailChange),
            _ => None,
        }
    }

    fn flows(self) -> &'static [Flow] {
        match self {
            VerifyKind::Email => &[Flow::Signup, Flow::MagicLink],
            VerifyKind::Recovery => &[Flow::Recovery],
            VerifyKind::EmailChange => &[Flow::EmailChange],
        }
    }
}

impl Accounts {
    /// Where a link may land: `redirect_to` if the project allows it, else
    /// its site URL (or nowhere). A target it does not allow is refused.
    pub fn redirect_target(
        &self,
        project: &ProjectId,
        redirect_to: Option<&str>,
    ) -> Result<Option<String>, AccountError> {
        let settings = self.settings(project);
        match redirect_to.filter(|url| !url.is_empty()) {
            Some(url) if settings.allows_redirect(url) => Ok(Some(url.to_owned())),
            Some(url) => Err(AccountError::Invalid(format!(
                "redirect_to {url:?} is neither the project's site_url nor in its redirect_urls"
            ))),
            None => Ok(settings.site_url),
        }
    }

    /// A sign-up with an email and a password: signed in at once, or,
    /// with `email_confirmation` on, a user that must confirm its email
    /// with a mailed code first (a taken address gets the same answer).
    pub async fn sign_up_by_email(
        &self,
        project: &ProjectId,
        email: &str,
        password: &str,
        data: serde_json::Map<String, serde_json::Value>,
        links: &Links,
        now: UnixMillis,
    ) -> Result<SignedUp, AccountError> {
        let settings = self.settings(project);
        if !settings.email_confirmation {
            return self
                .sign_up(project, email, password, data, now)
                .await
                .map(|issued| SignedUp::Session(Box::new(issued)));
        }
        if !settings.signup {
            return Err(AccountError::SignupDisabled);
        }
        let email = valid_email(email)?;
        valid_password(password, &settings)?;
        let password_hash = self.hash(password.to_owned()).await?;
        let place = self.place()?;
        let mut user = User {
            password_hash: Some(password_hash),
            ..new_user(project, Some(email.clone()), data, now)
        };
        let mailed_to = match self.store.create_user(&user).await {
            Ok(()) => Some(user.id.clone()),
            Err(StoreError::EmailTaken) => {
                // Confirmed already: nobody is told. Not yet: the owner of
                // the address gets its confirmation again.
                self.store
                    .user_by_email(project, &email)
                    .await?
                    .filter(|taken| taken.email_confirmed_at.is_none())
                    .map(|taken| taken.id)
            }
            Err(error) => return Err(error.into()),
        };
        self.mail_code(
            project,
            place,
            &settings,
            Flow::Signup,
            &email,
            mailed_to.as_deref(),
            links,
            now,
        )
        .await?;
        // The made-up answer for a taken address is the new user it would
        // have been.
        user.password_hash = None;
        Ok(SignedUp::Unconfirmed(Box::new(user)))
    }

    /// `POST /otp`: mails a sign-in code and link. An unknown address gets
    /// a new user when `create_user` (and sign-ups) allow, else the same
    /// answer and nothing mailed.
    pub async fn request_sign_in_code(
        &self,
        project: &ProjectId,
        email: &str,
        create_user: bool,
        data: serde_json::Map<String, serde_json::Value>,
        links: &Links,
        now: UnixMillis,
    ) -> Result<(), AccountError> {
        let settings = self.settings(project);
        let email = valid_email(email)?;
        let place = self.place()?;
        let mut user = self.store.user_by_email(project, &email).await?;
        if user.is_none() && create_user {
            if !settings.signup {
                return Err(AccountError::SignupDisabled);
            }
            let new = new_user(project, Some(email.clone()), data, now);
            user = match self.store.create_user(&new).await {
                Ok(()) => Some(new),
                // Made meanwhile by another request.
                Err(StoreError::EmailTaken) => self.store.user_by_email(project, &email).await?,
                Err(error) => return Err(error.into()),
            };
        }
        let user_id = user.map(|user| user.id);
        self.mail_code(
            project,
            place,
            &settings,
            Flow::MagicLink,
            &email,
            user_id.as_deref(),
            links,
            now,
        )
        .await
    }

    /// `POST /recover`: mails a code and link that sign in to set a new
    /// password; the same answer for an unknown address.
    pub async fn request_recovery(
        &self,
        project: &ProjectId,
        email: &str,
        links: &Links,
        now: UnixMillis,
    ) -> Result<(), AccountError> {
        let settings = self.settings(project);
        let email = valid_email(email)?;
        let place = self.place()?;
        let user_id = self
            .store
            .user_by_email(project, &email)
            .await?
            .map(|user| user.id);
        self.mail_code(
            project,
            place,
            &settings,
            Flow::Recovery,
            &email,
            user_id.as_deref(),
            links,
            now,
        )
        .await
    }

    /// `POST /resend`: a new confirmation for an unconfirmed user
    /// ([`Flow::Signup`], by its email) or for a pending email change
    /// ([`Flow::EmailChange`], by the new address); the same answer when
    /// there is none.
    pub async fn resend(
        &self,
        project: &ProjectId,
        email: &str,
        flow: Flow,
        links: &Links,
        now: UnixMillis,
    ) -> Result<(), AccountError> {
        let settings = self.settings(project);
        let email = valid_email(email)?;
        let place = self.place()?;
        let user_id = match flow {
            Flow::EmailChange => self
                .store
                .email_code(project, Flow::EmailChange, &email, now)
                .await?
                .and_then(|pending| pending.user_id),
            _ => self
                .store
                .user_by_email(project, &email)
                .await?
                .filter(|user| user.email_confirmed_at.is_none())
                .map(|user| user.id),
        };
        self.mail_code(
            project,
            place,
            &settings,
            flow,
            &email,
            user_id.as_deref(),
            links,
            now,
        )
        .await
    }

    /// Changes a user's email, password or data, as
    /// [`Accounts::update_user`]; with `email_confirmation` on, a new email
    /// counts only once confirmed with a code mailed to it (the user and
    /// the address awaiting confirmation).
    pub async fn update_user_confirming(
        &self,
        identity: &Identity,
        mut change: UserChange,
        links: &Links,
        now: UnixMillis,
    ) -> Result<(User, Option<String>), AccountError> {
        let settings = self.settings(&identity.project);
        let current = self.user(identity).await?;
        let new_email = match change.email.take() {
            Some(email) if settings.email_confirmation => {
                let email = valid_email(&email)?;
                (current.email.as_deref() != Some(email.as_str())).then_some(email)
            }
            other => {
                change.email = other;
                None
            }
        };
        let Some(new_email) = new_email else {
            return Ok((self.update_user(identity, change, now).await?, None));
        };
        if self
            .store
            .user_by_email(&identity.project, &new_email)
            .await?
            .is_some()
        {
            return Err(AccountError::EmailTaken);
        }
        let place = self.place()?;
        let user = if change.password.is_some() || change.data.is_some() {
            self.update_user(identity, change, now).await?
        } else {
            current
        };
        self.mail_code(
            &identity.project,
            place,
            &settings,
            Flow::EmailChange,
            &new_email,
            Some(&user.id),
            links,
            now,
        )
        .await?;
        Ok((user, Some(new_email)))
    }

    /// `POST /admin/generate_link`: a code and link the service side sends
    /// itself (nothing is mailed). `signup` makes an unconfirmed user with
    /// a password, `magiclink` signs in (making the user if there is none),
    /// `recovery` signs an existing user in, `email_change_new` confirms
    /// `new_email` for an existing user.
    #[allow(clippy::too_many_arguments)]
    pub async fn generate_link(
        &self,
        project: &ProjectId,
        kind: &str,
        email: &str,
        password: Option<&str>,
        data: serde_json::Map<String, serde_json::Value>,
        new_email: Option<&str>,
        links: &Links,
        now: UnixMillis,
    ) -> Result<(User, NewCode), AccountError> {
        let settings = self.settings(project);
        let email = valid_email(email)?;
        let existing = self.store.user_by_email(project, &email).await?;
        let fresh = |password_hash: Option<String>, data| User {
            password_hash,
            ..new_user(project, Some(email.clone()), data, now)
        };
        let (user, flow, address) = match kind {
            "signup" => {
                let Some(password) = password else {
                    return Err(AccountError::Invalid(
                        "a signup link needs a password".to_owned(),
                    ));
                };
                if existing.is_some() {
                    return Err(AccountError::EmailTaken);
                }
                valid_password(password, &settings)?;
                let user = fresh(Some(self.hash(password.to_owned()).await?), data);
                self.create(&user).await?;
                (user, Flow::Signup, email.clone())
            }
            "magiclink" => match existing {
                Some(user) => (user, Flow::MagicLink, email.clone()),
                None => {
                    let user = fresh(None, data);
                    self.create(&user).await?;
                    (user, Flow::MagicLink, email.clone())
                }
            },
            "recovery" => (
                existing.ok_or(AccountError::UserNotFound)?,
                Flow::Recovery,
                email.clone(),
            ),
            "email_change_new" => {
                let user = existing.ok_or(AccountError::UserNotFound)?;
                let Some(new_email) = new_email else {
                    return Err(AccountError::Invalid(
                        "an email change link needs new_email".to_owned(),
                    ));
                };
                (user, Flow::EmailChange, valid_email(new_email)?)
            }
            other => {
                return Err(AccountError::Invalid(format!(
                    "unsupported link type {other:?}: signup, magiclink, recovery or email_change_new"
                )));
            }
        };
        let made = self
            .new_code(
                project,
                &settings,
                flow,
                &address,
                Some(&user.id),
                links,
                now,
            )
            .await?;
        Ok((user, made))
    }

    /// Signs in with a mailed code for `email` (`POST /verify` with
    /// `token` and `email`).
    pub async fn verify_code(
        &self,
        project: &ProjectId,
        email: &str,
        code: &str,
        kind: VerifyKind,
        now: UnixMillis,
    ) -> Result<Issued, AccountError> {
        let email = email.trim().to_lowercase();
        let hash = self.code_hash(project, &email, code.trim());
        match self
            .store
            .use_email_code(project, &email, kind.flows(), &hash, now, MAX_CODE_FAILURES)
            .await?
        {
            CodeUse::Used(used) => self.complete(used, "otp", now).await,
            CodeUse::Wrong | CodeUse::None => Err(AccountError::CodeInvalid),
        }
    }

    /// A mailed link followed (`GET /verify`): a code for the client that
    /// asked for the link with a PKCE challenge, else a session.
    pub async fn follow_link(
        &self,
        project: &ProjectId,
        token: &str,
        kind: VerifyKind,
        now: UnixMillis,
    ) -> Result<RedirectOutcome, AccountError> {
        let hash: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let Some(used) = self
            .store
            .use_email_link(project, kind.flows(), &hash, now, MAX_CODE_FAILURES)
            .await?
        else {
            return Err(AccountError::CodeInvalid);
        };
        let (user, method) = self.confirm(used, "magiclink", now).await?;
        match self
            .store
            .take_pending_flow(project, PendingKind::LinkChallenge, &hash, now)
            .await?
        {
            Some(flow) => {
                let challenge = flow
                    .data
                    .get("code_challenge")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| StoreError::Corrupt("a link's challenge".to_owned()))?;
                Ok(RedirectOutcome::Code(
                    self.mint_auth_code(project, &user, challenge, method, None, now)
                        .await?,
                ))
            }
            None => Ok(RedirectOutcome::Session(Box::new(
                self.open_session(&user, method, now).await?,
            ))),
        }
    }

    /// Signs in with a link's token (`token_hash`, or `GET /verify`).
    pub async fn verify_link(
        &self,
        project: &ProjectId,
        token: &str,
        kind: VerifyKind,
        now: UnixMillis,
    ) -> Result<Issued, AccountError> {
        let hash: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        match self
            .store
            .use_email_link(project, kind.flows(), &hash, now, MAX_CODE_FAILURES)
            .await?
        {
            Some(used) => self.complete(used, "magiclink", now).await,
            None => Err(AccountError::CodeInvalid),
        }
    }

    /// What a used code does: the inbox is proven, so the email counts as
    /// confirmed (a new email becomes the user's), and the user signs in.
    async fn complete(
        &self,
        used: EmailCode,
        method: &'static str,
        now: UnixMillis,
    ) -> Result<Issued, AccountError> {
        let (user, method) = self.confirm(used, method, now).await?;
        Ok(self.open_session(&user, method, now).await?)
    }

    /// The user a used code proves, its email confirmed, and how it signed
    /// in.
    async fn confirm(
        &self,
        used: EmailCode,
        method: &'static str,
        now: UnixMillis,
    ) -> Result<(User, &'static str), AccountError> {
        let Some(user_id) = &used.user_id else {
            return Err(AccountError::CodeInvalid);
        };
        let Some(mut user) = self.store.user(&used.project, user_id).await? else {
            return Err(AccountError::CodeInvalid);
        };
        if user.banned_until.is_some_and(|until| until > now) {
            return Err(AccountError::Banned);
        }
        let method = match used.flow {
            Flow::Signup => "email/signup",
            Flow::MagicLink => method,
            Flow::Recovery => "recovery",
            Flow::EmailChange => {
                if user.anonymous {
                    user.anonymous = false;
                    user.app_metadata =
                        serde_json::json!({"provider": "email", "providers": ["email"]});
                }
                user.email = Some(used.email.clone());
                user.email_confirmed_at = Some(now);
                "email_change"
            }
        };
        if user.email.as_deref() != Some(used.email.as_str()) {
            // The user's email changed since the code was mailed.
            return Err(AccountError::CodeInvalid);
        }
        user.email_confirmed_at.get_or_insert(now);
        user.last_sign_in_at = Some(now);
        user.updated_at = now;
        match self.store.update_user(&user).await {
            Ok(true) => {}
            Ok(false) => return Err(AccountError::CodeInvalid),
            Err(StoreError::EmailTaken) => return Err(AccountError::EmailTaken),
            Err(error) => return Err(error.into()),
        }
        Ok((user, method))
    }

    /// A place in the outbox, or the answer for everyone while it is full.
    fn place(&self) -> Result<Place, AccountError> {
        self.outbox.reserve().ok_or(AccountError::EmailRateLimited(
            std::time::Duration::from_secs(60),
        ))
    }

    async fn create(&self, user: &User) -> Result<(), AccountError> {
        match self.store.create_user(user).await {
            Err(StoreError::EmailTaken) => Err(AccountError::EmailTaken),
            other => Ok(other?),
        }
    }

    /// Stores a new code for `email` in `flow` and mails it if it is for
    /// a user and the project has an SMTP server (else it only takes the
    /// same work).
    #[allow(clippy::too_many_arguments)]
    async fn mail_code(
        &self,
        project: &ProjectId,
        place: Place,
        settings: &AuthSettings,
        flow: Flow,
        email: &str,
        user_id: Option<&str>,
        links: &Links,
        now: UnixMillis,
    ) -> Result<(), AccountError> {
        let made = self
            .new_code(project, settings, flow, email, user_id, links, now)
            .await?;
        if user_id.is_none() {
            return Ok(());
        }
        let Some(server) = settings.smtp.as_ref().map(|smtp| SmtpServer {
            host: smtp.host.clone(),
            port: smtp.port,
            username: smtp.username.clone(),
            password: smtp.sealed_password.as_ref().and_then(|sealed| {
                self.open_secret(&smtp_sealing_context(project), sealed)
                    .and_then(|bytes| String::from_utf8(bytes).ok())
            }),
            from: smtp.from.clone(),
            tls: smtp.tls,
        }) else {
            tracing::warn!(
                project = %project,
                "the project has no SMTP server: a {} code was not mailed (the service side can make links with /admin/generate_link)",
                flow.as_str()
            );
            return Ok(());
        };
        let minutes = (settings.email_code_lifetime_s + 59) / 60;
        let (subject, what) = match flow {
            Flow::Signup => ("Confirm your email", "confirm your email"),
            Flow::MagicLink => ("Your sign-in code", "sign in"),
            Flow::Recovery => ("Reset your password", "sign in and set a new password"),
            Flow::EmailChange => ("Confirm your new email", "confirm your new email"),
        };
        let body = format!(
            "To {what}, enter this code:\n\n    {}\n\nor follow this link:\n\n{}\n\n\
             The code and the link work once, for {minutes} minute{}.\n\
             If you did not ask for them, ignore this email.\n",
            made.code,
            made.action_link,
            if minutes == 1 { "" } else { "s" },
        );
        place.send(
            project,
            server,
            Mail {
                to: email.to_owned(),
                subject: subject.to_owned(),
                body,
            },
        );
        Ok(())
    }

    /// Makes and stores a code: its secrets and link.
    #[allow(clippy::too_many_arguments)]
    async fn new_code(
        &self,
        project: &ProjectId,
        settings: &AuthSettings,
        flow: Flow,
        email: &str,
        user_id: Option<&str>,
        links: &Links,
        now: UnixMillis,
    ) -> Result<NewCode, AccountError> {
        let code = six_digits();
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random number generator");
        let token = hex::encode(secret);
        let expires_at = now
            + settings
                .email_code_lifetime_s
                .clamp(1, MAX_EMAIL_CODE_LIFETIME_S)
                * 1000;
        if let Some(challenge) = &links.code_challenge {
            // Stored whether or not the address has a user: the same work.
            self.store
                .put_pending_flow(&PendingFlow {
                    project: project.clone(),
                    kind: PendingKind::LinkChallenge,
                    hash: Sha256::digest(token.as_bytes()).into(),
                    data: serde_json::json!({ "code_challenge": challenge }),
                    created_at: now,
                    expires_at,
                })
                .await?;
        }
        self.store
            .put_email_code(&EmailCode {
                project: project.clone(),
                flow,
                email: email.to_owned(),
                user_id: user_id.map(str::to_owned),
                code_hash: self.code_hash(project, email, &code),
                link_hash: Sha256::digest(token.as_bytes()).into(),
                created_at: now,
                expires_at,
            })
            .await?;
        let mut action_link = format!(
            "{}/verify?token={token}&type={}",
            links.auth_url,
            flow.as_str()
        );
        if let Some(redirect_to) = &links.redirect_to {
            action_link.push_str("&redirect_to=");
            action_link.push_str(&percent_encode(redirect_to));
        }
        Ok(NewCode {
            flow,
            code,
            token,
            action_link,
            redirect_to: links.redirect_to.clone(),
        })
    }

    /// The keyed hash of a code, bound to its project and address.
    fn code_hash(&self, project: &ProjectId, email: &str, code: &str) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&self.code_key)
            .expect("HMAC takes keys of any length");
        for part in [project.as_str(), email, code] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

/// Six random digits, uniformly.
fn six_digits() -> String {
    loop {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).expect("the OS random number generator");
        let number = u32::from_be_bytes(bytes);
        // Refuse the top of the range that would favour low codes.
        if number < u32::MAX - u32::MAX % 1_000_000 {
            return format!("{:06}", number % 1_000_000);
        }
    }
}

/// `text` for a query value: all but unreserved characters escaped.
pub(super) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
