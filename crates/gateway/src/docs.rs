//! Documents over REST: `/v1/docs/COLLECTION[/ID]` for the scope's
//! project, with `_query`, `_count`, `_explain`, `_indexes` and `_batch`
//! (names that no collection or document id can take). The rules are
//! `data::Documents`'; this file translates. A batch names its collections
//! in its body, so a caller that may write to none of the project's
//! collections (`Auth::may_write_some`) is refused before the body is
//! read.
use crate::http_util::{Precondition, etag, precondition, read_json_body};
use crate::projects::{Scope, authorize, read_rule, require_service, write_rule};
use crate::{ApiError, SharedGateway};
use api_types::ErrorCode;
use auth::rules::{Operation, Resource, RuleSet, Subject};
use auth::{Caller, Decision};
use axum::Json;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use data::Documents;
use domain::{Access, CollectionName, ResourceKind};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use store::docs::{DocCondition, DocWrite, Index, MAX_DOCUMENT_BYTES};

/// Largest body of a single-document request: the document limit plus room
/// for pretty-printing.
const MAX_DOCUMENT_BODY: usize = 2 * MAX_DOCUMENT_BYTES;
/// Largest batch body (Firestore's limit for a request, too).
const MAX_BATCH_BODY: usize = 10 << 20;
/// Largest index declaration.
const MAX_INDEX_BODY: usize = 16 << 10;
/// Largest query body: 100 terms with their values, and a cursor.
const MAX_QUERY_BODY: usize = 256 << 10;

fn collection_name(name: &str) -> Result<CollectionName, ApiError> {
    Ok(Documents::collection_name(name)?)
}

/// What a caller may do with a collection: everything its access allows,
/// or what the collection's per-user rules allow, asked per document.
enum Grant {
    All,
    Rules(Arc<RuleSet>, Subject),
}

/// The collection a request names, if the caller may `access` it (some of
/// it, under per-user rules).
async fn collection_for(
    gateway: &SharedGateway,
    caller: &Caller,
    project: &domain::ProjectId,
    name: &str,
    access: Access,
) -> Result<(CollectionName, Grant), ApiError> {
    let collection = collection_name(name)?;
    match gateway.auth.decide(
        caller,
        project,
        ResourceKind::Collection,
        collection.as_str(),
        access,
    ) {
        Decision::All => Ok((collection, Grant::All)),
        Decision::Rules(rules, subject) => Ok((collection, Grant::Rules(rules, subject))),
        Decision::Paths(..) | Decision::Nothing => Err(crate::projects::not_allowed(
            ResourceKind::Collection,
            name,
            access,
        )),
    }
}

/// A query with the `list` rule's filter ANDed into its `where`.
fn ruled_query(grant: &Grant, now: domain::UnixMillis, mut query: Value) -> Value {
    let Grant::Rules(rules, subject) = grant else {
        return query;
    };
    let Some(filter) = rules.list_filter(subject, now) else {
        return query;
    };
    if let Value::Object(object) = &mut query {
        let combined = match object.remove("where") {
            Some(asked) => serde_json::json!({ "and": [asked, filter] }),
            None => filter,
        };
        object.insert("where".to_owned(), combined);
    }
    query
}

fn resource(document: &store::docs::Document) -> Resource<'_> {
    Resource {
        id: &document.id,
        data: &document.data,
        version: document.version,
    }
}

fn refused(operation: Operation) -> ApiError {
    ApiError::NotAllowed(format!(
        "the collection's rules do not allow this {}",
        operation.as_str()
    ))
}

/// Writes under per-user rules retry this often when the document
/// changes between the read the rule saw and the write.
const RULED_WRITE_TRIES: usize = 5;

