use crate::client::Client;
use api_types::{
    BucketInfo, BucketList, CreateBucket, ObjectInfo, ObjectList, Presign, PresignedUrl,
    S3Credentials,
};
use futures::StreamExt;
use std::io::Write;
use std::process::ExitCode;
use tokio::io::AsyncWriteExt;

/// Buckets and objects of a project (`--project`). The same buckets are
/// served to S3 clients (aws-cli, boto3) at the server's address; see
/// `wok objects credentials`.
#[derive(clap::Subcommand)]
pub enum Objects {
    /// Create a bucket.
    Mb {
        bucket: String,
        /// Refuse objects larger than this, e.g. 10MiB.
        #[arg(long)]
        max_object_size: Option<String>,
        /// Accept only these content types (repeatable); `image/` accepts
        /// every image type.
        #[arg(long = "content-type")]
        content_types: Vec<String>,
    },
    /// Remove an empty bucket.
    Rb { bucket: String },
    /// List buckets, or a bucket's objects (all pages).
    Ls {
        bucket: Option<String>,
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Upload a file (streamed); `-` reads standard input.
    Put {
        bucket: String,
        key: String,
        file: String,
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Download an object (streamed) to a file, or to standard output.
    Get {
        bucket: String,
        key: String,
        file: Option<String>,
    },
    /// Delete an object.
    Rm { bucket: String, key: String },
    /// Print a URL that downloads (or with `--put`, uploads) the object
    /// without a credential until it expires.
    Presign {
        bucket: String,
        key: String,
        #[arg(long)]
        put: bool,
        /// How long the URL works, e.g. 15m, 1h (default 1h, at most 7 days).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Show or set what public keys and app users may do with a bucket:
    /// `private` (service keys only, the default), `public-read`,
    /// `public-read-write`, or per-user `--rules FILE`.
    Access {
        bucket: String,
        rule: Option<String>,
        /// Per-user rules instead of a preset: a JSON file of key patterns
        /// (`users/{uid}/**`), each an object of CEL expressions by
        /// operation (read, list, create, update, delete).
        #[arg(long, value_name = "FILE", conflicts_with = "rule")]
        rules: Option<std::path::PathBuf>,
    },
    /// Print the S3 access key pair of the credential in use, as
    /// environment variables for aws-cli and the AWS SDKs.
    Credentials,
}

fn object_path(bucket: &str, key: &str) -> String {
    let key: Vec<String> = key
        .split('/')
        .map(|part| urlencoding::encode(part).into_owned())
        .collect();
    format!("/v1/objects/{bucket}/{}", key.join("/"))
}

impl Objects {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        match self {
            Objects::Mb {
                bucket,
                max_object_size,
                content_types,
            } => {
                let max_object_bytes = max_object_size
                    .map(|size| {
                        size.parse::<domain::ByteSize>()
                            .map(|size| size.bytes())
                            .map_err(|error| anyhow::anyhow!("--max-object-size: {error}"))
                    })
                    .transpose()?;
                let request = client
                    .control(reqwest::Method::PUT, &format!("/v1/buckets/{bucket}"))
                    .json(&CreateBucket {
                        max_object_bytes,
                        content_types,
                    });
                let created: BucketInfo = client.json(request).await?;
                println!("created bucket {}", created.name);
            }
            Objects::Rb { bucket } => {
                client
                    .send(client.control(reqwest::Method::DELETE, &format!("/v1/buckets/{bucket}")))
                    .await?;
                println!("removed bucket {bucket}");
            }
            Objects::Ls {
                bucket: None,
                prefix: _,
            } => {
                let list: BucketList = client
                    .json(client.control(reqwest::Method::GET, "/v1/buckets"))
                    .await?;
                for bucket in list.buckets {
                    println!("{}", bucket.name);
                }
            }
            Objects::Ls {
                bucket: Some(bucket),
                prefix,
            } => {
                let mut cursor: Option<String> = None;
                loop {
                    let mut path = format!(
                        "/v1/objects/{bucket}?prefix={}",
                        urlencoding::encode(&prefix)
                    );
                    if let Some(cursor) = &cursor {
                        path = format!("{path}&cursor={}", urlencoding::encode(cursor));
                    }
                    let page: ObjectList = client
                        .json(client.control(reqwest::Method::GET, &path))
                        .await?;
                    for ObjectInfo { key, size, .. } in &page.objects {
                        println!("{size:>12}  {key}");
                    }
                    match page.next_cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
            Objects::Put {
                bucket,
                key,
                file,
                content_type,
            } => {
                let body = if file == "-" {
                    reqwest::Body::wrap_stream(
                        tokio_util::io::ReaderStream::new(tokio::io::stdin()),
                    )
                } else {
                    let opened = tokio::fs::File::open(&file)
                        .await
                        .map_err(|error| anyhow::anyhow!("reading {file}: {error}"))?;
                    let length = opened.metadata().await?.len();
                    let body =
                        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(opened));
                    let request = client
                        .control(reqwest::Method::PUT, &object_path(&bucket, &key))
                        .header(reqwest::header::CONTENT_LENGTH, length);
                    let request = match &content_type {
                        Some(content_type) => {
                            request.header(reqwest::header::CONTENT_TYPE, content_type)
                        }
                        None => request,
                    };
                    let written: ObjectInfo = client.json(request.body(body)).await?;
                    println!(
                        "uploaded {} ({} bytes, etag {})",
                        written.key, written.size, written.etag
                    );
                    return Ok(ExitCode::SUCCESS);
                };
                let request = client.control(reqwest::Method::PUT, &object_path(&bucket, &key));
                let request = match &content_type {
                    Some(content_type) => {
                        request.header(reqwest::header::CONTENT_TYPE, content_type)
                    }
                    None => request,
                };
                let written: ObjectInfo = client.json(request.body(body)).await?;
                println!(
                    "uploaded {} ({} bytes, etag {})",
                    written.key, written.size, written.etag
                );
            }
            Objects::Get { bucket, key, file } => {
                let response = client
                    .send(client.control(reqwest::Method::GET, &object_path(&bucket, &key)))
                    .await?;
                let mut stream = response.bytes_stream();
                match file {
                    Some(path) => {
                        let mut out = tokio::fs::File::create(&path)
                            .await
                            .map_err(|error| anyhow::anyhow!("creating {path}: {error}"))?;
                        while let Some(chunk) = stream.next().await {
                            out.write_all(&chunk?).await?;
                        }
                        out.flush().await?;
                    }
                    None => {
                        let mut stdout = std::io::stdout().lock();
                        while let Some(chunk) = stream.next().await {
                            stdout.write_all(&chunk?)?;
                        }
                    }
                }
            }
            Objects::Rm { bucket, key } => {
                client
                    .send(client.control(reqwest::Method::DELETE, &object_path(&bucket, &key)))
                    .await?;
                println!("removed {key}");
            }
            Objects::Presign {
                bucket,
                key,
                put,
                expires_in,
            } => {
                let request = client
                    .control(reqwest::Method::POST, &object_path(&bucket, &key))
                    .json(&Presign {
                        method: Some(if put { "PUT" } else { "GET" }.to_owned()),
                        expires_in,
                    });
                let presigned: PresignedUrl = client.json(request).await?;
                println!("{}", client.url(&presigned.path));
            }
            Objects::Access {
                bucket,
                rule,
                rules,
            } => {
                let path = format!("/v1/buckets/{bucket}/_access");
                super::access::show_or_set(&client, &path, &bucket, rule, rules).await?;
            }
            Objects::Credentials => {
                let credentials: S3Credentials = client
                    .json(client.control(reqwest::Method::GET, "/v1/s3/credentials"))
                    .await?;
                println!("AWS_ACCESS_KEY_ID={}", credentials.access_key_id);
                println!("AWS_SECRET_ACCESS_KEY={}", credentials.secret_access_key);
                println!("AWS_ENDPOINT_URL={}", client.url(""));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
