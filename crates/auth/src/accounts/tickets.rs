//! Login tickets: for apps that already know their user (their own
//! sign-in, a mini-program's), the service side mints a short-lived,
//! single-use ticket for a user, and the app's client trades it for a
//! session (`POST /token?grant_type=ticket`), as CloudBase's custom login
//! does.
//!
//! A ticket is 256 random bits; the store keeps only its SHA-256, bound to
//! its project, and takes it in one statement when it is used, so it works
//! once, on any node. It lives [`TICKET_LIFETIME_S`] unless the minter
//! says otherwise, never more than [`MAX_TICKET_LIFETIME_S`]. Minting
//! makes no user unless asked to (`create` with an email, which makes a
//! confirmed one if the address has none); a banned user's ticket gives
//! no session.
use super::*;
use store::accounts::LoginTicket;

/// How long a ticket lives unless its minter says otherwise, in seconds.
pub const TICKET_LIFETIME_S: i64 = 300;
/// Longest a ticket lives, in seconds.
pub const MAX_TICKET_LIFETIME_S: i64 = 600;
/// What every ticket starts with (secret scanners know it).
pub const TICKET_PREFIX: &str = "wok_tk_";

/// Whom a ticket signs in.
#[derive(Debug, Clone, Copy)]
pub enum TicketFor<'a> {
    /// The user with this id, which must exist.
    User(&'a str),
    /// The user with this email; with `create`, made (confirmed) if the
    /// address has none.
    Email { email: &'a str, create: bool },
}

/// A ticket just minted.
#[derive(Debug, Clone)]
pub struct Minted {
    pub ticket: String,
    pub expires_at: UnixMillis,
    pub user: User,
}

impl Accounts {
    /// Mints a ticket that signs in a user once, within `lifetime_s`
    /// seconds (default [`TICKET_LIFETIME_S`]).
    pub async fn mint_ticket(
        &self,
        project: &ProjectId,
        whom: TicketFor<'_>,
        lifetime_s: Option<i64>,
        now: UnixMillis,
    ) -> Result<Minted, AccountError> {
        let lifetime_s = lifetime_s.unwrap_or(TICKET_LIFETIME_S);
        if !(1..=MAX_TICKET_LIFETIME_S).contains(&lifetime_s) {
            return Err(AccountError::Invalid(format!(
                "a ticket lives from 1 to {MAX_TICKET_LIFETIME_S} seconds"
            )));
        }
        let user = match whom {
            TicketFor::User(id) => self.find_user(project, id).await?,
            TicketFor::Email { email, create } => {
                let email = valid_email(email)?;
                match self.store.user_by_email(project, &email).await? {
                    Some(user) => user,
                    None if create => {
                        let change = AdminChange {
                            email_confirm: Some(true),
                            ..AdminChange::default()
                        };
                        match self.admin_create_user(project, &email, change, now).await {
                            Ok(user) => user,
                            // Made meanwhile by another request.
                            Err(AccountError::EmailTaken) => self
                                .store
                                .user_by_email(project, &email)
                                .await?
                                .ok_or(AccountError::UserNotFound)?,
                            Err(error) => return Err(error),
                        }
                    }
                    None => return Err(AccountError::UserNotFound),
                }
            }
        };
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random number generator");
        let ticket = format!("{TICKET_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        let expires_at = now + lifetime_s * 1000;
        self.store
            .put_login_ticket(&LoginTicket {
                project: project.clone(),
                hash: Sha256::digest(ticket.as_bytes()).into(),
                user_id: user.id.clone(),
                created_at: now,
                expires_at,
            })
            .await?;
        Ok(Minted {
            ticket,
            expires_at,
            user,
        })
    }

    /// `POST /token?grant_type=ticket`: a session for the ticket's user,
    /// once.
    pub async fn sign_in_with_ticket(
        &self,
        project: &ProjectId,
        ticket: &str,
        now: UnixMillis,
    ) -> Result<Issued, AccountError> {
        let hash: [u8; 32] = Sha256::digest(ticket.trim().as_bytes()).into();
        let Some(used) = self.store.use_login_ticket(project, &hash, now).await? else {
            return Err(AccountError::TicketInvalid);
        };
        let Some(mut user) = self.store.user(project, &used.user_id).await? else {
            return Err(AccountError::TicketInvalid);
        };
        if user.banned_until.is_some_and(|until| until > now) {
            return Err(AccountError::Banned);
        }
        user.last_sign_in_at = Some(now);
        self.store.update_user(&user).await?;
        Ok(self.open_session(&user, "ticket", now).await?)
    }
}
