use crate::client::{Client, parse_since};
use std::process::ExitCode;

/// Show usage: requests, errors and GB-seconds, exact sums of invocation records.
#[derive(clap::Args)]
pub struct Usage {
    /// Only records from this time on: Unix ms, RFC 3339, or a duration ago (1h).
    #[arg(long)]
    since: Option<String>,
    /// Only records before this time.
    #[arg(long)]
    until: Option<String>,
    /// Only this function.
    #[arg(long)]
    function: Option<String>,
    /// Only invocations started by: http, queue, cron, docs, objects or async.
    #[arg(long)]
    trigger: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Usage {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let mut query = Vec::new();
        if let Some(since) = &self.since {
            query.push(format!("since={}", parse_since(since)?));
        }
        if let Some(until) = &self.until {
            query.push(format!("until={}", parse_since(until)?));
        }
        if let Some(trigger) = &self.trigger {
            query.push(format!("trigger={trigger}"));
        }
        if let Some(function) = &self.function {
            query.push(format!("function={}", urlencoding::encode(function)));
        }
        let path = format!("/v1/usage?{}", query.join("&"));
        let usage: api_types::Usage = client
            .json(client.control(reqwest::Method::GET, &path))
            .await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&usage)?);
        } else {
            println!("requests    {}", usage.requests);
            println!("errors      {}", usage.errors);
            println!("billed ms   {}", usage.billed_ms);
            println!(
                "GB-seconds  {:.6} ({} MiB-ms)",
                usage.gb_seconds, usage.mib_milliseconds
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}
