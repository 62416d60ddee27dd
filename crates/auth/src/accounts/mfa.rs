//! Second factors: TOTP authenticators (RFC 6238 as every authenticator
//! app speaks it: HMAC-SHA-1, six digits, 30-second steps), enrolled,
//! challenged and verified as GoTrue's `/factors` routes do.
//!
//! A factor's 160-bit secret is sealed (AES-256-GCM under the key derived
//! from the server key, bound to its project and id) before it is stored,
//! and shown once, when it is enrolled. A code is accepted for the step
//! of the server's clock or one step either side, and only for a step
//! later than the last one accepted for its factor: the store takes the
//! step and uses up the challenge in one transaction, so no code is ever
//! accepted twice, on any node. A challenge takes codes for
//! `mfa_challenge_lifetime_s` (5 minutes at most) and dies after
//! [`MAX_CHALLENGE_FAILURES`] wrong ones; codes tried per factor are
//! limited too ([`Attempt::MfaVerify`]).
//!
//! The first code accepted verifies a factor; every accepted code raises
//! the caller's session to `aal2`, which its refreshes keep, and answers
//! a new access token and refresh token for it.
use super::*;
use store::accounts::{Challenge, FactorStatus, StepUse};

/// Seconds of one TOTP time step.
pub const TOTP_STEP_S: u64 = 30;
/// Digits of a TOTP code.
pub const TOTP_DIGITS: u8 = 6;
/// Longest a challenge takes codes, in seconds.
pub const MAX_CHALLENGE_LIFETIME_S: i64 = 300;
/// Wrong codes that end a challenge.
pub const MAX_CHALLENGE_FAILURES: u32 = 5;
/// Factors a user may have at once.
pub const MAX_FACTORS: usize = 10;
/// How long an enrolled factor waits for its first code before a new
/// enrollment forgets it.
const UNVERIFIED_FACTOR_LIFETIME_MS: i64 = 3_600_000;
/// Bytes of a TOTP secret (RFC 4226 recommends 160 bits).
const SECRET_BYTES: usize = 20;

/// A factor just enrolled: what the user's authenticator takes, shown
/// this once.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub factor: Factor,
    /// The secret in base32 (what an authenticator takes typed in).
    pub secret: String,
    /// The `otpauth://totp/...` URI.
    pub uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_code: String,
}

/// The TOTP of a secret, as authenticators compute it.
fn totp(secret: &[u8]) -> Option<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(TOTP_DIGITS)
        .with_step_duration(TOTP_STEP_S)
        // Each step is checked on its own, below.
        .with_skew(0)
        .with_secret(secret.to_vec())
        .build()
        .ok()
}

/// The time step `code` is right for, among the step of `now_s` and the
/// one either side (RFC 6238 section 5.2), if any.
pub fn totp_step(secret: &[u8], code: &str, now_s: u64) -> Option<u64> {
    let totp = totp(secret)?;
    let code = code.trim();
    if code.len() != usize::from(TOTP_DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = now_s / TOTP_STEP_S;
    (current.saturating_sub(1)..=current + 1)
        .find(|step| totp.check(code, step * TOTP_STEP_S).is_some())
}

/// What a factor's sealed secret is bound to: its project and id.
fn secret_context(project: &ProjectId, factor_id: &str) -> Vec<u8> {
    format!("wok-totp-secret:{project}:{factor_id}").into_bytes()
}

/// RFC 4648 base32, unpadded (what `otpauth` URIs carry).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A QR code of `text` as an SVG document, with no `#` in it (the client
/// puts it in a `data:` URL as it is).
fn qr_svg(text: &str) -> Option<String> {
    let qr = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium).ok()?;
    let border = 4;
    let size = qr.size() + border * 2;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <path d=\"{path}\" fill=\"black\"/></svg>"
    ))
}

impl Accounts {
    /// A user's second factors, oldest first.
    pub async fn factors_of(
        &self,
        project: &ProjectId,
        user_id: &str,
    ) -> Result<Vec<Factor>, StoreError> {
        self.store.factors(project, user_id).await
    }