/// A write under per-user rules: the rule sees the document as stored
/// and as the write would leave it, and the write happens only if the
/// document is still the one the rule saw (its version), else it is read
/// again. `after`: the document the write leaves from the stored one
/// (`None`: a delete).
async fn ruled_write(
    gateway: &SharedGateway,
    project: &domain::ProjectId,
    collection: &CollectionName,
    id: &str,
    asked: DocCondition,
    (rules, subject): (&RuleSet, &Subject),
    after: impl Fn(Option<&store::docs::Document>) -> Result<Option<Map<String, Value>>, ApiError>,
) -> Result<store::docs::DocWritten, ApiError> {
    for _ in 0..RULED_WRITE_TRIES {
        let now = gateway.clock.now();
        let stored = gateway.docs.get(project, collection, id).await?;
        // What the client asked for is checked against what the rule saw.
        let held = match (&asked, &stored) {
            (DocCondition::Always, _) => true,
            (DocCondition::Version(version), Some(document)) => document.version == *version,
            (DocCondition::Version(_) | DocCondition::Exists, None) => false,
            (DocCondition::Exists, Some(_)) => true,
            (DocCondition::Absent, stored) => stored.is_none(),
        };
        if !held {
            return Err(ApiError::PreconditionFailed(
                "the document is not as If-Match / If-None-Match requires".to_owned(),
            ));
        }
        let data = after(stored.as_ref())?;
        let (operation, allowed) = match (&stored, &data) {
            (None, Some(data)) => (
                Operation::Create,
                rules.allows(Operation::Create, subject, None, Some(data), now),
            ),
            (Some(document), Some(data)) => (
                Operation::Update,
                rules.allows(
                    Operation::Update,
                    subject,
                    Some(resource(document)),
                    Some(data),
                    now,
                ),
            ),
            (stored, None) => (
                Operation::Delete,
                rules.allows(
                    Operation::Delete,
                    subject,
                    stored.as_ref().map(resource),
                    None,
                    now,
                ),
            ),
        };
        if !allowed {
            return Err(refused(operation));
        }
        let condition = match &stored {
            Some(document) => DocCondition::Version(document.version),
            None => DocCondition::Absent,
        };
        let write = match data {
            Some(data) => DocWrite::Set {
                collection: collection.clone(),
                id: Some(id.to_owned()),
                data,
                condition,
            },
            None => DocWrite::Delete {
                collection: collection.clone(),
                id: id.to_owned(),
                condition: if stored.is_some() {
                    condition
                } else {
                    DocCondition::Always
                },
            },
        };
        match write_one(gateway, project, write).await {
            // Changed since the rule saw it: read it again.
            Err(ApiError::PreconditionFailed(_))
            | Err(ApiError::Conflict {
                code: ErrorCode::DocumentExists,
                ..
            }) => continue,
            other => return other,
        }
    }
    Err(ApiError::PreconditionFailed(format!(
        "document {id:?} kept changing while its rules were checked; try again"
    )))
}

/// A JSON body (`{}` when empty); see [`read_json_body`] for the permit.
async fn read_json(
    gateway: &SharedGateway,
    request: Request,
    limit: usize,
) -> Result<(Value, Option<crate::http_util::JsonPermit>), ApiError> {
    read_json_body(
        gateway,
        request,
        limit,
        || Ok(Value::Object(Map::new())),
        |error| {
            ApiError::bad_request(
                ErrorCode::InvalidJson,
                format!("the body is not JSON: {error}"),
            )
        },
    )
    .await
}

fn document_object(value: Value) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(data) => Ok(data),
        other => Err(ApiError::bad_request(
            ErrorCode::InvalidDocument,
            format!("a document is a JSON object, not {}", kind_of(&other)),
        )),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `If-Match: "N"` (only at this version), `If-Match: *` (only if it
/// exists) or `If-None-Match: *` (only if it does not).
fn condition(headers: &http::HeaderMap) -> Result<DocCondition, ApiError> {
    Ok(match precondition(headers)? {
        Precondition::None => DocCondition::Always,
        Precondition::Version(version) => DocCondition::Version(version),
        Precondition::Exists => DocCondition::Exists,
        Precondition::Absent => DocCondition::Absent,
    })
}

fn document_out(document: store::docs::Document) -> api_types::Document {
    api_types::Document {
        id: document.id,
        version: document.version,
        data: document.data,
    }
}

fn written_response(status: http::StatusCode, written: store::docs::DocWritten) -> Response {
    let version = written.version;
    let mut response = (
        status,
        Json(api_types::DocWritten {
            id: written.id,
            version,
        }),
    )
        .into_response();
    if let Some(version) = version {
        response
            .headers_mut()
            .insert(http::header::ETAG, etag(version));
    }
    response
}

/// One write, answered without a batch around its error.
async fn write_one(
    gateway: &SharedGateway,
    project: &domain::ProjectId,
    write: DocWrite,
) -> Result<store::docs::DocWritten, ApiError> {
    Ok(gateway.docs.write(project, None, write).await?)
}

pub async fn list_collections(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<api_types::DocCollectionList>, ApiError> {
    require_service(&caller, &project)?;
    let collections = gateway.docs.collections(&project).await?;
    Ok(Json(api_types::DocCollectionList {
        collections: collections
            .into_iter()
            .map(|info| api_types::DocCollection {
                name: info.name.to_string(),
                documents: info.documents,
                indexes: info.indexes.into_iter().map(index_out).collect(),
            })
            .collect(),
    }))
}

fn index_out(index: Index) -> api_types::DocIndex {
    api_types::DocIndex {
        name: index.name,
        fields: index
            .fields
            .iter()
            .map(|field| format!("{}{}", if field.descending { "-" } else { "" }, field.field))
            .collect(),
    }
}

/// `GET /v1/docs/C?limit=&cursor=`: the collection by id.
pub async fn list_documents(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<api_types::DocPage>, ApiError> {
    let (collection, grant) =
        collection_for(&gateway, &caller, &project, &collection, Access::Read).await?;
    let mut query = serde_json::Map::new();
    for (key, value) in params {
        match key.as_str() {
            "limit" => {
                let limit = value.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(
                        ErrorCode::InvalidQuery,
                        "limit must be a positive integer",
                    )
                })?;
                query.insert(key, Value::from(limit));
            }
            "cursor" => {
                query.insert(key, Value::from(value));
            }
            other => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!("unknown query parameter {other:?}; filters go to POST .../_query"),
                ));
            }
        }
    }
    let query = ruled_query(&grant, gateway.clock.now(), Value::Object(query));
    run_query(gateway, project, collection, query).await
}

