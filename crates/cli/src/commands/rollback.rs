use crate::client::Client;
use api_types::{FunctionInfo, RollbackRequest};
use std::process::ExitCode;

/// Make an earlier version of a function serve again.
#[derive(clap::Args)]
pub struct Rollback {
    /// Function name.
    name: String,
    /// Version to serve.
    version: u32,
}

impl Rollback {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let request = client
            .control(
                reqwest::Method::POST,
                &format!("/v1/functions/{}/rollback", self.name),
            )
            .json(&RollbackRequest {
                version: self.version,
            });
        let info: FunctionInfo = client.json(request).await?;
        println!("{} now serves version {}", info.name, info.version);
        Ok(ExitCode::SUCCESS)
    }
}
