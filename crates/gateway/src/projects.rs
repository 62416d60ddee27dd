//! Who may call the control API for which project, and the project and key
//! routes themselves.
//!
//! `/v1/projects/NAME/...` addresses project NAME: [`scope_from_path`]
//! rewrites it to `/v1/...` with a [`Scope`] before routing, so every
//! route exists once. An unscoped `/v1/...` addresses the caller's own
//! project (a key's; the admin's is `default`). The admin credential may
//! do anything; a project's service key may use its own project's routes;
//! a public key reaches only the data routes of its project, as the access
//! rules allow. Projects and keys are managed by the admin only. Only the
//! admin learns whether a project exists: a key of another project is
//! refused first, whatever the name.
//!
//! [`authenticate`] finds the caller once per request, from memory
//! (`Auth`). A request without a credential may be a presigned object URL
//! (`wok-key`, `wok-expires`, `wok-signature` in the query): its
//! signature is checked against the signer's S3 secret, and its expiry by
//! the server's clock (`Gateway::clock`); the signer is then the caller.
//! [`json_errors`] turns axum's own answers (extractor rejections, 405)
//! into the JSON error body.
use crate::convert;
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use api_types::{CreateKey, CreateProject, IssuedKey, KeyList, ProjectList};
use auth::Caller;
use axum::Json;
use axum::extract::{Extension, Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::{Access, KeyKind, ProjectId, ResourceKind};

/// The project a control request addresses.
#[derive(Debug, Clone)]
pub struct Scope(pub ProjectId);

fn bearer(request: &Request) -> Option<String> {
    let Some(header) = request.headers().get(http::header::AUTHORIZATION) else {
        // supabase-js's shape without a user: the project's key as `apikey`.
        if let Some(key) = request.headers().get("apikey") {
            return key.to_str().ok().map(|key| key.trim().to_owned());
        }
        // Browsers cannot set headers on a WebSocket: the realtime
        // endpoint takes the key as `?access_token=` too.
        if request.uri().path().ends_with("/realtime") {
            return request.uri().query()?.split('&').find_map(|pair| {
                let token = pair.strip_prefix("access_token=")?;
                urlencoding::decode(token)
                    .ok()
                    .map(|token| token.into_owned())
            });
        }
        return None;
    };
    let header = header.to_str().ok()?;
    Some(
        header
            .strip_prefix("Bearer ")
            .unwrap_or(header)
            .trim()
            .to_owned(),
    )
}

/// Finds who calls, and sets the default scope unless a project route did.
pub async fn authenticate(
    State(gateway): State<SharedGateway>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(&request) else {
        // No credential: a presigned object URL, or nothing.
        let claim = match presigned(&request, gateway.clock.now()) {
            None => return ApiError::Unauthorized.into_response(),
            Some(Err(error)) => return error.into_response(),
            Some(Ok(claim)) => claim,
        };
        return match presigned_signer(&gateway, claim).await {
            Ok(caller) => {
                if request.extensions().get::<Scope>().is_none() {
                    request.extensions_mut().insert(Scope(caller.own_project()));
                }
                let actor = caller.actor();
                request.extensions_mut().insert(caller);
                domain::actor::with_actor(actor, next.run(request)).await
            }
            Err(error) => error.into_response(),
        };
    };
    // Every live key and signing key is in memory: no store read,
    // whatever the token.
    let caller = if looks_like_a_jwt(&token) {
        match app_user(&gateway, &request, &token) {
            Ok(caller) => caller,
            Err(error) => return error.into_response(),
        }
    } else {
        match gateway.auth.authenticate(&token) {
            Ok(caller) => caller,
            Err(error) => return ApiError::from(error).into_response(),
        }
    };
    match request.extensions().get::<Scope>() {
        // Only the admin learns whether a project exists: a key of another
        // project is refused (403) before, whatever the name.
        Some(Scope(project)) if caller == Caller::Admin && !gateway.auth.project_known(project) => {
            match gateway.auth.project_exists(project).await {
                Ok(true) => {}
                Ok(false) => {
                    return ApiError::ProjectNotFound(format!(
                        "project {:?} does not exist",
                        project.as_str()
                    ))
                    .into_response();
                }
                Err(error) => return ApiError::from(error).into_response(),
            }
        }
        Some(_) => {}
        // Unscoped paths mean the key's own project (the admin's: `default`).
        None => {
            request.extensions_mut().insert(Scope(caller.own_project()));
        }
    }
    // The writes made for the request name its caller in the change
    // events they log.
    let actor = caller.actor();
    request.extensions_mut().insert(caller);
    domain::actor::with_actor(actor, next.run(request)).await
}

/// Whether a bearer token is shaped like a JWT (an app user's access
/// token) rather than a wok key.
pub(crate) fn looks_like_a_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|&b| b == b'.').count() == 2
}

