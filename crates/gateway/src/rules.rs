//! `POST /v1/rules/_test`: a per-user rule set tried on sample requests,
//! without touching any data (service key or admin; `wok rules test`).
//! Each case names an operation, the caller (`auth`: `uid`, `aal`,
//! `anonymous`, `claims`; null or absent: a public key without a user),
//! the stored document (`resource`: `{id, data}`), the written one
//! (`request`: `{data}`) and optionally the time (`now`, RFC 3339). For
//! `list`, the answer also gives the filter the rule adds to queries for
//! that caller, and whether the sample document passes it, which must be
//! what the rule says of it.
use crate::projects::{Scope, require_service};
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use auth::Caller;
use auth::rules::{Operation, Resource, RuleSet, RuleSource, Subject};
use axum::Json;
use axum::extract::{Extension, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Most cases in one request.
const MAX_CASES: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTest {
    rules: RuleSource,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    name: Option<String>,
    op: String,
    #[serde(default)]
    auth: Option<CaseAuth>,
    #[serde(default)]
    resource: Option<CaseDocument>,
    #[serde(default)]
    request: Option<CaseRequest>,
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    expect: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseAuth {
    uid: String,
    #[serde(default = "one")]
    aal: u8,
    #[serde(default)]
    anonymous: bool,
    #[serde(default)]
    claims: Value,
}

fn one() -> u8 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDocument {
    #[serde(default)]
    id: String,
    data: Map<String, Value>,
    #[serde(default)]
    version: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRequest {
    data: Map<String, Value>,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidAccess, message)
}

pub async fn test(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    require_service(&caller, &project)?;
    let test: RuleTest = serde_json::from_slice(&body)
        .map_err(|error| invalid(format!("a rule test is {{\"rules\", \"cases\"}}: {error}")))?;
    if test.cases.len() > MAX_CASES {
        return Err(invalid(format!("at most {MAX_CASES} cases at once")));
    }
    let rules = RuleSet::compile(test.rules).map_err(invalid)?;
    let mut results = Vec::with_capacity(test.cases.len());
    let mut failed = 0;
    for (n, case) in test.cases.into_iter().enumerate() {
        let op = Operation::parse(&case.op).ok_or_else(|| {
            invalid(format!(
                "case {n}: op {:?} is not read, list, create, update or delete",
                case.op
            ))
        })?;
        let now = match &case.now {
            None => gateway.clock.now(),
            Some(text) => humantime::parse_rfc3339_weak(text)
                .map_err(|_| invalid(format!("case {n}: now {text:?} is not an RFC 3339 time")))?
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as i64),
        };
        let subject = case.auth.map_or_else(Subject::default, |auth| Subject {
            uid: Some(auth.uid),
            session: None,
            aal: auth.aal,
            anonymous: auth.anonymous,
            claims: auth.claims,
        });
        let resource = case.resource.as_ref().map(|document| Resource {
            id: &document.id,
            data: &document.data,
            version: document.version,
        });
        let allowed = rules.allows(
            op,
            &subject,
            resource,
            case.request.as_ref().map(|request| &request.data),
            now,
        );
        let mut result = json!({ "name": case.name, "op": op.as_str(), "allowed": allowed });
        let mut ok = case.expect.is_none_or(|expected| expected == allowed);
        if op == Operation::List {
            let filter = rules.list_filter(&subject, now);
            if let Some(document) = &case.resource {
                let passes = match &filter {
                    None => true,
                    Some(filter) => store::docs::parse_query(&json!({ "where": filter }))
                        .map(|query| query.matches(&document.data))
                        .unwrap_or(false),
                };
                result["filter_passes"] = passes.into();
                ok &= passes == allowed;
            }
            result["filter"] = filter.unwrap_or(Value::Null);
        }
        if let Some(expected) = case.expect {
            result["expected"] = expected.into();
        }
        result["ok"] = ok.into();
        failed += usize::from(!ok);
        results.push(result);
    }
    Ok(Json(json!({ "results": results, "failed": failed })))
}
