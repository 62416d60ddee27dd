use crate::client::{Client, error_from};
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;

/// Call a function over HTTP and print its response body.
#[derive(clap::Args)]
pub struct Invoke {
    /// Function name.
    name: String,
    /// Request body; `@FILE` reads a file. Makes the default method POST.
    #[arg(long, short = 'd')]
    data: Option<String>,
    /// HTTP method (default GET, or POST with --data).
    #[arg(long, short = 'X')]
    method: Option<String>,
    /// Path and query after /fn/NAME, e.g. /items?id=3.
    #[arg(long, default_value = "/")]
    path: String,
    /// Request header 'Name: value' (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Print the response status and headers too.
    #[arg(long, short = 'i')]
    include: bool,
    /// Queue the call and print its id at once (`Prefer: respond-async`);
    /// `wok invocation ID` shows how it went.
    #[arg(long = "async")]
    asynchronous: bool,
    /// With --async: a repeat with the same key returns the first call's id.
    #[arg(long, requires = "asynchronous")]
    idempotency_key: Option<String>,
}

impl Invoke {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let body = match &self.data {
            Some(data) => match data.strip_prefix('@') {
                Some(file) => Some(std::fs::read(file).with_context(|| format!("reading {file}"))?),
                None => Some(data.clone().into_bytes()),
            },
            None => None,
        };
        let method = match &self.method {
            Some(method) => reqwest::Method::from_bytes(method.to_uppercase().as_bytes())
                .with_context(|| format!("{method:?} is not an HTTP method"))?,
            None if body.is_some() => reqwest::Method::POST,
            None => reqwest::Method::GET,
        };
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        let mut request = client
            .http
            .request(method, format!("{}{path}", client.function_url(&self.name)));
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("header {header:?} must look like 'Name: value'"))?;
            request = request.header(name.trim(), value.trim());
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        if self.asynchronous {
            request = request.header("prefer", "respond-async");
            if let Some(key) = &self.idempotency_key {
                request = request.header("idempotency-key", key);
            }
            let accepted: api_types::AsyncAccepted = client.json(request).await?;
            println!("{} {}", accepted.status, accepted.id);
            return Ok(ExitCode::SUCCESS);
        }
        let mut response = request.send().await.map_err(|error| {
            anyhow::anyhow!("cannot reach the wok server at {}: {error}", client.base)
        })?;
        let status = response.status();
        let is_wok_error = status.as_u16() >= 400
            && response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
        if is_wok_error {
            return Err(error_from(response).await);
        }
        let mut stdout = std::io::stdout().lock();
        if self.include {
            writeln!(stdout, "HTTP {status}")?;
            for (name, value) in response.headers() {
                writeln!(
                    stdout,
                    "{name}: {}",
                    String::from_utf8_lossy(value.as_bytes())
                )?;
            }
            writeln!(stdout)?;
        }
        while let Some(chunk) = response.chunk().await.context("reading the response")? {
            stdout.write_all(&chunk)?;
        }
        stdout.flush()?;
        if status.is_success() {
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("error: the function answered HTTP {status}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Show an asynchronous invocation: its status, attempts and response.
#[derive(clap::Args)]
pub struct Invocation {
    /// The id `wok invoke --async` printed.
    id: String,
    /// Print it as JSON.
    #[arg(long)]
    json: bool,
}

impl Invocation {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let info: api_types::AsyncInvocationInfo = client
            .json(client.control(
                reqwest::Method::GET,
                &format!("/v1/invocations/{}", self.id),
            ))
            .await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&info)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{} {}  {}  attempts {}",
            info.function, info.id, info.status, info.attempts
        );
        if let Some(error) = &info.error {
            println!("error: {error}");
        }
        if let Some(response) = &info.response {
            println!("HTTP {}", response.status);
            if let Some(body) = &response.body {
                println!("{body}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