/// The app user an access token is. With an `apikey` beside it (the
/// supabase-js shape), the key must be a live key of the token's project.
fn app_user(gateway: &SharedGateway, request: &Request, token: &str) -> Result<Caller, ApiError> {
    let identity = gateway.accounts.verify(token, gateway.clock.now())?;
    if let Some(key) = request.headers().get("apikey") {
        let key = key.to_str().unwrap_or_default().trim();
        match gateway.auth.authenticate(key) {
            Ok(caller) if caller.member_of(&identity.project) => {}
            Ok(_) => {
                return Err(ApiError::NotAllowed(
                    "the apikey and the access token belong to different projects".to_owned(),
                ));
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Caller::User(identity))
}

/// The query parameters of a presigned URL.
pub const PRESIGN_KEY: &str = "wok-key";
pub const PRESIGN_EXPIRES: &str = "wok-expires";
pub const PRESIGN_SIGNATURE: &str = "wok-signature";

/// What a presigned URL claims, read from the request.
struct Presigned {
    access_key: String,
    method: &'static str,
    project: ProjectId,
    path: String,
    expires: i64,
    signature: String,
}

/// A presigned object request (`wok-key`, `wok-expires`, `wok-signature`
/// in the query, no credential), if it is one.
fn presigned(request: &Request, now: domain::UnixMillis) -> Option<Result<Presigned, ApiError>> {
    let params: std::collections::HashMap<String, String> =
        axum::extract::Query::try_from_uri(request.uri())
            .map(|axum::extract::Query(params)| params)
            .ok()?;
    let signature = params.get(PRESIGN_SIGNATURE)?.clone();
    let refused = |message: &str| Some(Err(ApiError::NotAllowed(message.to_owned())));
    let path = request.uri().path().to_owned();
    if !path.starts_with("/v1/objects/") {
        return refused("presigned URLs are for objects only");
    }
    let method = match *request.method() {
        http::Method::GET | http::Method::HEAD => "GET",
        http::Method::PUT => "PUT",
        _ => return refused("a presigned URL allows GET, HEAD or PUT"),
    };
    let (Some(access_key), Some(expires)) = (
        params.get(PRESIGN_KEY).cloned(),
        params
            .get(PRESIGN_EXPIRES)
            .and_then(|expires| expires.parse::<i64>().ok()),
    ) else {
        return refused("the presigned URL is incomplete");
    };
    if now / 1000 > expires {
        return refused("the presigned URL has expired");
    }
    let project = match request.extensions().get::<Scope>() {
        Some(Scope(project)) => project.clone(),
        None => match auth::project_of_access_key(&access_key) {
            Some(project) => project,
            None => return refused("the presigned URL's signature does not match"),
        },
    };
    Some(Ok(Presigned {
        access_key,
        method,
        project,
        path,
        expires,
        signature,
    }))
}

/// The signer of a presigned request, if its signature holds.
async fn presigned_signer(gateway: &SharedGateway, claim: Presigned) -> Result<Caller, ApiError> {
    let signer = gateway
        .auth
        .verify_presigned(
            &claim.access_key,
            claim.method,
            &claim.project,
            &claim.path,
            claim.expires,
            &claim.signature,
        )
        .map_err(|_| {
            ApiError::NotAllowed(
                "the presigned URL's signature does not match, or its key was revoked".to_owned(),
            )
        })?;
    match signer {
        auth::Signer::Caller(caller) => Ok(caller),
        // An app user's URL works while its session does, and the user's
        // rules are asked again at each use.
        auth::Signer::User {
            project,
            user_id,
            session_id,
        } => match gateway
            .accounts
            .presigned_identity(
                &project,
                &user_id,
                &session_id,
                claim.expires,
                gateway.clock.now(),
            )
            .await
        {
            Ok(identity) => Ok(Caller::User(identity)),
            Err(auth::AuthError::Store(error)) => Err(error.into()),
            Err(_) => Err(ApiError::NotAllowed(
                "the presigned URL's session has ended".to_owned(),
            )),
        },
    }
}

/// Rewrites `/v1/projects/NAME/REST` to `/v1/REST` with a [`Scope`] of
/// project NAME, before routing, so every project route exists once. The
/// rest of the path stays as sent (still percent-encoded). The project
/// routes themselves (`/v1/projects`, `/v1/projects/NAME`) are left alone.
pub fn scope_from_path(mut request: Request) -> Request {
    let Some((name, rest)) = request
        .uri()
        .path()
        .strip_prefix("/v1/projects/")
        .and_then(|path| path.split_once('/'))
    else {
        return request;
    };
    if rest.is_empty() || rest == "projects" || rest.starts_with("projects/") {
        return request;
    }
    let Ok(project) = ProjectId::new(name) else {
        return request;
    };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("/v1/{rest}?{query}"),
        None => format!("/v1/{rest}"),
    };
    let Ok(path_and_query) = path_and_query.parse::<http::uri::PathAndQuery>() else {
        return request;
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
        request.extensions_mut().insert(Scope(project));
    }
    request
}

/// For the routes of one project's functions and data: the caller must
/// serve the scope's project.
pub async fn require_project_access(
    Extension(caller): Extension<Caller>,
    Extension(Scope(project)): Extension<Scope>,
    request: Request,
    next: Next,
) -> Response {
    if !caller.serves(&project) {
        return ApiError::NotAllowed(format!(
            "this credential has no access to project {:?}",
            project.as_str()
        ))
        .into_response();
    }
    next.run(request).await
}

/// For the routes of a project's data: the caller must belong to the
/// scope's project (a public key too); each handler then asks
/// [`authorize`] for the collection or bucket it touches.
pub async fn require_project_member(
    Extension(caller): Extension<Caller>,
    Extension(Scope(project)): Extension<Scope>,
    request: Request,
    next: Next,
) -> Response {
    if !caller.member_of(&project) {
        return ApiError::NotAllowed(format!(
            "this credential has no access to project {:?}",
            project.as_str()
        ))
        .into_response();
    }
    next.run(request).await
}

/// Whether the caller may `access` one collection or bucket of `project`:
/// service keys and the admin always; public keys as its rule says.
pub async fn authorize(
    gateway: &SharedGateway,
    caller: &Caller,
    project: &ProjectId,
    kind: ResourceKind,
    name: &str,
    access: Access,
) -> Result<(), ApiError> {
    if gateway.auth.allows(caller, project, kind, name, access) {
        Ok(())
    } else {
        Err(not_allowed(kind, name, access))
    }
}

/// The refusal of `access` to a resource.
pub fn not_allowed(kind: ResourceKind, name: &str, access: Access) -> ApiError {
    let verb = match access {
        Access::Read => "read",
        Access::Write => "write",
    };
    ApiError::NotAllowed(format!(
        "this key may not {verb} {} {name:?}",
        kind.as_str()
    ))
}

/// What a caller may do in a bucket or key-value store: everything, or
/// what its per-user rules allow key by key ([`gate`]).
pub enum Gate {
    All,
    Paths(std::sync::Arc<auth::rules::PathRules>, auth::rules::Subject),
}

impl Gate {
    /// Whether the rules (if any) let the caller do `op` on `key`.
    pub fn allows(
        &self,
        op: auth::rules::Operation,
        key: &str,
        resource: &serde_json::Value,
        request: &serde_json::Value,
        now: domain::UnixMillis,
    ) -> bool {
        match self {
            Gate::All => true,
            Gate::Paths(rules, subject) => rules.allows(op, subject, key, resource, request, now),
        }
    }

    /// Whether the rules (if any) let the caller read `key`, stored as
    /// `resource`.
    pub fn may_read(
        &self,
        key: &str,
        resource: &serde_json::Value,
        now: domain::UnixMillis,
    ) -> bool {
        self.allows(
            auth::rules::Operation::Read,
            key,
            resource,
            &serde_json::Value::Null,
            now,
        )
    }

    /// Whether the rules (if any) let the caller list the keys under
    /// `prefix`; the error says what a listing may name.
    pub fn allows_listing(&self, prefix: &str, now: domain::UnixMillis) -> Result<(), ApiError> {
        match self {
            Gate::All => Ok(()),
            Gate::Paths(rules, subject) => {
                if rules.allows_listing(subject, prefix, now) {
                    Ok(())
                } else {
                    Err(ApiError::NotAllowed(format!(
                        "the rules allow no listing of the prefix {prefix:?}: list within a key pattern they cover, like users/UID/"
                    )))
                }
            }
        }
    }
}

/// Whether `caller` may `access` a bucket or key-value store: all of it,
/// some keys (per-user rules), or none (an error).
pub fn gate(
    gateway: &SharedGateway,
    caller: &Caller,
    project: &ProjectId,
    kind: ResourceKind,
    name: &str,
    access: Access,
) -> Result<Gate, ApiError> {
    match gateway.auth.decide(caller, project, kind, name, access) {
        auth::Decision::All => Ok(Gate::All),
        auth::Decision::Paths(rules, subject) => Ok(Gate::Paths(rules, subject)),
        auth::Decision::Rules(..) | auth::Decision::Nothing => Err(not_allowed(kind, name, access)),
    }
}

/// For what changes a project's code or opens its data (deploys, removal,
/// rollback, access rules): service keys and the admin, not a function's
/// own credentials.
pub fn require_manager(caller: &Caller, project: &ProjectId) -> Result<(), ApiError> {
    if caller.manages(project) {
        Ok(())
    } else {
        Err(ApiError::NotAllowed(
            "this needs the project's service key or the admin credential (a function's credentials may not deploy or change access rules)".to_owned(),
        ))
    }
}

/// For management routes of a project's data (indexes, access rules):
/// service keys and the admin only.
pub fn require_service(caller: &Caller, project: &ProjectId) -> Result<(), ApiError> {
    if caller.serves(project) {
        Ok(())
    } else {
        Err(ApiError::NotAllowed(
            "this needs the project's service key or the admin credential".to_owned(),
        ))
    }
}

fn s3_pair(pair: auth::S3Pair) -> api_types::S3Credentials {
    api_types::S3Credentials {
        access_key_id: pair.access_key_id,
        secret_access_key: pair.secret_access_key,
    }
}

/// `GET /v1/s3/credentials`: the calling credential's S3 access key pair.
pub async fn own_s3_credentials(
    State(gateway): State<SharedGateway>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<api_types::S3Credentials>, ApiError> {
    let access_key_id = caller.s3_access_key();
    let secret_access_key = gateway.auth.s3_secret(&access_key_id).ok_or_else(|| {
        ApiError::Internal(format!(
            "the S3 secret of {access_key_id} cannot be opened (another server key?)"
        ))
    })?;
    Ok(Json(api_types::S3Credentials {
        access_key_id,
        secret_access_key,
    }))
}

/// `POST /v1/keys/ID/s3-secret`: a new S3 secret for a key (admin), in
/// effect at once; the old one, and URLs presigned with it, stop working.
/// The key's token is unchanged.
pub async fn rotate_s3_secret(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Json<api_types::S3Credentials>, ApiError> {
    gateway
        .auth
        .rotate_s3_secret(&project, &id)
        .await?
        .map(|pair| Json(s3_pair(pair)))
        .ok_or_else(|| ApiError::NotFound(format!("no live key {id:?} in this project")))
}

/// `GET .../_access` of a collection or bucket (service keys and the admin).
pub async fn read_rule(
    gateway: &SharedGateway,
    caller: &Caller,
    project: ProjectId,
    kind: ResourceKind,
    name: String,
) -> Result<Json<api_types::AccessSetting>, ApiError> {
    require_service(caller, &project)?;
    Ok(Json(match gateway.auth.rule(&project, kind, &name) {
        domain::AccessRule::Custom(text) => api_types::AccessSetting {
            access: "rules".to_owned(),
            rules: serde_json::from_str(&text).ok(),
        },
        preset => api_types::AccessSetting {
            access: preset.as_str().to_owned(),
            rules: None,
        },
    }))
}

/// `PUT .../_access` of a collection or bucket with `{"access": "private"
/// | "public-read" | "public-read-write"}`; applies from the answer on.
pub async fn write_rule(
    gateway: &SharedGateway,
    caller: &Caller,
    project: ProjectId,
    kind: ResourceKind,
    name: String,
    body: &[u8],
) -> Result<Json<api_types::AccessSetting>, ApiError> {
    require_manager(caller, &project)?;
    let setting: api_types::AccessSetting = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(ErrorCode::InvalidAccess, error.to_string()))?;
    let invalid = |message: String| ApiError::bad_request(ErrorCode::InvalidAccess, message);
    let rule = match (&setting.rules, setting.access.as_str()) {
        (Some(rules), "" | "rules") => {
            if !rules.is_object() {
                return Err(invalid(match kind {
                    ResourceKind::Bucket | ResourceKind::KvStore => "rules are an object of key patterns (like \"users/{uid}/**\"), each an object of CEL expressions by operation (read, list, create, update, delete)".to_owned(),
                    _ => "rules are an object of CEL expressions by operation (read, list, create, update, delete)".to_owned(),
                }));
            }
            let compiled =
                auth::rules::Compiled::parse(kind, &rules.to_string()).map_err(invalid)?;
            domain::AccessRule::Custom(compiled.to_text().into())
        }
        (Some(_), _) => {
            return Err(invalid(
                "give either a preset as \"access\" or per-user \"rules\", not both".to_owned(),
            ));
        }
        (None, name) => convert::access_rule(name)?,
    };
    gateway.auth.set_rule(&project, kind, &name, rule).await?;
    Ok(Json(setting))
}

/// For project and key management: the admin credential only.
pub async fn require_admin(
    Extension(caller): Extension<Caller>,
    request: Request,
    next: Next,
) -> Response {
    if caller != Caller::Admin {
        return ApiError::NotAllowed(
            "managing projects and keys needs the admin credential".to_owned(),
        )
        .into_response();
    }
    next.run(request).await
}

fn project_name(name: &str) -> Result<ProjectId, ApiError> {
    ProjectId::new(name)
        .map_err(|error| ApiError::bad_request(ErrorCode::InvalidName, error.to_string()))
}

pub async fn list_projects(
    State(gateway): State<SharedGateway>,
) -> Result<Json<ProjectList>, ApiError> {
    let projects = gateway.projects.list_projects().await?;
    Ok(Json(ProjectList {
        projects: projects.iter().map(convert::project).collect(),
    }))
}

pub async fn create_project(
    State(gateway): State<SharedGateway>,
    body: axum::body::Bytes,
) -> Result<(http::StatusCode, Json<api_types::ProjectInfo>), ApiError> {
    let request: CreateProject = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("expected {{\"name\": \"...\"}}: {error}"),
        )
    })?;
    let project = project_name(&request.name)?;
    let created = gateway.projects.create_project(&project).await?;
    Ok((http::StatusCode::CREATED, Json(convert::project(&created))))
}

