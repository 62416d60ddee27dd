use crate::client::Client;
use api_types::{CreateKey, IssuedKey, KeyList};
use std::process::ExitCode;

/// Manage the keys of a project (`--project`; admin credential).
#[derive(clap::Subcommand)]
pub enum Keys {
    /// Create a key and print its token (shown only this once).
    Create {
        /// `service` (full access to the project) or `public` (app clients).
        #[arg(long, value_parser = ["service", "public"])]
        kind: String,
        /// A label for the key.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List the project's keys (never their secrets).
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key, effective immediately.
    Revoke {
        /// Key id, as `wok keys ls` shows it.
        id: String,
    },
    /// Give a key a new S3 secret (its token stays), effective immediately:
    /// the old secret and URLs presigned with it stop working.
    RotateS3 {
        /// Key id, as `wok keys ls` shows it.
        id: String,
    },
}

impl Keys {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        match self {
            Keys::Create { kind, name } => {
                let request = client
                    .control(reqwest::Method::POST, "/v1/keys")
                    .json(&CreateKey { kind, name });
                let issued: IssuedKey = client.json(request).await?;
                eprintln!(
                    "created {} key {} of project {}; keep the token, it is not shown again:",
                    issued.key.kind, issued.key.id, issued.key.project
                );
                println!("{}", issued.token);
                eprintln!(
                    "as S3 credentials: AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}",
                    issued.s3.access_key_id, issued.s3.secret_access_key
                );
            }
            Keys::Ls { json } => {
                let list: KeyList = client
                    .json(client.control(reqwest::Method::GET, "/v1/keys"))
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                    return Ok(ExitCode::SUCCESS);
                }
                println!("{:<14} {:<8} {:<8} NAME", "ID", "KIND", "STATE");
                for key in &list.keys {
                    let state = if key.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "live"
                    };
                    println!("{:<14} {:<8} {:<8} {}", key.id, key.kind, state, key.name);
                }
            }
            Keys::Revoke { id } => {
                client
                    .send(client.control(reqwest::Method::DELETE, &format!("/v1/keys/{id}")))
                    .await?;
                println!("revoked key {id}");
            }
            Keys::RotateS3 { id } => {
                let pair: api_types::S3Credentials = client
                    .json(
                        client.control(reqwest::Method::POST, &format!("/v1/keys/{id}/s3-secret")),
                    )
                    .await?;
                println!(
                    "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}",
                    pair.access_key_id, pair.secret_access_key
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
