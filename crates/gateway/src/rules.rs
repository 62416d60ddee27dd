//! `POST /v1/rules/_test`: a per-user rule set tried on sample requests,
//! without touching any data (service key or admin; `wok rules test`).
//! `kind` says what the rules are for: `collection` (the default),
//! `bucket`, `kv` or `topic`. Each case names an operation, the caller
//! (`auth`: `uid`, `aal`, `anonymous`, `claims`; null or absent: a public
//! key without a user), what is stored (`resource`: for a collection
//! `{id, data}`), what a write brings (`request`: for a collection
//! `{data}`), for a bucket or store the `key` (or, for `list`, the
//! `prefix`), and optionally the time (`now`, RFC 3339). For a
//! collection's `list`, the answer also gives the filter the rule adds to
//! queries for that caller, and whether the sample document passes it,
//! which must be what the rule says of it.
use crate::projects::{Scope, require_service};
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use auth::Caller;
use auth::rules::{Compiled, Operation, Resource, Subject};
use axum::Json;
use axum::extract::{Extension, State};
use domain::ResourceKind;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Most cases in one request.
const MAX_CASES: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTest {
    #[serde(default)]
    kind: Option<String>,
    rules: Value,
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
    resource: Option<Value>,
    #[serde(default)]
    request: Option<Value>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
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
    let kind = match test.kind.as_deref().unwrap_or("collection") {
        "collection" => ResourceKind::Collection,
        "bucket" => ResourceKind::Bucket,
        "kv" => ResourceKind::KvStore,
        "topic" => ResourceKind::Topic,
        other => {
            return Err(invalid(format!(
                "kind {other:?} is not collection, bucket, kv or topic"
            )));
        }
    };
    if !test.rules.is_object() {
        return Err(invalid("rules are a JSON object".to_owned()));
    }
    let compiled = Compiled::parse(kind, &test.rules.to_string()).map_err(invalid)?;
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
        let (resource, request) = (
            case.resource.unwrap_or(Value::Null),
            case.request.unwrap_or(Value::Null),
        );
        let rules = match &compiled {
            Compiled::Paths(rules) => {
                let allowed = if op == Operation::List {
                    rules.allows_listing(&subject, case.prefix.as_deref().unwrap_or(""), now)
                } else {
                    let key = case.key.as_deref().ok_or_else(|| {
                        invalid(format!(
                            "case {n}: a bucket's or store's case names its key"
                        ))
                    })?;
                    rules.allows(op, &subject, key, &resource, &request, now)
                };
                results.push(verdict(case.name, op, allowed, case.expect, &mut failed));
                continue;
            }
            Compiled::Set(rules) if kind == ResourceKind::Topic => {
                let allowed = rules.allows_with(op, &subject, &resource, &request, None, now);
                results.push(verdict(case.name, op, allowed, case.expect, &mut failed));
                continue;
            }
            Compiled::Set(rules) => rules,
        };
        let resource: Option<CaseDocument> = (!resource.is_null())
            .then(|| serde_json::from_value(resource))
            .transpose()
            .map_err(|error| invalid(format!("case {n}: resource is {{id, data}}: {error}")))?;
        let request: Option<CaseRequest> = (!request.is_null())
            .then(|| serde_json::from_value(request))
            .transpose()
            .map_err(|error| invalid(format!("case {n}: request is {{data}}: {error}")))?;
        let allowed = rules.allows(
            op,
            &subject,
            resource.as_ref().map(|document| Resource {
                id: &document.id,
                data: &document.data,
                version: document.version,
            }),
            request.as_ref().map(|request| &request.data),
            now,
        );
        let mut result = json!({ "name": case.name, "op": op.as_str(), "allowed": allowed });
        let mut ok = case.expect.is_none_or(|expected| expected == allowed);
        if op == Operation::List {
            let filter = rules.list_filter(&subject, now);
            if let Some(document) = &resource {
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

/// A case's result, without a list filter.
fn verdict(
    name: Option<String>,
    op: Operation,
    allowed: bool,
    expect: Option<bool>,
    failed: &mut usize,
) -> Value {
    let ok = expect.is_none_or(|expected| expected == allowed);
    *failed += usize::from(!ok);
    let mut result = json!({ "name": name, "op": op.as_str(), "allowed": allowed, "ok": ok });
    if let Some(expected) = expect {
        result["expected"] = expected.into();
    }
    result
}
