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
use crate::SharedGateway;
use auth::accounts::{Issued, LogoutScope, UserChange};
use auth::{AccountError, AuthError, Caller, Identity};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use domain::ProjectId;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use store::accounts::User;

/// The API version GoTrue's clients read error codes by.
const API_VERSION: &str = "2024-01-01";
/// Largest body of an auth request.
const BODY_LIMIT: usize = 64 << 10;

/// An answer in GoTrue's error shape.
pub(crate) struct GoTrueError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl GoTrueError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for GoTrueError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({ "code": self.code, "error_code": self.code, "msg": self.message })),
        )
            .into_response();
        response.headers_mut().insert(
            "x-supabase-api-version",
            HeaderValue::from_static(API_VERSION),
        );
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
            AccountError::Busy => (StatusCode::TOO_MANY_REQUESTS, "over_request_rate_limit"),
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
        .route("/token", post(token))
        .route("/user", get(get_user).put(update_user))
        .route("/logout", post(logout))
        .route("/settings", get(settings))
        .route("/.well-known/jwks.json", get(jwks))
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
    serde_json::from_slice(bytes).map_err(|error| {
        GoTrueError::new(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            format!("the body is not valid: {error}"),
        )
    })
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

fn session_json(issued: &Issued) -> Value {
    json!({
        "access_token": issued.access_token,
        "token_type": "bearer",
        "expires_in": issued.expires_in,
        "expires_at": issued.expires_at,
        "refresh_token": issued.refresh_token,
        "user": user_json(&issued.user),
    })
}

#[derive(Deserialize)]
struct SignUp {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
}

/// `POST /signup`: with an email and a password, a new user; with
/// neither, an anonymous one (supabase-js's `signInAnonymously`).
async fn sign_up(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let body: SignUp = body(request).await?;
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
            gateway
                .accounts
                .sign_up(&project, &email, &password, data, now)
                .await?
        }
        (_, Some(_), _) => {
            return Err(GoTrueError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "phone_provider_disabled",
                "phone sign-ups are not supported",
            ));
        }
        _ => {
            return Err(GoTrueError::new(
                StatusCode::BAD_REQUEST,
                "validation_failed",
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

/// `POST /token?grant_type=password|refresh_token`.
async fn token(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    Query(grant): Query<Grant>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let now = gateway.clock.now();
    let issued = match grant.grant_type.as_deref() {
        Some("password") => {
            let body: PasswordGrant = body(request).await?;
            let (Some(email), None, Some(password)) = (body.email, body.phone, body.password)
            else {
                return Err(GoTrueError::new(
                    StatusCode::BAD_REQUEST,
                    "validation_failed",
                    "a password sign-in needs an email and a password",
                ));
            };
            gateway
                .accounts
                .sign_in_with_password(&project, &email, &password, now)
                .await?
        }
        Some("refresh_token") => {
            let body: RefreshGrant = body(request).await?;
            let Some(refresh_token) = body.refresh_token.filter(|token| !token.is_empty()) else {
                return Err(GoTrueError::new(
                    StatusCode::BAD_REQUEST,
                    "validation_failed",
                    "refresh_token is required",
                ));
            };
            gateway
                .accounts
                .refresh(&project, &refresh_token, now)
                .await?
        }
        other => {
            return Err(GoTrueError::new(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                format!("unsupported grant_type {:?}", other.unwrap_or("")),
            ));
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
    Ok(Json(user_json(&user)))
}

#[derive(Deserialize)]
struct UpdateUser {
    email: Option<String>,
    password: Option<String>,
    data: Option<serde_json::Map<String, Value>>,
    phone: Option<String>,
}

/// `PUT /user`: a new email, password or data for the signed-in user.
async fn update_user(
    State(gateway): State<SharedGateway>,
    Extension(AuthProject(project)): Extension<AuthProject>,
    request: Request,
) -> Result<Json<Value>, GoTrueError> {
    let identity = identity(&gateway, &project, &request)?;
    let body: UpdateUser = body(request).await?;
    if body.phone.is_some() {
        return Err(GoTrueError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "phone_provider_disabled",
            "phone numbers are not supported",
        ));
    }
    let change = UserChange {
        email: body.email,
        password: body.password,
        data: body.data,
    };
    let user = gateway
        .accounts
        .update_user(&identity, change, gateway.clock.now())
        .await?;
    Ok(Json(user_json(&user)))
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
            return Err(GoTrueError::new(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                format!("unsupported logout scope {other:?}: global, local or others"),
            ));
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
async fn settings() -> Json<Value> {
    Json(json!({
        "external": {"email": true, "phone": false, "anonymous_users": true},
        "disable_signup": false,
        "mailer_autoconfirm": true,
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
