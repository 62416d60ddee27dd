//! The auth routes, in the GoTrue (Supabase Auth) wire protocol, so that
//! `@supabase/supabase-js`'s auth client works unmodified: `/auth/v1/...`
//! with the project taken from the `apikey` header (any live key of it),
//! and `/p/PROJECT/auth/v1/...` for requests that carry no key
//! (redirects, the JWKS).
//!
//! Answers are GoTrue's: a session (`access_token`, `token_type`,
//! `expires_in`, `expires_at`, `refresh_token`, `user`), a user object,
//! and errors as `{"code": "...", "msg": "..."}` with the
//! `x-supabase-api-version` header, which tells the client to read the
//! code from `code`. Every other route keeps wok's JSON error.
//!
//! Second factors are GoTrue's `/factors` routes (supabase-js's
//! `auth.mfa`), and a user lists its factors in `factors`; login tickets
//! are wok's own (`/admin/tickets`, `grant_type=ticket`).
//!
//! A client's PKCE challenge (`flowType: 'pkce'`) with a request that
//! mails a link makes that link land with `?code=`, traded by
//! `grant_type=pkce`. Sign-in with an OpenID Connect provider is GoTrue's
//! `/authorize`
//! (which answers 302 to the provider), `/callback` (the provider's
//! answer: 302 to the client's `redirect_to` with `?code=`, or with the
//! session in the fragment for the implicit flow, or with `error`,
//! `error_code` and `error_description`) and `grant_type=pkce`.
use crate::SharedGateway;
use auth::accounts::{
    Attempt, Issued, Links, LogoutScope, RedirectOutcome, SignedUp, UserChange, VerifyKind,
};
use auth::{AccountError, AuthError, Caller, Identity};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use domain::ProjectId;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use store::accounts::{Factor, LinkedIdentity, User};

/// The API version GoTrue's clients read error codes by.
const API_VERSION: &str = "2024-01-01";
/// Largest body of an auth request.
const BODY_LIMIT: usize = 64 << 10;

/// An answer in GoTrue's error shape.
pub(crate) struct GoTrueError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds, for a 429.
    retry_after: Option<u64>,
}

impl GoTrueError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl GoTrueError {
    /// A request the auth routes cannot take as it is (400
    /// `validation_failed`).
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_failed", message)
    }
}

impl IntoResponse for GoTrueError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({ "code": self.code, "error_code": self.code, "msg": self.message })),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(
            "x-supabase-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<AccountError> for GoTrueError {
    fn from(error: AccountError) -> Self {
        let message = error.to_string();
        let (status, code) = match error {
            AccountError::InvalidCredentials => (StatusCode::BAD_REQUEST, "invalid_credentials"),
            AccountError::EmailTaken => (StatusCode::UNPROCESSABLE_ENTITY, "email_exists"),
            AccountError::WeakPassword(_) => (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"),
            AccountError::Invalid(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            AccountError::SignupDisabled => (StatusCode::UNPROCESSABLE_ENTITY, "signup_disabled"),
            AccountError::AnonymousDisabled => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "anonymous_provider_disabled",
            ),
            AccountError::Banned => (StatusCode::BAD_REQUEST, "user_banned"),
            AccountError::RefreshNotFound => (StatusCode::BAD_REQUEST, "refresh_token_not_found"),
            AccountError::RefreshReused => (StatusCode::BAD_REQUEST, "refresh_token_already_used"),
            AccountError::UserNotFound => (StatusCode::NOT_FOUND, "user_not_found"),
            AccountError::EmailNotConfirmed => (StatusCode::BAD_REQUEST, "email_not_confirmed"),
            AccountError::CodeInvalid => (StatusCode::FORBIDDEN, "otp_expired"),
            AccountError::FactorNotFound => (StatusCode::NOT_FOUND, "mfa_factor_not_found"),
            AccountError::ChallengeExpired => {
                (StatusCode::UNPROCESSABLE_ENTITY, "mfa_challenge_expired")
            }
            AccountError::MfaCodeInvalid => {
                (StatusCode::UNPROCESSABLE_ENTITY, "mfa_verification_failed")
            }
            AccountError::InsufficientAal => (StatusCode::FORBIDDEN, "insufficient_aal"),
            AccountError::TooManyFactors(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_enrolled_mfa_factors",
            ),
            AccountError::FactorNameTaken => {
                (StatusCode::UNPROCESSABLE_ENTITY, "mfa_factor_name_conflict")
            }
            AccountError::TicketInvalid => (StatusCode::FORBIDDEN, "invalid_ticket"),
            AccountError::ProviderUnknown(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            AccountError::Provider(_) => (StatusCode::BAD_GATEWAY, "unexpected_failure"),
            AccountError::ProviderRefused(_) => (StatusCode::BAD_REQUEST, "bad_oauth_callback"),
            AccountError::IdTokenInvalid(_) => (StatusCode::BAD_REQUEST, "bad_oauth_callback"),
            AccountError::AccountExists(_) => (StatusCode::UNPROCESSABLE_ENTITY, "email_exists"),
            AccountError::FlowStateInvalid => (StatusCode::BAD_REQUEST, "flow_state_not_found"),
            AccountError::BadCodeVerifier => (StatusCode::BAD_REQUEST, "bad_code_verifier"),
            AccountError::ManualLinkingDisabled => {
                (StatusCode::NOT_FOUND, "manual_linking_disabled")
            }
            AccountError::IdentityTaken => {
                (StatusCode::UNPROCESSABLE_ENTITY, "identity_already_exists")
            }
            AccountError::IdentityNotFound => (StatusCode::NOT_FOUND, "identity_not_found"),
            AccountError::SingleIdentity => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "single_identity_not_deletable",
            ),
            AccountError::EmailRateLimited(wait) => {
                let mut error = GoTrueError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "over_email_send_rate_limit",
                    message,
                );
                error.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
                return error;
            }
            AccountError::Busy => {
                let mut error = GoTrueError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "over_request_rate_limit",
                    message,
                );
                error.retry_after = Some(1);
                return error;
            }
            AccountError::RateLimited(wait) => {
                let mut error = GoTrueError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "over_request_rate_limit",
                    message,
                );
                error.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
                return error;
            }
            AccountError::Store(error) => return store_failure(&error),
        };
        GoTrueError::new(status, code, message)
    }
}

impl From<store::StoreError> for GoTrueError {
    fn from(error: store::StoreError) -> Self {
        store_failure(&error)
    }
}

fn store_failure(error: &store::StoreError) -> GoTrueError {
    let status = if error.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    GoTrueError::new(status, "unexpected_failure", error.to_string())
}

/// The project an auth request is for.
#[derive(Debug, Clone)]
struct AuthProject(ProjectId);

