use crate::client::Client;
use std::process::ExitCode;

/// Remove a function (its records and logs stay).
#[derive(clap::Args)]
pub struct Rm {
    /// Function name.
    name: String,
}

impl Rm {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        client
            .send(client.control(
                reqwest::Method::DELETE,
                &format!("/v1/functions/{}", self.name),
            ))
            .await?;
        println!("removed {}", self.name);
        Ok(ExitCode::SUCCESS)
    }
}
