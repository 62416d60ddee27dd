//! Talking to a wok server: where it is, which credential, and turning error
//! bodies into one-line messages.
use anyhow::{Context, bail};
use api_types::ErrorBody;
use std::path::PathBuf;

pub struct Connection {
    pub server: Option<String>,
    pub token: Option<String>,
    pub data_dir: PathBuf,
    /// The project function commands act on; `default` when unset.
    pub project: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    token: Option<String>,
    project: Option<String>,
    pub http: reqwest::Client,
}

impl Connection {
    /// Finds the server and credential: flags and env first, then the local
    /// data directory (as `wok up` left it), then the default address.
    pub fn client(&self) -> anyhow::Result<Client> {
        let base = match &self.server {
            Some(server) => server.clone(),
            None => std::fs::read_to_string(self.data_dir.join(server::ENDPOINT_FILE))
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned()),
        };
        let token = match &self.token {
            Some(token) => Some(token.clone()),
            None => std::fs::read_to_string(self.data_dir.join(server::ADMIN_TOKEN_FILE))
                .ok()
                .map(|token| token.trim().to_owned()),
        };
        let http = reqwest::Client::builder()
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            project: self.project.clone().filter(|project| project != "default"),
            http,
        })
    }
}

impl Client {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Where function NAME of the chosen project answers.
    pub fn function_url(&self, name: &str) -> String {
        match &self.project {
            Some(project) => self.url(&format!("/p/{project}/fn/{name}")),
            None => self.url(&format!("/fn/{name}")),
        }
    }

    /// A control-API request with the credential. A `/v1/...` path is
    /// addressed to the chosen project (`/v1/projects/NAME/...`), except
    /// the project routes themselves.
    pub fn control(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let path = match (&self.project, path.strip_prefix("/v1/")) {
            (Some(project), Some(rest)) if !rest.starts_with("projects") => {
                format!("/v1/projects/{project}/{rest}")
            }
            _ => path.to_owned(),
        };
        let request = self.http.request(method, self.url(&path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A request to the chosen project's auth routes
    /// (`/p/PROJECT/auth/v1{path}`) with the credential.
    pub fn auth(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let project = self.project.as_deref().unwrap_or("default");
        let request = self
            .http
            .request(method, self.url(&format!("/p/{project}/auth/v1{path}")));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends, and turns a non-2xx answer into an error naming the server's message.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.map_err(|error| {
            anyhow::anyhow!(
                "cannot reach the wok server at {}: {}",
                self.base,
                root_cause(&error)
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_from(response).await)
    }

    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = self.send(request).await?;
        response.json().await.context("reading the server's answer")
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[derive(serde::Deserialize)]
struct GoTrueError {
    code: String,
    msg: String,
}

pub async fn error_from(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => anyhow::anyhow!(
            "{} ({}, HTTP {})",
            body.error.message,
            body.error.code,
            status.as_u16()
        ),
        // The auth routes answer in GoTrue's shape.
        Err(_) if let Ok(body) = serde_json::from_str::<GoTrueError>(&text) => {
            anyhow::anyhow!("{} ({}, HTTP {})", body.msg, body.code, status.as_u16())
        }
        Err(_) if text.trim().is_empty() => anyhow::anyhow!("the server answered HTTP {status}"),
        Err(_) => anyhow::anyhow!("the server answered HTTP {status}: {}", text.trim()),
    }
}

/// Parses `--since`: Unix milliseconds, an RFC 3339 time, or a duration ago (`1h`).
pub fn parse_since(value: &str) -> anyhow::Result<i64> {
    if let Ok(millis) = value.parse::<i64>() {
        return Ok(millis);
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(value) {
        return Ok(time.duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64);
    }
    if let Ok(ago) = humantime::parse_duration(value) {
        return Ok(domain::now_millis() - ago.as_millis() as i64);
    }
    bail!(
        "{value:?} is not a time: use Unix milliseconds, RFC 3339 (2026-11-23T10:00:00Z) or a duration ago (1h)"
    )
}
