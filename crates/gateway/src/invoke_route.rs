//! `ANY /fn/NAME/...`: the request hot path.
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use auth::Caller;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use domain::{FunctionName, KeyKind, ProjectId, RequireAuth};
use functions::{InvokeError, Invoked};
use http::{HeaderValue, Uri};
use http_body_util::BodyExt;
use invoke::{AuthKind, BoxError, CallerIdentity};

/// Header carrying the invocation id on every function response.
pub const INVOCATION_ID_HEADER: &str = "x-wok-invocation-id";

/// Splits `/fn/NAME/rest?query` (project `default`) or
/// `/p/PROJECT/fn/NAME/rest?query` into the project, the name and the
/// guest's path-and-query.
fn split_path(uri: &Uri) -> Option<(Option<&str>, &str, String)> {
    let (project, path) = match uri.path().strip_prefix("/p/") {
        Some(scoped) => {
            let (project, path) = scoped.split_once('/')?;
            (Some(project), path.strip_prefix("fn/")?)
        }
        None => (None, uri.path().strip_prefix("/fn/")?),
    };
    let (name, rest) = match path.find('/') {
        Some(slash) => (&path[..slash], &path[slash..]),
        None => (path, "/"),
    };
    let guest_path = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    Some((project, name, guest_path))
}

/// Whether the caller asked for an asynchronous invocation
/// (`Prefer: respond-async`, RFC 7240).
fn wants_async(headers: &http::HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| preference.trim().eq_ignore_ascii_case("respond-async"))
}

pub async fn invoke(State(gateway): State<SharedGateway>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let metrics = gateway.metrics.clone();
    let response = match run(gateway, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    metrics.response_head(started.elapsed().as_secs_f64());
    response
}

async fn run(gateway: SharedGateway, request: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let (project, name, guest_path) =
        split_path(&parts.uri).ok_or_else(|| ApiError::NotFound("no such route".to_owned()))?;
    let (named_project, name) = (project.map(str::to_owned), name.to_owned());
    let not_found = || match &named_project {
        Some(project) => ApiError::FunctionNotFound(format!(
            "function {name:?} does not exist in project {project:?}"
        )),
        None => ApiError::FunctionNotFound(format!("function {name:?} does not exist")),
    };
    let function = FunctionName::new(&name).map_err(|_| not_found())?;
    let project = match &named_project {
        Some(project) => ProjectId::new(project).map_err(|_| not_found())?,
        None => ProjectId::default_project(),
    };
    let deployed = gateway
        .functions
        .get(&project, &function)
        .ok_or_else(not_found)?;
    let limits = &deployed.version.config.limits;

    // The function sees who called, as wok verified it, never as the
    // client says: before it is queued or run.
    let identity = identify(&gateway, &project, &parts.headers);
    let required = deployed.version.config.require_auth;
    let refused = match required {
        RequireAuth::None => false,
        RequireAuth::Any => identity.auth == AuthKind::None,
        RequireAuth::User => identity.auth != AuthKind::User,
    };
    if refused {
        crate::drain_in_background(body);
        return Err(ApiError::NotAllowedUnauthenticated(match required {
            RequireAuth::User => format!(
                "function {name:?} requires a signed-in user of project {:?}: send `Authorization: Bearer ACCESS_TOKEN`",
                project.as_str()
            ),
            _ => format!(
                "function {name:?} requires a credential of project {:?}: a key or a signed-in user's access token",
                project.as_str()
            ),
        }));
    }
    identity.set_on(&mut parts.headers);

    if wants_async(&parts.headers) {
        return crate::events::invoke_async(&gateway, project, function, parts, body, guest_path)
            .await;
    }

    let declared_length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limits.max_request_body.bytes()) {
        crate::drain_in_background(body);
        return Err(ApiError::PayloadTooLarge(format!(
            "the request body is larger than this function's limit of {}",
            limits.max_request_body
        )));
    }

    // The guest sees the rest of the path and the query, unchanged, with the
    // authority the client used.
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(guest_path)
        .build()
        .map_err(|error| {
            ApiError::bad_request(
                ErrorCode::InvalidRequest,
                format!("the request URI is invalid: {error}"),
            )
        })?;
    let body = body
        .map_err(|error| Box::new(error) as BoxError)
        .boxed_unsync();
    let invoked = gateway
        .functions
        .invoke(
            &project,
            &function,
            http::Request::from_parts(parts, body),
            "http",
        )
        .await;
    let (id, mut response) = match invoked {
        Ok(Invoked { id, response }) => (id, response.map(axum::body::Body::new)),
        Err(InvokeError::Failed { id, failure }) => (id, ApiError::Guest(failure).into_response()),
        Err(InvokeError::NoSuchFunction(_)) => return Err(not_found()),
        Err(error @ InvokeError::AtCapacity { .. }) => {
            gateway.metrics.throttled(&project, &function);
            return Err(ApiError::Overloaded(error.to_string()));
        }
    };
    response.headers_mut().insert(
        INVOCATION_ID_HEADER,
        HeaderValue::from_str(&id.0).expect("invocation ids are ASCII"),
    );
    Ok(response)
}

