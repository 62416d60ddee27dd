use crate::client::Client;
use api_types::FunctionList;
use std::process::ExitCode;

/// List deployed functions.
#[derive(clap::Args)]
pub struct Ls {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Ls {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let list: FunctionList = client
            .json(client.control(reqwest::Method::GET, "/v1/functions"))
            .await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(ExitCode::SUCCESS);
        }
        if list.functions.is_empty() {
            println!("no functions deployed");
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{:<24} {:>7} {:<14} {:>8} {:>9}  URL",
            "NAME", "VERSION", "WORLD", "MEMORY", "TIMEOUT"
        );
        for function in &list.functions {
            println!(
                "{:<24} {:>7} {:<14} {:>8} {:>8}s  {}{}",
                function.name,
                function.version,
                function.world,
                function.memory,
                function.timeout_ms as f64 / 1000.0,
                client.base,
                function.url_path
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