/// The auth routes, for nesting under `/auth/v1` and `/p/PROJECT/auth/v1`.
pub(crate) fn routes(gateway: SharedGateway) -> Router {
    Router::new()
        .route("/signup", post(sign_up))
        .route("/otp", post(otp))
        .route("/verify", get(verify_link).post(verify))
        .route("/authorize", get(authorize))
        .route("/callback", get(callback))
        .route("/user/identities/authorize", get(link_identity))
        .route(
            "/user/identities/{id}",
            axum::routing::delete(unlink_identity),
        )
        .route("/recover", post(recover))
        .route("/resend", post(resend))
        .route("/admin/generate_link", post(admin_generate_link))
        .route("/token", post(token))
        .route("/user", get(get_user).put(update_user))
        .route("/logout", post(logout))
        .route("/factors", post(enroll_factor))
        .route("/factors/{id}", axum::routing::delete(unenroll_factor))
        .route("/factors/{id}/challenge", post(challenge_factor))
        .route("/factors/{id}/verify", post(verify_factor))
        .route("/settings", get(settings))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/admin/users",
            get(admin_list_users).post(admin_create_user),
        )
        .route(
            "/admin/users/{id}",
            get(admin_get_user)
                .put(admin_update_user)
                .delete(admin_delete_user),
        )
        .route(
            "/admin/users/{id}/sessions",
            get(admin_sessions).delete(admin_end_sessions),
        )
        .route("/admin/users/{id}/factors", get(admin_factors))
        .route(
            "/admin/users/{id}/factors/{factor_id}",
            axum::routing::delete(admin_delete_factor),
        )
        .route("/admin/tickets", post(admin_mint_ticket))
        .route("/admin/config", get(admin_config).put(admin_set_config))
        .route("/admin/keys", get(admin_keys).post(admin_rotate_key))
        .route("/admin/keys/{kid}", axum::routing::delete(admin_retire_key))
        .fallback(|| async {
            GoTrueError::new(StatusCode::NOT_FOUND, "not_found", "no such auth route")
        })
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            find_project,
        ))
        .with_state(gateway)
}

/// Finds the project: from the path (`/p/PROJECT/auth/v1/...`) or from
/// the `apikey` header, which must be a live key of it either way.
async fn find_project(
    State(gateway): State<SharedGateway>,
    mut request: Request,
    next: axum::middleware::Next,
) -> Response {
    let from_path = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(
            || request.uri().path().to_owned(),
            |uri| uri.path().to_owned(),
        )
        .strip_prefix("/p/")
        .and_then(|rest| rest.split('/').next().map(str::to_owned));
    let key = request
        .headers()
        .get("apikey")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let from_key = match key.as_deref().map(|key| gateway.auth.authenticate(key)) {
        None => None,
        Some(Ok(caller @ (Caller::Key { .. } | Caller::Admin))) => Some(caller.own_project()),
        Some(_) => {
            return GoTrueError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "the apikey is not a live key of a project",
            )
            .into_response();
        }
    };
    let project = match (from_path, from_key) {
        (Some(name), key_project) => {
            let Ok(project) = ProjectId::new(name) else {
                return no_project();
            };
            if key_project.is_some_and(|own| own != project) {
                return GoTrueError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_api_key",
                    "the apikey belongs to another project",
                )
                .into_response();
            }
            match gateway.auth.project_exists(&project).await {
                Ok(true) => project,
                Ok(false) => return no_project(),
                Err(error) => return GoTrueError::from(error).into_response(),
            }
        }
        (None, Some(project)) => project,
        (None, None) => {
            return GoTrueError::new(
                StatusCode::UNAUTHORIZED,
                "no_api_key",
                "no API key found in the request: send the project's key as `apikey`",
            )
            .into_response();
        }
    };
    request.extensions_mut().insert(AuthProject(project));
    next.run(request).await
}

fn no_project() -> Response {
    GoTrueError::new(
        StatusCode::NOT_FOUND,
        "project_not_found",
        "no such project",
    )
    .into_response()
}

/// The address a request came from: the connection's peer, or with
/// `--trust-forwarded-for` the last `X-Forwarded-For` entry (the one the
/// load balancer added).
fn client_address(gateway: &SharedGateway, request: &Request) -> Option<std::net::IpAddr> {
    if gateway.trust_forwarded_for
        && let Some(forwarded) = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .next_back()
            .and_then(|last| last.trim().parse().ok())
    {
        return Some(forwarded);
    }
    request
        .extensions()
        .get::<crate::ClientAddr>()
        .and_then(|addr| addr.0)
}

/// The body of a request, parsed, or GoTrue's error.
async fn body<T: serde::de::DeserializeOwned>(request: Request) -> Result<T, GoTrueError> {
    let bytes = axum::body::to_bytes(request.into_body(), BODY_LIMIT)
        .await
        .map_err(|_| {
            GoTrueError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                format!("the body is larger than {BODY_LIMIT} bytes"),
            )
        })?;
    let bytes = if bytes.is_empty() {
        &b"{}"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(bytes)
        .map_err(|error| GoTrueError::invalid(format!("the body is not valid: {error}")))
}

/// The signed-in user of a request: its `Authorization` bearer token, an
/// access token of this project.
fn identity(
    gateway: &SharedGateway,
    project: &ProjectId,
    request: &Request,
) -> Result<Arc<Identity>, GoTrueError> {
    let token = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            GoTrueError::new(
                StatusCode::UNAUTHORIZED,
                "no_authorization",
                "this endpoint requires a bearer token",
            )
        })?;
    let identity = gateway
        .accounts
        .verify(token, gateway.clock.now())
        .map_err(|error| match error {
            AuthError::SessionEnded => GoTrueError::new(
                StatusCode::FORBIDDEN,
                "session_not_found",
                "the session of this token has ended",
            ),
            AuthError::TokenExpired => {
                GoTrueError::new(StatusCode::UNAUTHORIZED, "bad_jwt", "the token has expired")
            }
            _ => GoTrueError::new(StatusCode::UNAUTHORIZED, "bad_jwt", error.to_string()),
        })?;
    if &identity.project != project {
        return Err(GoTrueError::new(
            StatusCode::UNAUTHORIZED,
            "bad_jwt",
            "the token belongs to another project",
        ));
    }
    Ok(identity)
}