pub async fn remove_project(
    State(gateway): State<SharedGateway>,
    Path(name): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    let project = project_name(&name)?;
    if project == ProjectId::default_project() {
        return Err(ApiError::Conflict {
            code: ErrorCode::ProjectRequired,
            message: "the default project always exists".to_owned(),
        });
    }
    if gateway.auth.remove_project(&project).await? {
        Ok(http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::ProjectNotFound(format!(
            "project {name:?} does not exist"
        )))
    }
}

pub async fn list_keys(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
) -> Result<Json<KeyList>, ApiError> {
    let keys = gateway.projects.keys(&project).await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(convert::key).collect(),
    }))
}

pub async fn create_key(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    body: axum::body::Bytes,
) -> Result<(http::StatusCode, Json<IssuedKey>), ApiError> {
    let request: CreateKey = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("expected {{\"kind\": \"service\" or \"public\", \"name\": \"...\"}}: {error}"),
        )
    })?;
    let kind = KeyKind::parse(&request.kind).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!(
                "kind must be \"service\" or \"public\", not {:?}",
                request.kind
            ),
        )
    })?;
    if request.name.len() > 200 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            "a key name is at most 200 bytes",
        ));
    }
    let issued = gateway.auth.issue(&project, kind, &request.name).await?;
    Ok((
        http::StatusCode::CREATED,
        Json(IssuedKey {
            key: convert::key(&issued.key),
            token: issued.token,
            s3: s3_pair(issued.s3),
        }),
    ))
}

