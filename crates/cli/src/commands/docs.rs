use crate::client::Client;
use api_types::{
    DocBatchResult, DocCollectionList, DocCount, DocExplain, DocIndex, DocPage, DocWritten,
    Document,
};
use serde_json::Value;
use std::io::Read;
use std::process::ExitCode;

/// Read, write and query the document collections of a project (`--project`).
#[derive(clap::Subcommand)]
pub enum Docs {
    /// List collections with their sizes and indexes.
    Ls,
    /// Print a document's data as JSON.
    Get { collection: String, id: String },
    /// Create a document; prints its id. Fails if `--id` exists already.
    Create {
        collection: String,
        /// The document: JSON, `@FILE`, or `-` for standard input.
        data: String,
        /// Its id (default: a new one chosen by the server).
        #[arg(long)]
        id: Option<String>,
    },
    /// Create or replace a document.
    Set {
        collection: String,
        id: String,
        /// The document: JSON, `@FILE`, or `-` for standard input.
        data: String,
        /// Write only if the document is at this version.
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Apply a JSON merge patch (RFC 7396): `null` removes a field.
    Patch {
        collection: String,
        id: String,
        /// The patch: JSON, `@FILE`, or `-` for standard input.
        patch: String,
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Delete a document.
    Rm {
        collection: String,
        id: String,
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Delete a whole collection: every document and index, and its access
    /// rule.
    Drop { collection: String },
    /// Run a query and print the matching documents, one JSON object a
    /// line, following every page.
    Query {
        collection: String,
        /// The query, e.g. '{"where": ["age", ">=", 18], "order_by": ["-age"]}'.
        #[arg(default_value = "{}")]
        query: String,
        /// Print how many documents match instead.
        #[arg(long, conflicts_with = "explain")]
        count: bool,
        /// Print how the query would run (which index) instead.
        #[arg(long)]
        explain: bool,
    },
    /// Write several documents atomically: a JSON file (or `-`) of
    /// `{"writes": [{"op": "set", "collection": "c", "id": "x", "data": {...}}, ...]}`.
    Batch { file: String },
    /// Show or set what public keys and app users may do with a
    /// collection: `private` (service keys only, the default),
    /// `public-read`, `public-read-write`, or per-user `--rules FILE`.
    Access {
        collection: String,
        rule: Option<String>,
        /// Per-user rules instead of a preset: a JSON file of CEL
        /// expressions by operation (read, list, create, update, delete).
        #[arg(long, value_name = "FILE", conflicts_with = "rule")]
        rules: Option<std::path::PathBuf>,
    },
    /// Declared indexes.
    #[command(subcommand)]
    Index(IndexCommand),
}

#[derive(clap::Subcommand)]
pub enum IndexCommand {
    /// Declare an index and fill it; fields in order, `-` in front for
    /// descending (write `-- -age` so the shell does not take it as a flag).
    Create {
        collection: String,
        name: String,
        #[arg(required = true, allow_hyphen_values = true)]
        fields: Vec<String>,
    },
    Ls {
        collection: String,
    },
    Rm {
        collection: String,
        name: String,
    },
}

/// A JSON argument: inline, `@FILE`, or `-` for standard input.
fn json_argument(text: &str) -> anyhow::Result<Value> {
    let source = if text == "-" {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input)?;
        input
    } else if let Some(path) = text.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|error| anyhow::anyhow!("reading {path}: {error}"))?
    } else {
        text.to_owned()
    };
    serde_json::from_str(&source).map_err(|error| anyhow::anyhow!("not JSON: {error}"))
}

fn document_path(collection: &str, id: &str) -> String {
    format!("/v1/docs/{collection}/{}", urlencoding::encode(id))
}

fn if_version(request: reqwest::RequestBuilder, version: Option<u64>) -> reqwest::RequestBuilder {
    match version {
        Some(version) => request.header("if-match", format!("\"{version}\"")),
        None => request,
    }
}

