use crate::client::Client;
use api_types::Published;
use std::process::ExitCode;

/// Publish a message to a topic of the project (`--project`); it is durable
/// when this returns.
#[derive(clap::Args)]
pub struct Publish {
    topic: String,
    /// The message; `@FILE` reads a file, `-` standard input.
    data: String,
    /// Ordering key: messages with the same key are delivered one at a time, in order.
    #[arg(long)]
    key: Option<String>,
    /// The CloudEvents subject of the message.
    #[arg(long)]
    subject: Option<String>,
    /// The message's content type.
    #[arg(long, default_value = "application/json")]
    content_type: String,
}

impl Publish {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let data = match self.data.strip_prefix('@') {
            Some(path) => {
                std::fs::read(path).map_err(|error| anyhow::anyhow!("reading {path}: {error}"))?
            }
            None if self.data == "-" => {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)?;
                data
            }
            None => self.data.into_bytes(),
        };
        let mut query = Vec::new();
        if let Some(key) = &self.key {
            query.push(format!("key={}", urlencoding::encode(key)));
        }
        if let Some(subject) = &self.subject {
            query.push(format!("subject={}", urlencoding::encode(subject)));
        }
        let mut path = format!("/v1/topics/{}", self.topic);
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let published: Published = client
            .json(
                client
                    .control(reqwest::Method::POST, &path)
                    .header(reqwest::header::CONTENT_TYPE, self.content_type)
                    .body(data),
            )
            .await?;
        println!("published {} (position {})", published.id, published.seq);
        Ok(ExitCode::SUCCESS)
    }
}
