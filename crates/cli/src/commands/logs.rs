use crate::client::Client;
use api_types::LogPage;
use std::io::Write;
use std::process::ExitCode;

/// Show a function's guest output (stdout and stderr), each line tagged with its invocation.
#[derive(clap::Args)]
pub struct Logs {
    /// Function name.
    name: String,
    /// Keep waiting for new lines.
    #[arg(long, short = 'f')]
    follow: bool,
}

impl Logs {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let mut after = 0i64;
        loop {
            let wait = if self.follow { "&wait=20s" } else { "" };
            let path = format!("/v1/functions/{}/logs?after={after}{wait}", self.name);
            let page: LogPage = client
                .json(client.control(reqwest::Method::GET, &path))
                .await?;
            let mut stdout = std::io::stdout().lock();
            for line in &page.lines {
                let time = humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(line.time.max(0) as u64),
                );
                match &line.instance {
                    Some(instance) => writeln!(
                        stdout,
                        "{time} {} {instance} {}: {}",
                        line.invocation, line.stream, line.line
                    )?,
                    None => writeln!(
                        stdout,
                        "{time} {} {}: {}",
                        line.invocation, line.stream, line.line
                    )?,
                }
            }
            stdout.flush()?;
            after = page.next;
            if page.lines.is_empty() && !self.follow {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
