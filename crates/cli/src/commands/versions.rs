use crate::client::Client;
use api_types::VersionList;
use std::process::ExitCode;

/// List a function's versions; `*` marks the one serving.
#[derive(clap::Args)]
pub struct Versions {
    /// Function name.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Versions {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let list: VersionList = client
            .json(client.control(
                reqwest::Method::GET,
                &format!("/v1/functions/{}/versions", self.name),
            ))
            .await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "  {:>7}  {:<25} {:<14} {:>10}  ARTIFACT",
            "VERSION", "CREATED", "WORLD", "SIZE"
        );
        for version in &list.versions {
            let created = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(version.created_at.max(0) as u64),
            );
            println!(
                "{} {:>7}  {:<25} {:<14} {:>10}  {}",
                if version.version == list.current {
                    "*"
                } else {
                    " "
                },
                version.version,
                created.to_string(),
                version.world,
                version.size_bytes,
                &version.artifact[..12.min(version.artifact.len())]
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