async fn run_query(
    gateway: SharedGateway,
    project: domain::ProjectId,
    collection: CollectionName,
    body: Value,
) -> Result<Json<api_types::DocPage>, ApiError> {
    let page = gateway.docs.query(&project, &collection, &body).await?;
    Ok(Json(api_types::DocPage {
        documents: page.documents.into_iter().map(document_out).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/docs/C/_query`.
pub async fn query(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    request: Request,
) -> Result<Json<api_types::DocPage>, ApiError> {
    let (collection, grant) =
        collection_for(&gateway, &caller, &project, &collection, Access::Read).await?;
    let (body, _permit) = read_json(&gateway, request, MAX_QUERY_BODY).await?;
    let body = ruled_query(&grant, gateway.clock.now(), body);
    run_query(gateway, project, collection, body).await
}

/// `POST /v1/docs/C/_count`: the query's `where`; no limit or cursor.
pub async fn count(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    request: Request,
) -> Result<Json<api_types::DocCount>, ApiError> {
    let (collection, grant) =
        collection_for(&gateway, &caller, &project, &collection, Access::Read).await?;
    let query = read_json(&gateway, request, MAX_QUERY_BODY).await?.0;
    let query = ruled_query(&grant, gateway.clock.now(), query);
    let count = gateway.docs.count(&project, &collection, &query).await?;
    Ok(Json(api_types::DocCount { count }))
}

/// `POST /v1/docs/C/_explain`: how the query would run.
pub async fn explain(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    request: Request,
) -> Result<Json<api_types::DocExplain>, ApiError> {
    let collection = collection_name(&collection)?;
    require_service(&caller, &project)?;
    let query = read_json(&gateway, request, MAX_QUERY_BODY).await?.0;
    let plan = gateway.docs.explain(&project, &collection, &query).await?;
    Ok(Json(api_types::DocExplain {
        strategy: plan.strategy.to_owned(),
        index: plan.index,
        index_terms: plan.index_terms,
        branches: plan
            .branches
            .into_iter()
            .map(|branch| api_types::DocExplainBranch {
                index: branch.index,
                index_terms: branch.index_terms,
            })
            .collect(),
        residual_terms: plan.residual_terms,
        sorts_in_memory: plan.sorts_in_memory,
        collection_documents: plan.collection_documents,
    }))
}

/// `POST /v1/docs/C`: a new document with a server-chosen id.
pub async fn create(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (collection, grant) =
        collection_for(&gateway, &caller, &project, &collection, Access::Write).await?;
    let (data, _permit) = read_json(&gateway, request, MAX_DOCUMENT_BODY).await?;
    let data = document_object(data)?;
    if let Grant::Rules(rules, subject) = &grant
        && !rules.allows(
            Operation::Create,
            subject,
            None,
            Some(&data),
            gateway.clock.now(),
        )
    {
        return Err(refused(Operation::Create));
    }
    let write = DocWrite::Set {
        collection,
        id: None,
        data,
        condition: DocCondition::Absent,
    };
    let written = write_one(&gateway, &project, write).await?;
    Ok(written_response(http::StatusCode::CREATED, written))
}

pub async fn get(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (collection, grant) =
        collection_for(&gateway, &caller, &project, &collection, Access::Read).await?;
    let not_found = || ApiError::DocumentNotFound(format!("no document {id:?} in this collection"));
    let document = gateway
        .docs
        .get(&project, &collection, &id)
        .await?
        .ok_or_else(not_found)?;
    // A document the rules hide does not exist, as far as the caller can
    // tell.
    if let Grant::Rules(rules, subject) = &grant
        && !rules.allows(
            Operation::Read,
            subject,
            Some(resource(&document)),
            None,
            gateway.clock.now(),
        )
    {
        return Err(not_found());
    }
    let version = document.version;
    let mut response = Json(document_out(document)).into_response();
    response
        .headers_mut()
        .insert(http::header::ETAG, etag(version));
    Ok(response)
}

/// `PUT /v1/docs/C/ID`: create or replace; 201 when it created.
pub async fn put(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((collection, id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let (collection, grant) =
        collection_for(&gateway, &caller, &project, &collection, Access::Write).await?;
    let condition = condition(request.headers())?;
    let (data, _permit) = read_json(&gateway, request, MAX_DOCUMENT_BODY).await?;
    let data = document_object(data)?;
    let written = match &grant {
        Grant::Rules(rules, subject) => {
            ruled_write(
                &gateway,
                &project,
                &collection,
                &id,
                condition,
                (rules, subject),
                |_| Ok(Some(data.clone())),
            )
            .await
        }
        Grant::All => {
            let write = DocWrite::Set {
                collection,
                id: Some(id),
                data,
                condition,
            };
            write_one(&gateway, &project, write).await
        }
    };
    let written = match written {
        // HTTP says a failed If-None-Match is a failed precondition.
        Err(ApiError::Conflict {
            code: ErrorCode::DocumentExists,
            message,
        }) => return Err(ApiError::PreconditionFailed(message)),
        other => other?,
    };
    let status = if written.existed {
        http::StatusCode::OK
    } else {
        http::StatusCode::CREATED
    };
    Ok(written_response(status, written))
}

/// `PATCH /v1/docs/C/ID`: a JSON merge patch (RFC 7396).
pub async fn patch(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((collection, id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let (collection, grant) =
        collection_for(&gateway, &caller, &project, &collection, Access::Write).await?;
    let condition = condition(request.headers())?;
    let (patch, _permit) = read_json(&gateway, request, MAX_DOCUMENT_BODY).await?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidDocument,
            format!("a merge patch is a JSON object, not {}", kind_of(&patch)),
        ));
    }
    let written = match &grant {
        Grant::Rules(rules, subject) => {
            let not_found =
                || ApiError::DocumentNotFound(format!("no document {id:?} in this collection"));
            let now = gateway.clock.now();
            ruled_write(
                &gateway,
                &project,
                &collection,
                &id,
                condition,
                (rules, subject),
                |stored| {
                    // A document the caller may not read does not exist.
                    let document = stored
                        .filter(|document| {
                            rules.allows(
                                Operation::Read,
                                subject,
                                Some(resource(document)),
                                None,
                                now,
                            )
                        })
                        .ok_or_else(not_found)?;
                    let mut merged = Value::Object(document.data.clone());
                    json_patch::merge(&mut merged, &patch);
                    document_object(merged).map(Some)
                },
            )
            .await?
        }
        Grant::All => {
            let write = DocWrite::Patch {
                collection,
                id,
                patch,
                condition,
            };
            write_one(&gateway, &project, write).await?
        }
    };
    Ok(written_response(http::StatusCode::OK, written))
}

/// `DELETE /v1/docs/C/ID`: 204 whether or not it existed (unless a
/// condition says otherwise).
pub async fn delete(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((collection, id)): Path<(String, String)>,
    headers: http::HeaderMap,
) -> Result<http::StatusCode, ApiError> {
    let (collection, grant) =
        collection_for(&gateway, &caller, &project, &collection, Access::Write).await?;
    let condition = condition(&headers)?;
    match &grant {
        Grant::Rules(rules, subject) => {
            ruled_write(
                &gateway,
                &project,
                &collection,
                &id,
                condition,
                (rules, subject),
                |_| Ok(None),
            )
            .await?;
        }
        Grant::All => {
            let write = DocWrite::Delete {
                collection,
                id,
                condition,
            };
            write_one(&gateway, &project, write).await?;
        }
    }
    Ok(http::StatusCode::NO_CONTENT)
}

/// `POST /v1/docs/_batch`: writes that commit together or not at all.
pub async fn batch(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Json<api_types::DocBatchResult>, ApiError> {
    // The collections are named in the body: a key that may write to none
    // of the project's is refused before it is read.
    if !gateway
        .auth
        .may_write_some(&caller, &project, ResourceKind::Collection)
    {
        return Err(ApiError::NotAllowed(
            "this key may not write to any collection of this project".to_owned(),
        ));
    }
    let (batch, _permit): (api_types::DocBatch, _) = read_json_body(
        &gateway,
        request,
        MAX_BATCH_BODY,
        || {
            Err(ApiError::bad_request(
                ErrorCode::InvalidBatch,
                "expected {\"writes\": [...]}",
            ))
        },
        |error| ApiError::bad_request(ErrorCode::InvalidBatch, error.to_string()),
    )
    .await?;
    let writes = Documents::batch_writes(
        batch
            .writes
            .into_iter()
            .map(|write| data::BatchWrite {
                op: write.op,
                collection: write.collection,
                id: write.id,
                data: write.data,
                if_version: write.if_version,
            })
            .collect(),
    )?;
    let mut collections: Vec<&CollectionName> = writes.iter().map(DocWrite::collection).collect();
    collections.sort();
    collections.dedup();
    for collection in collections {
        authorize(
            &gateway,
            &caller,
            &project,
            ResourceKind::Collection,
            collection.as_str(),
            Access::Write,
        )
        .await?;
    }
    let results = gateway.docs.batch(&project, None, writes).await?;
    Ok(Json(api_types::DocBatchResult {
        results: results
            .into_iter()
            .map(|done| api_types::DocWritten {
                id: done.id,
                version: done.version,
            })
            .collect(),
    }))
}

pub async fn list_indexes(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
) -> Result<Json<Vec<api_types::DocIndex>>, ApiError> {
    let collection = collection_name(&collection)?;
    require_service(&caller, &project)?;
    let indexes = gateway.docs.indexes(&project, &collection).await?;
    Ok(Json(indexes.into_iter().map(index_out).collect()))
}

/// `PUT /v1/docs/C/_indexes/NAME` with `{"fields": ["city", "-age"]}`:
/// declares the index and fills it before answering.
pub async fn create_index(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((collection, name)): Path<(String, String)>,
    request: Request,
) -> Result<(http::StatusCode, Json<api_types::DocIndex>), ApiError> {
    let collection = collection_name(&collection)?;
    require_service(&caller, &project)?;
    Documents::index_name(&name)?;
    let body: api_types::CreateDocIndex =
        serde_json::from_value(read_json(&gateway, request, MAX_INDEX_BODY).await?.0)
            .map_err(|error| ApiError::bad_request(ErrorCode::InvalidIndex, error.to_string()))?;
    let index = gateway
        .docs
        .create_index(&project, &collection, &name, &body.fields)
        .await?;
    Ok((http::StatusCode::CREATED, Json(index_out(index))))
}

pub async fn drop_index(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path((collection, name)): Path<(String, String)>,
) -> Result<http::StatusCode, ApiError> {
    let collection = collection_name(&collection)?;
    require_service(&caller, &project)?;
    if gateway
        .docs
        .drop_index(&project, &collection, &name)
        .await?
    {
        Ok(http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no index {name:?} on this collection"
        )))
    }
}

/// `DELETE /v1/docs/C`: every document and index of the collection, and
/// its access rule (service keys only).
pub async fn drop_collection(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    let collection = collection_name(&collection)?;
    require_service(&caller, &project)?;
    if gateway.docs.drop_collection(&project, &collection).await? {
        // Created again later, it starts private.
        gateway
            .auth
            .forget_rule(&project, ResourceKind::Collection, collection.as_str());
        Ok(http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFoundCode {
            code: ErrorCode::CollectionNotFound,
            message: format!("no collection {collection} in this project (or it is empty)"),
        })
    }
}

/// `GET /v1/docs/C/_access`: who may use the collection with a public key.
pub async fn get_access(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
) -> Result<Json<api_types::AccessSetting>, ApiError> {
    let collection = collection_name(&collection)?;
    read_rule(
        &gateway,
        &caller,
        project,
        ResourceKind::Collection,
        collection.to_string(),
    )
    .await
}

/// `PUT /v1/docs/C/_access` with `{"access": ...}`.
pub async fn set_access(
    State(gateway): State<SharedGateway>,
    Extension(Scope(project)): Extension<Scope>,
    Extension(caller): Extension<Caller>,
    Path(collection): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<api_types::AccessSetting>, ApiError> {
    let collection = collection_name(&collection)?;
    let name = collection.to_string();
    write_rule(
        &gateway,
        &caller,
        project,
        ResourceKind::Collection,
        name,
        &body,
    )
    .await
}