pub async fn revoke_key(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    if gateway.auth.revoke(&project, &id).await? {
        Ok(http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no live key {id:?} in this project"
        )))
    }
}

/// axum's own answers (extractor rejections such as a path that is not
/// UTF-8 once decoded or a malformed query, in plain text; a method a route
/// does not have, with no body) are not the JSON error body; the control
/// API answers every error with it.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let plain = content_type.is_some_and(|value| value.starts_with("text/plain"));
    if !(status.is_client_error() && (plain || content_type.is_none())) {
        return response;
    }
    if status == http::StatusCode::METHOD_NOT_ALLOWED {
        let allow = response.headers().get(http::header::ALLOW).cloned();
        let methods = allow
            .as_ref()
            .and_then(|allow| allow.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let mut response = ApiError::MethodNotAllowed(format!(
            "this path does not take that method; it takes {methods}"
        ))
        .into_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(http::header::ALLOW, allow);
        }
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_owned();
    // The code of the status, from the table (rejections are 400s, and a
    // body over a limit 413); a query string axum could not read is a
    // query error.
    if status == http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(message).into_response();
    }
    let code = if message.starts_with("Failed to deserialize query string") {
        ErrorCode::InvalidQuery
    } else {
        ErrorCode::InvalidRequest
    };
    ApiError::bad_request(code, message).into_response()
}