    /// `POST /factors`: a new, unverified TOTP factor for the caller. A
    /// user that has a verified factor enrolls another from an `aal2`
    /// session only.
    pub async fn enroll_totp(
        &self,
        identity: &Identity,
        friendly_name: Option<String>,
        issuer: Option<String>,
        now: UnixMillis,
    ) -> Result<Enrolled, AccountError> {
        let project = &identity.project;
        let user = self.user(identity).await?;
        let friendly_name = friendly_name.filter(|name| !name.trim().is_empty());
        if friendly_name
            .as_ref()
            .is_some_and(|name| name.chars().count() > 256)
        {
            return Err(AccountError::Invalid(
                "friendly_name must be at most 256 characters".to_owned(),
            ));
        }
        let issuer = match issuer.filter(|issuer| !issuer.trim().is_empty()) {
            Some(issuer) => issuer,
            None => self
                .settings(project)
                .site_url
                .as_deref()
                .and_then(|url| url.split_once("://"))
                .and_then(|(_, rest)| rest.split(['/', ':', '?', '#']).next())
                .filter(|host| !host.is_empty())
                .unwrap_or(project.as_str())
                .to_owned(),
        };
        if issuer.contains(':')
            || issuer.chars().count() > 256
            || issuer.chars().any(char::is_control)
        {
            return Err(AccountError::Invalid(
                "issuer must be at most 256 characters, without `:`".to_owned(),
            ));
        }
        let mut factors = self.store.factors(project, &user.id).await?;
        if factors
            .iter()
            .any(|factor| factor.status == FactorStatus::Verified)
            && identity.aal < 2
        {
            return Err(AccountError::InsufficientAal);
        }
        // Enrollments never finished (an app that enrolls each time its
        // settings page opens) make room.
        for stale in factors.iter().filter(|factor| {
            factor.status == FactorStatus::Unverified
                && factor.created_at + UNVERIFIED_FACTOR_LIFETIME_MS <= now
        }) {
            self.store
                .delete_factor(project, &user.id, &stale.id)
                .await?;
        }
        factors.retain(|factor| {
            factor.status == FactorStatus::Verified
                || factor.created_at + UNVERIFIED_FACTOR_LIFETIME_MS > now
        });
        if factors.len() >= MAX_FACTORS {
            return Err(AccountError::TooManyFactors(factors.len()));
        }
        if friendly_name.is_some()
            && factors
                .iter()
                .any(|factor| factor.friendly_name == friendly_name)
        {
            return Err(AccountError::FactorNameTaken);
        }
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret).expect("the OS random number generator");
        let id = uuid::Uuid::new_v4().to_string();
        let factor = Factor {
            project: project.clone(),
            id: id.clone(),
            user_id: user.id.clone(),
            factor_type: "totp".to_owned(),
            friendly_name,
            sealed_secret: self.seal_bytes(&secret_context(project, &id), &secret),
            status: FactorStatus::Unverified,
            last_used_step: None,
            created_at: now,
            updated_at: now,
        };
        self.store.create_factor(&factor).await?;
        let account = user.email.clone().unwrap_or_else(|| user.id.clone());
        let encoded = base32(&secret);
        let uri = format!(
            "otpauth://totp/{}:{}?secret={encoded}&issuer={}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_S}",
            email::percent_encode(&issuer),
            email::percent_encode(&account),
            email::percent_encode(&issuer),
        );
        let qr_code = qr_svg(&uri).unwrap_or_default();
        Ok(Enrolled {
            factor,
            secret: encoded,
            uri,
            qr_code,
        })
    }

    /// The caller's factor `factor_id`.
    async fn own_factor(
        &self,
        identity: &Identity,
        factor_id: &str,
    ) -> Result<(Factor, Vec<Factor>), AccountError> {
        let factors = self
            .store
            .factors(&identity.project, &identity.user_id)
            .await?;
        let factor = factors
            .iter()
            .find(|factor| factor.id == factor_id)
            .cloned()
            .ok_or(AccountError::FactorNotFound)?;
        Ok((factor, factors))
    }

    /// `POST /factors/ID/challenge`: a challenge of the caller's factor,
    /// which takes codes for the project's `mfa_challenge_lifetime_s`.
    pub async fn challenge_factor(
        &self,
        identity: &Identity,
        factor_id: &str,
        now: UnixMillis,
    ) -> Result<Challenge, AccountError> {
        let (factor, _) = self.own_factor(identity, factor_id).await?;
        let lifetime = self
            .settings(&identity.project)
            .mfa_challenge_lifetime_s
            .clamp(1, MAX_CHALLENGE_LIFETIME_S);
        let challenge = Challenge {
            project: identity.project.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            factor_id: factor.id,
            user_id: identity.user_id.clone(),
            created_at: now,
            expires_at: now + lifetime * 1000,
        };
        self.store.create_challenge(&challenge).await?;
        Ok(challenge)
    }

    /// `POST /factors/ID/verify`: a code for a challenge of the caller's
    /// factor. Accepted (once, for a step later than any accepted before),
    /// it verifies the factor and raises the caller's session to `aal2`:
    /// a new access token and refresh token for it.
    pub async fn verify_factor(
        &self,
        identity: &Identity,
        factor_id: &str,
        challenge_id: &str,
        code: &str,
        now: UnixMillis,
    ) -> Result<Issued, AccountError> {
        let project = &identity.project;
        let (factor, _) = self.own_factor(identity, factor_id).await?;
        self.store
            .challenge(project, challenge_id, now, MAX_CHALLENGE_FAILURES)
            .await?
            .filter(|challenge| {
                challenge.factor_id == factor.id && challenge.user_id == identity.user_id
            })
            .ok_or(AccountError::ChallengeExpired)?;
        let secret = self
            .open_bytes(&secret_context(project, &factor.id), &factor.sealed_secret)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the secret of factor {:?} does not open with the server key",
                    factor.id
                ))
            })?;
        let now_s = u64::try_from(now.div_euclid(1000)).unwrap_or(0);
        let Some(step) = totp_step(&secret, code, now_s) else {
            self.store
                .fail_challenge(project, challenge_id, now, MAX_CHALLENGE_FAILURES)
                .await?;
            return Err(AccountError::MfaCodeInvalid);
        };
        match self
            .store
            .use_totp_step(
                project,
                &factor.id,
                challenge_id,
                i64::try_from(step).unwrap_or(i64::MAX),
                now,
                MAX_CHALLENGE_FAILURES,
            )
            .await?
        {
            StepUse::Used(_) => {}
            StepUse::Replayed => return Err(AccountError::MfaCodeInvalid),
            StepUse::NoChallenge => return Err(AccountError::ChallengeExpired),
        }
        // The session is raised; its tokens from now on say so.
        let (refresh_token, hash) = new_refresh_token();
        let raised = self
            .store
            .set_session_aal(project, &identity.session_id, 2)
            .await?
            && self
                .store
                .add_refresh_token(project, &identity.session_id, &hash, now)
                .await?;
        let session = match self.store.session(project, &identity.session_id).await? {
            Some(session) if raised && session.ended_at.is_none() => session,
            _ => return Err(AccountError::RefreshNotFound),
        };
        let user = self.user(identity).await?;
        let method = identity.claims["amr"]
            .as_array()
            .and_then(|amr| amr.last())
            .and_then(|first| first["method"].as_str())
            .unwrap_or("password")
            .to_owned();
        Ok(self
            .issue(&user, &session, refresh_token, &method, Some(now), now)
            .await?)
    }

    /// `DELETE /factors/ID`: the caller's factor goes. A user that has a
    /// verified factor removes one from an `aal2` session only.
    pub async fn unenroll(&self, identity: &Identity, factor_id: &str) -> Result<(), AccountError> {
        let (factor, factors) = self.own_factor(identity, factor_id).await?;
        if factors
            .iter()
            .any(|factor| factor.status == FactorStatus::Verified)
            && identity.aal < 2
        {
            return Err(AccountError::InsufficientAal);
        }
        if !self
            .store
            .delete_factor(&identity.project, &identity.user_id, &factor.id)
            .await?
        {
            return Err(AccountError::FactorNotFound);
        }
        Ok(())
    }

    /// The service side removes a user's factor; whether it was there.
    pub async fn admin_delete_factor(
        &self,
        project: &ProjectId,
        user_id: &str,
        factor_id: &str,
    ) -> Result<bool, StoreError> {
        self.store.delete_factor(project, user_id, factor_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, its 20-byte secret: the eight-digit
    /// codes' last six digits, as six-digit authenticators show them.
    #[test]
    fn codes_match_the_rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (time, eight_digits) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let code = &eight_digits[2..];
            assert_eq!(
                totp_step(secret, code, time),
                Some(time / TOTP_STEP_S),
                "{time}"
            );
            // One step either side is accepted; two are not.
            assert_eq!(
                totp_step(secret, code, time + TOTP_STEP_S),
                Some(time / TOTP_STEP_S)
            );
            assert_eq!(
                totp_step(secret, code, time - TOTP_STEP_S),
                Some(time / TOTP_STEP_S)
            );
            assert_eq!(totp_step(secret, code, time + 2 * TOTP_STEP_S), None);
        }
        for malformed in ["28708", "2870822", "28708a", ""] {
            assert_eq!(totp_step(secret, malformed, 59), None, "{malformed:?}");
        }
        assert_eq!(totp_step(secret, " 287082 ", 59), Some(1));
    }

    #[test]
    fn secrets_are_base32_as_authenticators_read_them() {
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let svg = qr_svg("otpauth://totp/shop:ann@example.com?secret=MZXW6YTBOI").unwrap();
        assert!(svg.starts_with("<svg") && !svg.contains('#'));
    }
}