/// A time as GoTrue writes it (RFC 3339).
fn time(millis: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A user as GoTrue shows it, with its identities at providers (and its
/// email identity if it signs in by email too).
fn user_with_identities(user: &User, linked: &[LinkedIdentity]) -> Value {
    let mut shown = user_json(user);
    if linked.is_empty() {
        return shown;
    }
    let mut identities: Vec<Value> = if user.password_hash.is_some() {
        shown["identities"].as_array().cloned().unwrap_or_default()
    } else {
        Vec::new()
    };
    identities.extend(linked.iter().map(|identity| {
        json!({
            "identity_id": identity.id,
            "id": identity.subject,
            "user_id": identity.user_id,
            "provider": identity.provider,
            "identity_data": identity.data,
            "email": identity.email,
            "last_sign_in_at": identity.last_sign_in_at.map(time),
            "created_at": time(identity.created_at),
            "updated_at": time(identity.updated_at),
        })
    }));
    shown["identities"] = Value::Array(identities);
    shown
}

/// A user as GoTrue shows it.
pub(crate) fn user_json(user: &User) -> Value {
    let identities: Vec<Value> = match &user.email {
        Some(email) if !user.anonymous => vec![json!({
            "identity_id": user.id,
            "id": user.id,
            "user_id": user.id,
            "provider": "email",
            "identity_data": {"email": email, "sub": user.id, "email_verified": user.email_confirmed_at.is_some()},
            "created_at": time(user.created_at),
            "updated_at": time(user.updated_at),
        })],
        _ => Vec::new(),
    };
    json!({
        "id": user.id,
        "aud": auth::accounts::AUDIENCE,
        "role": auth::accounts::AUDIENCE,
        "email": user.email.clone().unwrap_or_default(),
        "phone": user.phone.clone().unwrap_or_default(),
        "email_confirmed_at": user.email_confirmed_at.map(time),
        "confirmed_at": user.email_confirmed_at.map(time),
        "last_sign_in_at": user.last_sign_in_at.map(time),
        "banned_until": user.banned_until.map(time),
        "app_metadata": user.app_metadata,
        "user_metadata": user.user_metadata,
        "identities": identities,
        "created_at": time(user.created_at),
        "updated_at": time(user.updated_at),
        "is_anonymous": user.anonymous,
    })
}

/// A second factor as GoTrue shows it.
fn factor_json(factor: &Factor) -> Value {
    json!({
        "id": factor.id,
        "friendly_name": factor.friendly_name.clone().unwrap_or_default(),
        "factor_type": factor.factor_type,
        "status": factor.status.as_str(),
        "created_at": time(factor.created_at),
        "updated_at": time(factor.updated_at),
    })
}

/// A user with its second factors (left out when it has none, as GoTrue
/// does) and its identities.
fn user_with_factors(user: &User, factors: &[Factor], linked: &[LinkedIdentity]) -> Value {
    let mut shown = user_with_identities(user, linked);
    if !factors.is_empty() {
        shown["factors"] = factors.iter().map(factor_json).collect();
    }
    shown
}

fn session_json(issued: &Issued) -> Value {
    let mut session = json!({
        "access_token": issued.access_token,
        "token_type": "bearer",
        "expires_in": issued.expires_in,
        "expires_at": issued.expires_at,
        "refresh_token": issued.refresh_token,
        "user": user_with_factors(&issued.user, &issued.factors, &issued.identities),
    });
    // After a sign-in with a provider, its own tokens, this once.
    if let Some(tokens) = &issued.provider_tokens {
        session["provider_token"] = json!(tokens.access_token);
        if let Some(refresh_token) = &tokens.refresh_token {
            session["provider_refresh_token"] = json!(refresh_token);
        }
    }
    session
}

#[derive(Deserialize)]
struct SignUp {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
    #[serde(flatten)]
    challenge: Challenge,
}

/// `POST /signup?redirect_to=`: with an email and a password, a new user
/// (signed in, or with `email_confirmation` a user without a session, and
/// a mailed code); with neither, an anonymous one (supabase-js's
/// `signInAnonymously`).
async fn sign_up(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(redirect): Query<RedirectTo>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let address = client_address(&gateway, &request);
    gateway
        .accounts
        .admit(&project, Attempt::NewUser, address)?;
    let links = links(&gateway, &project, redirect.redirect_to.as_deref())?;
    let body: SignUp = body(request).await?;
    let links = body.challenge.bind(links)?;
    let data = body.data.unwrap_or_default();
    let now = gateway.clock.now();
    let issued = match (body.email, body.phone, body.password) {
        (None, None, None) => {
            gateway
                .accounts
                .sign_in_anonymously(&project, data, now)
                .await?
        }
        (Some(email), None, Some(password)) => {
            if gateway.accounts.settings(&project).email_confirmation {
                // The same limits as any request that mails a code.
                gateway
                    .accounts
                    .admit(&project, Attempt::Email(&email), address)?;
            }
            match gateway
                .accounts
                .sign_up_by_email(&project, &email, &password, data, &links, now)
                .await?
            {
                SignedUp::Session(issued) => *issued,
                SignedUp::Unconfirmed(user) => return Ok(Json(user_json(&user))),
            }
        }
        (_, Some(_), _) => {
            return Err(GoTrueError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "phone_provider_disabled",
                "phone sign-ups are not supported",
            ));
        }
        _ => {
            return Err(GoTrueError::invalid(
                "sign-up needs an email and a password (or neither, for an anonymous user)",
            ));
        }
    };
    Ok(Json(session_json(&issued)))
}

#[derive(Deserialize)]
struct Grant {
    grant_type: Option<String>,
}

#[derive(Deserialize)]
struct PasswordGrant {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct RefreshGrant {
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct PkceGrant {
    auth_code: Option<String>,
    code_verifier: Option<String>,
}

#[derive(Deserialize)]
struct TicketGrant {
    ticket: Option<String>,
}

/// `POST /token?grant_type=password|refresh_token|pkce|ticket`.
async fn token(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(grant): Query<Grant>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let now = gateway.clock.now();
    let address = client_address(&gateway, &request);
    let issued = match grant.grant_type.as_deref() {
        Some("password") => {
            let body: PasswordGrant = body(request).await?;
            let (Some(email), None, Some(password)) = (body.email, body.phone, body.password)
            else {
                return Err(GoTrueError::invalid(
                    "a password sign-in needs an email and a password",
                ));
            };
            gateway
                .accounts
                .admit(&project, Attempt::SignIn(&email), address)?;
            gateway
                .accounts
                .sign_in_with_password(&project, &email, &password, now)
                .await?
        }
        Some("refresh_token") => {
            gateway
                .accounts
                .admit(&project, Attempt::Refresh, address)?;
            let body: RefreshGrant = body(request).await?;
            let Some(refresh_token) = body.refresh_token.filter(|token| !token.is_empty()) else {
                return Err(GoTrueError::invalid("refresh_token is required"));
            };
            gateway
                .accounts
                .refresh(&project, &refresh_token, now)
                .await?
        }
        Some("pkce") => {
            gateway.accounts.admit(&project, Attempt::Verify, address)?;
            let body: PkceGrant = body(request).await?;
            let (Some(auth_code), Some(code_verifier)) = (
                body.auth_code.filter(|code| !code.is_empty()),
                body.code_verifier.filter(|verifier| !verifier.is_empty()),
            ) else {
                return Err(GoTrueError::invalid(
                    "a pkce grant needs an auth_code and a code_verifier",
                ));
            };
            gateway
                .accounts
                .exchange_auth_code(&project, &auth_code, &code_verifier, now)
                .await?
        }
        Some("ticket") => {
            gateway.accounts.admit(&project, Attempt::Verify, address)?;
            let body: TicketGrant = body(request).await?;
            let Some(ticket) = body.ticket.filter(|ticket| !ticket.is_empty()) else {
                return Err(GoTrueError::new(
                    StatusCode::BAD_REQUEST,
                    "validation_failed",
                    "ticket is required",
                ));
            };
            gateway
                .accounts
                .sign_in_with_ticket(&project, &ticket, now)
                .await?
        }
        other => {
            return Err(GoTrueError::invalid(format!(
                "unsupported grant_type {:?}",
                other.unwrap_or("")
            )));
        }
    };
    Ok(Json(session_json(&issued)))
}

/// `GET /user`: the signed-in user.
async fn get_user(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let identity = identity(&gateway, &project, &request)?;
    let user = gateway.accounts.user(&identity).await?;
    let factors = gateway
        .accounts
        .factors_of(&project, &identity.user_id)
        .await?;
    let linked = gateway
        .accounts
        .identities_of(&project, &identity.user_id)
        .await?;
    Ok(Json(user_with_factors(&user, &factors, &linked)))
}

#[derive(Deserialize)]
struct Enroll {
    factor_type: Option<String>,
    friendly_name: Option<String>,
    issuer: Option<String>,
}

/// `POST /factors`: a new, unverified TOTP factor of the signed-in user,
/// with its secret, `otpauth` URI and QR code (SVG), shown this once.
async fn enroll_factor(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let identity = identity(&gateway, &project, &request)?;
    let body: Enroll = body(request).await?;
    if body.factor_type.as_deref() != Some("totp") {
        return Err(GoTrueError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "mfa_factor_type_unsupported",
            format!(
                "unsupported factor_type {:?}: totp",
                body.factor_type.unwrap_or_default()
            ),
        ));
    }
    let enrolled = gateway
        .accounts
        .enroll_totp(
            &identity,
            body.friendly_name,
            body.issuer,
            gateway.clock.now(),
        )
        .await?;
    Ok(Json(json!({
        "id": enrolled.factor.id,
        "type": "totp",
        "friendly_name": enrolled.factor.friendly_name.unwrap_or_default(),
        "totp": {
            "qr_code": enrolled.qr_code,
            "secret": enrolled.secret,
            "uri": enrolled.uri,
        },
    })))
}

/// `POST /factors/ID/challenge`: a challenge of the user's factor, which
/// takes codes until `expires_at` (Unix seconds).
async fn challenge_factor(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let identity = identity(&gateway, &project, &request)?;
    let address = client_address(&gateway, &request);
    gateway.accounts.admit(&project, Attempt::Verify, address)?;
    let id = params.get("id").cloned().unwrap_or_default();
    let challenge = gateway
        .accounts
        .challenge_factor(&identity, &id, gateway.clock.now())
        .await?;
    Ok(Json(json!({
        "id": challenge.id,
        "type": "totp",
        "expires_at": challenge.expires_at.div_euclid(1000),
    })))
}

#[derive(Deserialize)]
struct VerifyFactor {
    challenge_id: Option<String>,
    code: Option<String>,
}

/// `POST /factors/ID/verify`: a code for a challenge. Accepted, the
/// factor is verified and the session is at `aal2`: a new session bundle.
async fn verify_factor(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let identity = identity(&gateway, &project, &request)?;
    let address = client_address(&gateway, &request);
    let id = params.get("id").cloned().unwrap_or_default();
    gateway
        .accounts
        .admit(&project, Attempt::MfaVerify(&id), address)?;
    let body: VerifyFactor = body(request).await?;
    let (Some(challenge_id), Some(code)) = (body.challenge_id, body.code) else {
        return Err(GoTrueError::new(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "verification needs a challenge_id and a code",
        ));
    };
    let issued = gateway
        .accounts
        .verify_factor(&identity, &id, &challenge_id, &code, gateway.clock.now())
        .await?;
    Ok(Json(session_json(&issued)))
}

/// `DELETE /factors/ID`: the user's factor goes (from an `aal2` session
/// if the user has a verified factor).
async fn unenroll_factor(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let identity = identity(&gateway, &project, &request)?;
    let id = params.get("id").cloned().unwrap_or_default();
    gateway.accounts.unenroll(&identity, &id).await?;
    Ok(Json(json!({ "id": id })))
}

#[derive(Deserialize)]
struct UpdateUser {
    email: Option<String>,
    password: Option<String>,
    data: Option<serde_json::Map<String, Value>>,
    phone: Option<String>,
    #[serde(flatten)]
    challenge: Challenge,
}

/// `PUT /user?redirect_to=`: a new email, password or data for the
/// signed-in user (with `email_confirmation`, a new email counts once
/// confirmed with a code mailed to it).
async fn update_user(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(redirect): Query<RedirectTo>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let identity = identity(&gateway, &project, &request)?;
    let links = links(&gateway, &project, redirect.redirect_to.as_deref())?;
    let address = client_address(&gateway, &request);
    let body: UpdateUser = body(request).await?;
    let links = body.challenge.bind(links)?;
    if body.phone.is_some() {
        return Err(GoTrueError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "phone_provider_disabled",
            "phone numbers are not supported",
        ));
    }
    if let Some(email) = &body.email
        && gateway.accounts.settings(&project).email_confirmation
    {
        gateway
            .accounts
            .admit(&project, Attempt::Email(email), address)?;
    }
    let change = UserChange {
        email: body.email,
        password: body.password,
        data: body.data,
    };
    let now = gateway.clock.now();
    let (user, new_email) = gateway
        .accounts
        .update_user_confirming(&identity, change, &links, now)
        .await?;
    let mut shown = user_json(&user);
    if let Some(new_email) = new_email {
        shown["new_email"] = json!(new_email);
        shown["email_change_sent_at"] = json!(time(now));
    }
    Ok(Json(shown))
}

#[derive(Deserialize)]
struct Logout {
    scope: Option<String>,
}

/// `POST /logout?scope=global|local|others`: ends sessions at once (their
/// access tokens are refused from now on).
async fn logout(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(logout): Query<Logout>,
    request: Request,
) -> Result<StatusCode, GoTrueError> {
    let scope = match logout.scope.as_deref() {
        None | Some("global") => LogoutScope::Global,
        Some("local") => LogoutScope::Local,
        Some("others") => LogoutScope::Others,
        Some(other) => {
            return Err(GoTrueError::invalid(format!(
                "unsupported logout scope {other:?}: global, local or others"
            )));
        }
    };
    let identity = identity(&gateway, &project, &request)?;
    gateway
        .accounts
        .logout(&identity, scope, gateway.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /settings`: what this project's auth offers.
async fn settings(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
) -> Json<Value> {
    let settings = gateway.accounts.settings(&project);
    let mut external =
        json!({"email": true, "phone": false, "anonymous_users": settings.anonymous});
    for provider in &settings.providers {
        external[provider.name.as_str()] = json!(true);
    }
    Json(json!({
        "external": external,
        "disable_signup": !settings.signup,
        "mailer_autoconfirm": !settings.email_confirmation,
        "phone_autoconfirm": false,
        "sms_provider": "",
        "saml_enabled": false,
    }))
}

/// `GET /.well-known/jwks.json`: the public keys of the project's tokens.
async fn jwks(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
) -> Response {
    let mut response = Json(gateway.accounts.jwks(&project)).into_response();
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=600"),
    );
    response
}

/// The service side of a project: its service keys, the admin, and its
/// functions' credentials, as `Authorization: Bearer`.
fn require_service(
    gateway: &SharedGateway,
    project: &ProjectId,
    request: &Request,
) -> Result<(), GoTrueError> {
    let token = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            GoTrueError::new(
                StatusCode::UNAUTHORIZED,
                "no_authorization",
                "the admin routes need a service key of the project: send `Authorization: Bearer SERVICE_KEY`",
            )
        })?;
    match gateway.auth.authenticate(token) {
        Ok(caller) if caller.serves(project) => Ok(()),
        _ => Err(GoTrueError::new(
            StatusCode::FORBIDDEN,
            "not_admin",
            "the admin routes need a service key of the project or the admin credential",
        )),
    }
}

/// The page asked for; supabase-js sends empty values for "unset".
#[derive(Deserialize)]
struct Page {
    page: Option<String>,
    per_page: Option<String>,
}

impl Page {
    fn number(text: &Option<String>, name: &str) -> Result<Option<u64>, GoTrueError> {
        match text.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| GoTrueError::invalid(format!("{name} must be a positive number"))),
        }
    }
}

/// Most users in one page of the admin listing.
const MAX_PER_PAGE: usize = 1000;

/// `GET /admin/users?page=N&per_page=M`: users by id, with their total in
/// `x-total-count` (as GoTrue).
async fn admin_list_users(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(page): Query<Page>,
    request: Request,
) -> Result<Response, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let per_page = Page::number(&page.per_page, "per_page")?
        .unwrap_or(50)
        .clamp(1, MAX_PER_PAGE as u64);
    let number = Page::number(&page.page, "page")?.unwrap_or(1).max(1);
    let (users, total) = gateway
        .accounts
        .list_users(
            &project,
            (number - 1).saturating_mul(per_page),
            per_page as usize,
        )
        .await?;
    let users: Vec<Value> = users.iter().map(user_json).collect();
    let mut response =
        Json(json!({ "users": users, "aud": auth::accounts::AUDIENCE })).into_response();
    // GoTrue's pagination: the total, and links to the next and last pages.
    let last = total.div_ceil(per_page).max(1);
    let mut links = Vec::new();
    if number < last {
        links.push(format!(
            "</admin/users?page={}&per_page={per_page}>; rel=\"next\"",
            number + 1
        ));
    }
    links.push(format!(
        "</admin/users?page={last}&per_page={per_page}>; rel=\"last\""
    ));
    let headers = response.headers_mut();
    headers.insert("x-total-count", HeaderValue::from(total));
    if let Ok(link) = HeaderValue::from_str(&links.join(", ")) {
        headers.insert(http::header::LINK, link);
    }
    Ok(response)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AdminUser {
    email: Option<String>,
    password: Option<String>,
    email_confirm: Option<bool>,
    user_metadata: Option<serde_json::Map<String, Value>>,
    app_metadata: Option<serde_json::Map<String, Value>>,
    /// `none` to lift a ban, else a duration (`24h`, `30m`).
    ban_duration: Option<String>,
    phone: Option<String>,
}

impl AdminUser {
    fn change(self) -> Result<auth::accounts::AdminChange, GoTrueError> {
        if self.phone.is_some() {
            return Err(GoTrueError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "phone_provider_disabled",
                "phone numbers are not supported",
            ));
        }
        let ban = match self.ban_duration.as_deref() {
            None => None,
            Some("none") => Some(None),
            Some(text) => Some(Some(humantime::parse_duration(text).map_err(|_| {
                GoTrueError::invalid(format!(
                    "ban_duration {text:?} is not a duration (like 24h) nor `none`"
                ))
            })?)),
        };
        Ok(auth::accounts::AdminChange {
            email: self.email,
            password: self.password,
            email_confirm: self.email_confirm,
            user_metadata: self.user_metadata,
            app_metadata: self.app_metadata,
            ban,
        })
    }
}

/// `POST /admin/users`: a user made by the service side.
async fn admin_create_user(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let body: AdminUser = body(request).await?;
    let Some(email) = body.email.clone() else {
        return Err(GoTrueError::invalid("a user needs an email"));
    };
    let user = gateway
        .accounts
        .admin_create_user(&project, &email, body.change()?, gateway.clock.now())
        .await?;
    Ok(Json(user_json(&user)))
}

/// `GET /admin/users/ID`.
async fn admin_get_user(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let id = params.get("id").cloned().unwrap_or_default();
    let user = gateway.accounts.find_user(&project, &id).await?;
    let linked = gateway.accounts.identities_of(&project, &id).await?;
    Ok(Json(user_with_identities(&user, &linked)))
}

/// `PUT /admin/users/ID`: email, password, confirmation, metadata, ban.
async fn admin_update_user(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let id = params.get("id").cloned().unwrap_or_default();
    let body: AdminUser = body(request).await?;
    let user = gateway
        .accounts
        .admin_update_user(&project, &id, body.change()?, gateway.clock.now())
        .await?;
    Ok(Json(user_json(&user)))
}

/// `DELETE /admin/users/ID`: the user goes, its sessions end.
async fn admin_delete_user(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let id = params.get("id").cloned().unwrap_or_default();
    if !gateway
        .accounts
        .admin_delete_user(&project, &id, gateway.clock.now())
        .await?
    {
        return Err(AccountError::UserNotFound.into());
    }
    Ok(Json(json!({})))
}

/// `GET /admin/users/ID/sessions`: the user's live sessions.
async fn admin_sessions(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let id = params.get("id").cloned().unwrap_or_default();
    gateway.accounts.find_user(&project, &id).await?;
    let sessions: Vec<Value> = gateway
        .accounts
        .sessions_of(&project, &id)
        .await?
        .iter()
        .map(|session| {
            json!({
                "id": session.id,
                "user_id": session.user_id,
                "created_at": time(session.created_at),
                "refreshed_at": time(session.refreshed_at),
                "aal": format!("aal{}", session.aal),
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": sessions })))
}

/// `DELETE /admin/users/ID/sessions`: ends every session of the user at
/// once.
async fn admin_end_sessions(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let id = params.get("id").cloned().unwrap_or_default();
    gateway.accounts.find_user(&project, &id).await?;
    let ended = gateway
        .accounts
        .end_sessions_of(&project, &id, gateway.clock.now())
        .await?;
    Ok(Json(json!({ "ended": ended })))
}

/// `GET /admin/users/ID/factors`: the user's second factors.
async fn admin_factors(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let id = params.get("id").cloned().unwrap_or_default();
    gateway.accounts.find_user(&project, &id).await?;
    let factors = gateway.accounts.factors_of(&project, &id).await?;
    Ok(Json(factors.iter().map(factor_json).collect()))
}

/// `DELETE /admin/users/ID/factors/FACTOR`: the user's factor goes.
async fn admin_delete_factor(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let id = params.get("id").cloned().unwrap_or_default();
    let factor_id = params.get("factor_id").cloned().unwrap_or_default();
    if !gateway
        .accounts
        .admin_delete_factor(&project, &id, &factor_id)
        .await?
    {
        return Err(AccountError::FactorNotFound.into());
    }
    Ok(Json(json!({ "id": factor_id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintTicket {
    user_id: Option<String>,
    email: Option<String>,
    #[serde(default)]
    create: bool,
    /// Seconds (default 300, at most 600).
    expires_in: Option<i64>,
}

/// `POST /admin/tickets`: a single-use login ticket for a user (by
/// `user_id`, or `email`; with `create`, a confirmed user is made for an
/// email that has none), which `POST /token?grant_type=ticket` trades for
/// a session.
async fn admin_mint_ticket(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let body: MintTicket = body(request).await?;
    let whom = match (&body.user_id, &body.email) {
        (Some(id), None) if !body.create => auth::accounts::tickets::TicketFor::User(id),
        (None, Some(email)) => auth::accounts::tickets::TicketFor::Email {
            email,
            create: body.create,
        },
        _ => {
            return Err(GoTrueError::new(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "a ticket is for a user_id, or for an email (with create: true to make its user)",
            ));
        }
    };
    let minted = gateway
        .accounts
        .mint_ticket(&project, whom, body.expires_in, gateway.clock.now())
        .await?;
    Ok(Json(json!({
        "ticket": minted.ticket,
        "expires_at": minted.expires_at.div_euclid(1000),
        "user_id": minted.user.id,
    })))
}

/// `GET /admin/config`: the project's auth settings.
async fn admin_config(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<auth::accounts::AuthSettings>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    Ok(Json(gateway.accounts.settings(&project).shown()))
}

/// `PUT /admin/config`: new auth settings (fields left out keep their
/// defaults, but for an SMTP password: left out, it stays).
async fn admin_set_config(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<auth::accounts::AuthSettings>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let settings: auth::accounts::AuthSettings = body(request).await?;
    Ok(Json(
        gateway.accounts.set_settings(&project, settings).await?,
    ))
}

fn key_json(key: &store::accounts::SigningKey) -> Value {
    json!({
        "kid": key.kid,
        "created_at": time(key.created_at),
        "retired_at": key.retired_at.map(time),
    })
}

/// `GET /admin/keys`: the project's token signing keys (public facts
/// only), oldest first; the newest honoured one signs.
async fn admin_keys(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let keys: Vec<Value> = gateway
        .accounts
        .signing_keys(&project)
        .await?
        .iter()
        .map(key_json)
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

/// `POST /admin/keys`: a new signing key, which signs from now on; older
/// ones are honoured until retired.
async fn admin_rotate_key(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let kid = gateway
        .accounts
        .rotate_key(&project, gateway.clock.now())
        .await?;
    Ok(Json(json!({ "kid": kid })))
}

/// `DELETE /admin/keys/KID`: the key's tokens are refused from now on.
async fn admin_retire_key(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<StatusCode, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let kid = params.get("kid").cloned().unwrap_or_default();
    if gateway
        .accounts
        .retire_key(&project, &kid, gateway.clock.now())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(GoTrueError::new(
            StatusCode::NOT_FOUND,
            "key_not_found",
            format!("no honoured signing key {kid:?} in this project"),
        ))
    }
}

/// A request's `redirect_to` (supabase-js sends it in the query).
#[derive(Deserialize, Default)]
struct RedirectTo {
    redirect_to: Option<String>,
}

/// Where the links of a mail point: this server's public URL, and the
/// request's `redirect_to` if the project allows it (else 400: a link
/// never lands anywhere else).
fn links(
    gateway: &SharedGateway,
    project: &ProjectId,
    redirect_to: Option<&str>,
) -> Result<Links, GoTrueError> {
    Ok(Links {
        auth_url: auth_url(gateway, project),
        redirect_to: gateway.accounts.redirect_target(project, redirect_to)?,
        code_challenge: None,
    })
}

/// A client's PKCE challenge for the link of a mail (supabase-js's
/// `flowType: 'pkce'`): following the link then gives it a code.
#[derive(Deserialize, Default)]
struct Challenge {
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

impl Challenge {
    /// `links` with this challenge (S256 only), or 400.
    fn bind(self, mut links: Links) -> Result<Links, GoTrueError> {
        links.code_challenge = auth::accounts::client_code_challenge(
            self.code_challenge.as_deref(),
            self.code_challenge_method.as_deref(),
        )?;
        Ok(links)
    }
}

#[derive(Deserialize)]
struct Otp {
    email: Option<String>,
    phone: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
    create_user: Option<bool>,
    #[serde(flatten)]
    challenge: Challenge,
}

/// `POST /otp?redirect_to=`: mails a sign-in code and magic link
/// (supabase-js's `signInWithOtp`). The answer is the same whether the
/// address has a user or not, and comes before the mail goes.
async fn otp(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(redirect): Query<RedirectTo>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let address = client_address(&gateway, &request);
    let links = links(&gateway, &project, redirect.redirect_to.as_deref())?;
    let body: Otp = body(request).await?;
    let links = body.challenge.bind(links)?;
    let (Some(email), None) = (body.email, body.phone) else {
        return Err(GoTrueError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "phone_provider_disabled",
            "one-time codes go to an email address only",
        ));
    };
    gateway
        .accounts
        .admit(&project, Attempt::Email(&email), address)?;
    gateway
        .accounts
        .request_sign_in_code(
            &project,
            &email,
            body.create_user.unwrap_or(true),
            body.data.unwrap_or_default(),
            &links,
            gateway.clock.now(),
        )
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Recover {
    email: Option<String>,
    #[serde(flatten)]
    challenge: Challenge,
}

/// `POST /recover?redirect_to=`: mails a code and link that sign in to
/// set a new password (`resetPasswordForEmail`); the same answer for an
/// unknown address.
async fn recover(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(redirect): Query<RedirectTo>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let address = client_address(&gateway, &request);
    let links = links(&gateway, &project, redirect.redirect_to.as_deref())?;
    let body: Recover = body(request).await?;
    let links = body.challenge.bind(links)?;
    let Some(email) = body.email else {
        return Err(GoTrueError::invalid("password recovery needs an email"));
    };
    gateway
        .accounts
        .admit(&project, Attempt::Email(&email), address)?;
    gateway
        .accounts
        .request_recovery(&project, &email, &links, gateway.clock.now())
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Resend {
    email: Option<String>,
    phone: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(flatten)]
    challenge: Challenge,
}

/// `POST /resend?redirect_to=`: a new confirmation code for an
/// unconfirmed user (`type: signup`) or a pending email change
/// (`type: email_change`, with the new address); the same answer when
/// there is none.
async fn resend(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(redirect): Query<RedirectTo>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let address = client_address(&gateway, &request);
    let links = links(&gateway, &project, redirect.redirect_to.as_deref())?;
    let body: Resend = body(request).await?;
    let links = body.challenge.bind(links)?;
    let flow = match body.kind.as_deref() {
        Some("signup") => store::accounts::Flow::Signup,
        Some("email_change") => store::accounts::Flow::EmailChange,
        other => {
            return Err(GoTrueError::invalid(format!(
                "unsupported resend type {:?}: signup or email_change",
                other.unwrap_or("")
            )));
        }
    };
    let (Some(email), None) = (body.email, body.phone) else {
        return Err(GoTrueError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "phone_provider_disabled",
            "codes go to an email address only",
        ));
    };
    gateway
        .accounts
        .admit(&project, Attempt::Email(&email), address)?;
    gateway
        .accounts
        .resend(&project, &email, flow, &links, gateway.clock.now())
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Verify {
    #[serde(rename = "type")]
    kind: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    token: Option<String>,
    token_hash: Option<String>,
}

fn verify_kind(kind: Option<&str>) -> Result<VerifyKind, GoTrueError> {
    kind.and_then(VerifyKind::parse).ok_or_else(|| {
        GoTrueError::invalid(format!(
                "unsupported verification type {:?}: email, magiclink, signup, recovery or email_change",
                kind.unwrap_or("")
            ))
    })
}

/// `POST /verify`: a mailed code (`token` with `email`) or a link's token
/// (`token_hash`) turned into a session (`verifyOtp`). Each works once;
/// 5 wrong codes for an address kill its code.
async fn verify(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let address = client_address(&gateway, &request);
    gateway.accounts.admit(&project, Attempt::Verify, address)?;
    let body: Verify = body(request).await?;
    let kind = verify_kind(body.kind.as_deref())?;
    let now = gateway.clock.now();
    let issued = match (body.token_hash, body.email, body.token, body.phone) {
        (Some(token_hash), _, _, None) => {
            gateway
                .accounts
                .verify_link(&project, &token_hash, kind, now)
                .await?
        }
        (None, Some(email), Some(token), None) => {
            gateway
                .accounts
                .verify_code(&project, &email, &token, kind, now)
                .await?
        }
        _ => {
            return Err(GoTrueError::invalid(
                "verification needs an email and its token, or a token_hash",
            ));
        }
    };
    Ok(Json(session_json(&issued)))
}

#[derive(Deserialize)]
struct VerifyLink {
    token: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    redirect_to: Option<String>,
}

/// `GET /verify?token=&type=&redirect_to=`: a mailed link followed. 303
/// to the link's target (allowed: its `redirect_to`, or the site URL)
/// with the session in the fragment, as GoTrue does; or with the error
/// there. A target the project does not allow is refused (400) before the
/// token is used, and never redirected to.
async fn verify_link(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(link): Query<VerifyLink>,
    request: Request,
) -> Result<Response, GoTrueError> {
    let address = client_address(&gateway, &request);
    let Some(target) = gateway
        .accounts
        .redirect_target(&project, link.redirect_to.as_deref())?
    else {
        return Err(GoTrueError::invalid(
            "the link names no redirect_to and the project has no site_url to land on",
        ));
    };
    let target = target
        .split_once('#')
        .map_or(target.as_str(), |(before, _)| before)
        .to_owned();
    let kind = link.kind.clone().unwrap_or_default();
    let fragment = match async {
        gateway.accounts.admit(&project, Attempt::Verify, address)?;
        let verify_kind = verify_kind(link.kind.as_deref())?;
        let token = link.token.as_deref().unwrap_or_default();
        Ok::<_, GoTrueError>(
            gateway
                .accounts
                .follow_link(&project, token, verify_kind, gateway.clock.now())
                .await?,
        )
    }
    .await
    {
        // The client that asked for the link with a PKCE challenge: a
        // code in the query, for `grant_type=pkce`.
        Ok(RedirectOutcome::Code(code)) => {
            let joiner = if target.contains('?') { '&' } else { '?' };
            return redirect_with(
                StatusCode::SEE_OTHER,
                &format!("{target}{joiner}{}", form(&[("code", &code)])),
            );
        }
        Ok(RedirectOutcome::Session(issued)) => form(&[
            ("access_token", issued.access_token.as_str()),
            ("expires_at", &issued.expires_at.to_string()),
            ("expires_in", &issued.expires_in.to_string()),
            ("refresh_token", &issued.refresh_token),
            ("token_type", "bearer"),
            ("type", &kind),
        ]),
        Err(error) => {
            let code = if error.status == StatusCode::FORBIDDEN {
                "access_denied"
            } else {
                "server_error"
            };
            form(&[
                ("error", code),
                ("error_code", error.code),
                ("error_description", &error.message),
            ])
        }
    };
    redirect_with(StatusCode::SEE_OTHER, &format!("{target}#{fragment}"))
}

/// `name=value&...`, form-encoded.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", form_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[derive(Deserialize)]
struct GenerateLink {
    #[serde(rename = "type")]
    kind: Option<String>,
    email: Option<String>,
    password: Option<String>,
    new_email: Option<String>,
    data: Option<serde_json::Map<String, Value>>,
    #[serde(rename = "redirectTo")]
    redirect_to_camel: Option<String>,
    redirect_to: Option<String>,
}

/// `POST /admin/generate_link`: a code and link for the service side to
/// send itself (nothing is mailed: this works without SMTP). Answers the
/// user with `action_link`, `email_otp`, `hashed_token`,
/// `verification_type` and `redirect_to`, as GoTrue does.
async fn admin_generate_link(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(redirect): Query<RedirectTo>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    require_service(&gateway, &project, &request)?;
    let body: GenerateLink = body(request).await?;
    let redirect_to = redirect
        .redirect_to
        .or(body.redirect_to)
        .or(body.redirect_to_camel);
    let links = links(&gateway, &project, redirect_to.as_deref())?;
    let (Some(kind), Some(email)) = (body.kind, body.email) else {
        return Err(GoTrueError::invalid("a link needs a type and an email"));
    };
    let (user, made) = gateway
        .accounts
        .generate_link(
            &project,
            &kind,
            &email,
            body.password.as_deref(),
            body.data.unwrap_or_default(),
            body.new_email.as_deref(),
            &links,
            gateway.clock.now(),
        )
        .await?;
    let mut answer = user_json(&user);
    answer["action_link"] = json!(made.action_link);
    answer["email_otp"] = json!(made.code);
    answer["hashed_token"] = json!(made.token);
    answer["verification_type"] = json!(made.flow.as_str());
    answer["redirect_to"] = json!(made.redirect_to.unwrap_or_default());
    Ok(Json(answer))
}

#[derive(Deserialize)]
struct Authorize {
    provider: Option<String>,
    redirect_to: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// A client's PKCE challenge and its method.
type PkceChallenge<'a> = Option<(&'a str, &'a str)>;

impl Authorize {
    /// The provider named, and the client's PKCE challenge with its
    /// method (`plain` unless said), if it sent one.
    fn provider_and_challenge(&self) -> Result<(&str, PkceChallenge<'_>), GoTrueError> {
        let provider = self
            .provider
            .as_deref()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| GoTrueError::invalid("provider is required"))?;
        let challenge = match (&self.code_challenge, &self.code_challenge_method) {
            (Some(challenge), method) if !challenge.is_empty() => {
                Some((challenge.as_str(), method.as_deref().unwrap_or("plain")))
            }
            _ => None,
        };
        Ok((provider, challenge))
    }
}

/// `GET /authorize?provider=&redirect_to=&code_challenge=&code_challenge_method=s256`
/// (supabase-js's `signInWithOAuth`): 302 to the provider, once the
/// `redirect_to` is known to be allowed (else 400, and no redirect).
async fn authorize(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(query): Query<Authorize>,
    request: Request,
) -> Result<Response, GoTrueError> {
    let address = client_address(&gateway, &request);
    gateway
        .accounts
        .admit(&project, Attempt::ProviderSignIn, address)?;
    let (provider, challenge) = query.provider_and_challenge()?;
    let location = gateway
        .accounts
        .start_provider_sign_in(
            &project,
            provider,
            query.redirect_to.as_deref(),
            challenge,
            &format!("{}/callback", auth_url(&gateway, &project)),
            gateway.clock.now(),
        )
        .await?;
    redirect(&location)
}

#[derive(Deserialize)]
struct LinkIdentity {
    #[serde(flatten)]
    authorize: Authorize,
    skip_http_redirect: Option<String>,
}

/// `GET /user/identities/authorize?provider=&redirect_to=&...`
/// (supabase-js's `linkIdentity`, with the user's bearer token): the
/// provider's URL, whose callback links the identity to the signed-in
/// user; as JSON `{"url"}` with `skip_http_redirect=true` (what
/// supabase-js asks), else a 302.
async fn link_identity(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(query): Query<LinkIdentity>,
    request: Request,
) -> Result<Response, GoTrueError> {
    let identity = identity(&gateway, &project, &request)?;
    let address = client_address(&gateway, &request);
    gateway
        .accounts
        .admit(&project, Attempt::ProviderSignIn, address)?;
    let (provider, challenge) = query.authorize.provider_and_challenge()?;
    let location = gateway
        .accounts
        .start_provider_link(
            &identity,
            provider,
            query.authorize.redirect_to.as_deref(),
            challenge,
            &format!("{}/callback", auth_url(&gateway, &project)),
            gateway.clock.now(),
        )
        .await?;
    if query.skip_http_redirect.as_deref() == Some("true") {
        return Ok(Json(json!({ "url": location })).into_response());
    }
    redirect(&location)
}

/// `DELETE /user/identities/ID` (`unlinkIdentity`): the signed-in user's
/// identity goes, unless it is its only way of signing in.
async fn unlink_identity(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let identity = identity(&gateway, &project, &request)?;
    let id = params.get("id").cloned().unwrap_or_default();
    gateway
        .accounts
        .unlink_identity(&identity, &id, gateway.clock.now())
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /callback?state=&code=` (or `error=`): a provider's answer. An
/// unknown, used or expired `state` is a 400 (nowhere known to land);
/// past it, 302 to the client's `redirect_to` with `?code=` (the PKCE
/// flow), the session in the fragment (the implicit flow), or `error`,
/// `error_code` and `error_description` (in the query for PKCE, the
/// fragment for implicit, as GoTrue).
async fn callback(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(query): Query<Callback>,
    request: Request,
) -> Result<Response, GoTrueError> {
    let address = client_address(&gateway, &request);
    gateway.accounts.admit(&project, Attempt::Verify, address)?;
    let Some(state) = query.state.filter(|state| !state.is_empty()) else {
        return Err(GoTrueError::new(
            StatusCode::BAD_REQUEST,
            "bad_oauth_callback",
            "the provider's callback holds no state",
        ));
    };
    let provider_error = query.error.map(|error| {
        let error: String = error.chars().take(200).collect();
        match query.error_description {
            Some(description) => format!(
                "the provider refused the sign-in: {error}: {}",
                description.chars().take(500).collect::<String>()
            ),
            None => format!("the provider refused the sign-in: {error}"),
        }
    });
    let landing = gateway
        .accounts
        .finish_provider_sign_in(
            &project,
            &state,
            query.code.as_deref(),
            provider_error,
            gateway.clock.now(),
        )
        .await
        .map_err(|error| match error {
            AccountError::FlowStateInvalid => GoTrueError::new(
                StatusCode::BAD_REQUEST,
                "bad_oauth_state",
                "the sign-in's state has expired, was used, or is invalid: start again",
            ),
            other => other.into(),
        })?;
    let (target, fragment) = landing
        .redirect_to
        .split_once('#')
        .map_or((landing.redirect_to.as_str(), None), |(before, after)| {
            (before, Some(after))
        });
    let location = match landing.outcome {
        Ok(RedirectOutcome::Code(code)) => {
            let joiner = if target.contains('?') { '&' } else { '?' };
            let mut location = format!("{target}{joiner}{}", form(&[("code", &code)]));
            if let Some(fragment) = fragment {
                location.push('#');
                location.push_str(fragment);
            }
            location
        }
        Ok(RedirectOutcome::Session(issued)) => {
            let provider_tokens = issued.provider_tokens.clone();
            let (provider_token, provider_refresh_token) = provider_tokens
                .map(|tokens| {
                    (
                        tokens.access_token,
                        tokens.refresh_token.unwrap_or_default(),
                    )
                })
                .unwrap_or_default();
            format!(
                "{target}#{}",
                form(&[
                    ("access_token", issued.access_token.as_str()),
                    ("expires_at", &issued.expires_at.to_string()),
                    ("expires_in", &issued.expires_in.to_string()),
                    ("provider_refresh_token", &provider_refresh_token),
                    ("provider_token", &provider_token),
                    ("refresh_token", &issued.refresh_token),
                    ("token_type", "bearer"),
                ])
            )
        }
        Err(error) => {
            let error = GoTrueError::from(error);
            if error.status.is_server_error() {
                tracing::warn!(project = %project, "a sign-in with a provider failed: {}", error.message);
            }
            let kind = if error.status.is_server_error() {
                "server_error"
            } else {
                "access_denied"
            };
            let pairs = form(&[
                ("error", kind),
                ("error_code", error.code),
                ("error_description", &error.message),
            ]);
            if landing.pkce {
                let joiner = if target.contains('?') { '&' } else { '?' };
                format!("{target}{joiner}{pairs}")
            } else {
                format!("{target}#{pairs}")
            }
        }
    };
    redirect(&location)
}

/// The project's auth routes as clients reach them:
/// `https://wok.example.com/p/PROJECT/auth/v1`.
fn auth_url(gateway: &SharedGateway, project: &ProjectId) -> String {
    format!(
        "{}/p/{project}/auth/v1",
        gateway.public_url.trim_end_matches('/')
    )
}

/// 302 to `location`, kept by no cache and sent to no one as a referrer.
fn redirect(location: &str) -> Result<Response, GoTrueError> {
    redirect_with(StatusCode::FOUND, location)
}

/// A redirect to `location` with `status`, kept by no cache and sent to
/// no one as a referrer.
fn redirect_with(status: StatusCode, location: &str) -> Result<Response, GoTrueError> {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert(
        http::header::LOCATION,
        HeaderValue::from_str(location)
            .map_err(|_| GoTrueError::invalid("the redirect target is not a valid header value"))?,
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}