impl Docs {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        match self {
            Docs::Ls => {
                let list: DocCollectionList = client
                    .json(client.control(reqwest::Method::GET, "/v1/docs"))
                    .await?;
                for collection in list.collections {
                    let indexes: Vec<&str> = collection
                        .indexes
                        .iter()
                        .map(|index| index.name.as_str())
                        .collect();
                    println!(
                        "{}\t{} documents\tindexes: {}",
                        collection.name,
                        collection.documents,
                        if indexes.is_empty() {
                            "-".to_owned()
                        } else {
                            indexes.join(", ")
                        }
                    );
                }
            }
            Docs::Get { collection, id } => {
                let document: Document = client
                    .json(client.control(reqwest::Method::GET, &document_path(&collection, &id)))
                    .await?;
                println!("{}", serde_json::to_string_pretty(&document.data)?);
            }
            Docs::Create {
                collection,
                data,
                id,
            } => {
                let data = json_argument(&data)?;
                let request = match &id {
                    Some(id) => client
                        .control(reqwest::Method::PUT, &document_path(&collection, id))
                        .header("if-none-match", "*"),
                    None => {
                        client.control(reqwest::Method::POST, &format!("/v1/docs/{collection}"))
                    }
                };
                let written: DocWritten = client.json(request.json(&data)).await?;
                println!("{}", written.id);
            }
            Docs::Set {
                collection,
                id,
                data,
                if_version: version,
            } => {
                let data = json_argument(&data)?;
                let request =
                    client.control(reqwest::Method::PUT, &document_path(&collection, &id));
                let written: DocWritten = client
                    .json(if_version(request, version).json(&data))
                    .await?;
                println!(
                    "set {} (version {})",
                    written.id,
                    written.version.unwrap_or_default()
                );
            }
            Docs::Patch {
                collection,
                id,
                patch,
                if_version: version,
            } => {
                let patch = json_argument(&patch)?;
                let request =
                    client.control(reqwest::Method::PATCH, &document_path(&collection, &id));
                let written: DocWritten = client
                    .json(if_version(request, version).json(&patch))
                    .await?;
                println!(
                    "patched {} (version {})",
                    written.id,
                    written.version.unwrap_or_default()
                );
            }
            Docs::Rm {
                collection,
                id,
                if_version: version,
            } => {
                let request =
                    client.control(reqwest::Method::DELETE, &document_path(&collection, &id));
                client.send(if_version(request, version)).await?;
                println!("removed {id}");
            }
            Docs::Drop { collection } => {
                let path = format!("/v1/docs/{collection}");
                client
                    .send(client.control(reqwest::Method::DELETE, &path))
                    .await?;
                println!("dropped collection {collection}");
            }
            Docs::Query {
                collection,
                query,
                count,
                explain,
            } => {
                let mut query = json_argument(&query)?;
                if count {
                    let answer: DocCount = client
                        .json(
                            client
                                .control(
                                    reqwest::Method::POST,
                                    &format!("/v1/docs/{collection}/_count"),
                                )
                                .json(&query),
                        )
                        .await?;
                    println!("{}", answer.count);
                    return Ok(ExitCode::SUCCESS);
                }
                if explain {
                    let plan: DocExplain = client
                        .json(
                            client
                                .control(
                                    reqwest::Method::POST,
                                    &format!("/v1/docs/{collection}/_explain"),
                                )
                                .json(&query),
                        )
                        .await?;
                    println!("{}", serde_json::to_string_pretty(&plan)?);
                    return Ok(ExitCode::SUCCESS);
                }
                loop {
                    let page: DocPage = client
                        .json(
                            client
                                .control(
                                    reqwest::Method::POST,
                                    &format!("/v1/docs/{collection}/_query"),
                                )
                                .json(&query),
                        )
                        .await?;
                    for document in &page.documents {
                        println!("{}", serde_json::to_string(document)?);
                    }
                    match (page.next_cursor, query.as_object_mut()) {
                        (Some(cursor), Some(object)) => {
                            object.insert("cursor".to_owned(), Value::from(cursor));
                        }
                        _ => break,
                    }
                }
            }
            Docs::Batch { file } => {
                let source = if file == "-" {
                    file
                } else {
                    format!("@{file}")
                };
                let batch = json_argument(&source)?;
                let result: DocBatchResult = client
                    .json(
                        client
                            .control(reqwest::Method::POST, "/v1/docs/_batch")
                            .json(&batch),
                    )
                    .await?;
                for written in result.results {
                    match written.version {
                        Some(version) => println!("{}\tversion {version}", written.id),
                        None => println!("{}\tremoved", written.id),
                    }
                }
            }
            Docs::Access {
                collection,
                rule,
                rules,
            } => {
                let path = format!("/v1/docs/{collection}/_access");
                super::access::show_or_set(&client, &path, &collection, rule, rules).await?;
            }
            Docs::Index(IndexCommand::Create {
                collection,
                name,
                fields,
            }) => {
                let path = format!("/v1/docs/{collection}/_indexes/{name}");
                let index: DocIndex = client
                    .json(
                        client
                            .control(reqwest::Method::PUT, &path)
                            .json(&serde_json::json!({ "fields": fields })),
                    )
                    .await?;
                println!(
                    "created index {} on [{}]",
                    index.name,
                    index.fields.join(", ")
                );
            }
            Docs::Index(IndexCommand::Ls { collection }) => {
                let indexes: Vec<DocIndex> = client
                    .json(client.control(
                        reqwest::Method::GET,
                        &format!("/v1/docs/{collection}/_indexes"),
                    ))
                    .await?;
                for index in indexes {
                    println!("{}\t{}", index.name, index.fields.join(", "));
                }
            }
            Docs::Index(IndexCommand::Rm { collection, name }) => {
                let path = format!("/v1/docs/{collection}/_indexes/{name}");
                client
                    .send(client.control(reqwest::Method::DELETE, &path))
                    .await?;
                println!("removed index {name}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