/// Who calls a function of `project`: a credential of wok in
/// `Authorization` (or `apikey`), verified, of that project. Anything else
/// is nobody: another project's credential, an ended session, or a token
/// of a scheme of the function's own (which it still receives).
fn identify(
    gateway: &SharedGateway,
    project: &ProjectId,
    headers: &http::HeaderMap,
) -> CallerIdentity {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .or_else(|| headers.get("apikey"))
        .and_then(|value| value.to_str().ok())
        .map(|value| value.strip_prefix("Bearer ").unwrap_or(value).trim());
    let Some(token) = token else {
        return CallerIdentity::default();
    };
    if crate::projects::looks_like_a_jwt(token) {
        return match gateway.accounts.verify(token, gateway.clock.now()) {
            Ok(user) if &user.project == project => CallerIdentity {
                auth: AuthKind::User,
                user_id: Some(user.user_id.clone()),
                session_id: Some(user.session_id.clone()),
                claims: Some(user.claims.to_string()),
                aal: Some(user.aal),
                key_id: None,
            },
            _ => CallerIdentity::default(),
        };
    }
    let (auth, key_id) = match gateway.auth.authenticate(token) {
        Ok(Caller::Admin) => (AuthKind::Admin, None),
        Ok(Caller::Key {
            project: own,
            kind,
            id,
        }) if &own == project => (
            match kind {
                KeyKind::Public => AuthKind::PublicKey,
                KeyKind::Service => AuthKind::ServiceKey,
            },
            Some(id),
        ),
        Ok(Caller::Function {
            project: own, id, ..
        }) if &own == project => (AuthKind::Function, Some(id)),
        _ => return CallerIdentity::default(),
    };
    CallerIdentity {
        auth,
        key_id,
        ..CallerIdentity::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_function_name_from_guest_path() {
        let uri: Uri = "/fn/hello/a/b?x=1&y=2".parse().unwrap();
        assert_eq!(
            split_path(&uri),
            Some((None, "hello", "/a/b?x=1&y=2".to_owned()))
        );
        let uri: Uri = "/fn/hello".parse().unwrap();
        assert_eq!(split_path(&uri), Some((None, "hello", "/".to_owned())));
        let uri: Uri = "/fn/hello?q".parse().unwrap();
        assert_eq!(split_path(&uri), Some((None, "hello", "/?q".to_owned())));
        let uri: Uri = "/p/shop/fn/hello/a?q".parse().unwrap();
        assert_eq!(
            split_path(&uri),
            Some((Some("shop"), "hello", "/a?q".to_owned()))
        );
        let uri: Uri = "/p/shop/hello".parse().unwrap();
        assert_eq!(split_path(&uri), None);
    }
}
