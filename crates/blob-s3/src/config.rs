//! Where the blobs are and with which credentials: [`S3Config`], read
//! from a URL (`s3://BUCKET/PREFIX?endpoint=...&region=...`) and the
//! standard AWS variables of the environment. Secrets never come from the
//! URL: a URL ends up in logs and process listings.

use std::fmt;

/// A bucket, a prefix in it, and how to reach and sign for it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Segments joined by `/`, no leading or trailing `/`; empty for the
    /// bucket's root. A blob `NAME` is the object `PREFIX/NAME`.
    pub prefix: String,
    /// The server's base URL (`http://127.0.0.1:9000`); `None` for AWS
    /// itself. Given an endpoint, requests are path-style
    /// (`ENDPOINT/BUCKET/KEY`), which S3-compatible servers expect.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Whether plain `http://` endpoints are allowed.
    pub allow_http: bool,
}

/// A configuration that cannot be used, said in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// The keys the URL's query may hold.
const QUERY_KEYS: &str = "endpoint, region";

impl S3Config {
    /// Reads `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]`, the
    /// credentials from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`,
    /// and the region, unless the URL gives it, from `AWS_REGION` or else
    /// `AWS_DEFAULT_REGION`. `env` reads a variable (`std::env::var(..).ok()`
    /// in a program; a table in tests). An `http://` endpoint allows HTTP.
    pub fn from_url(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            invalid(format!(
                "{url:?} is not an S3 URL (s3://BUCKET/PREFIX?endpoint=URL&region=REGION)"
            ))
        })?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.contains('@') {
            return Err(invalid(
                "the S3 URL holds credentials: give them as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead",
            ));
        }
        check_bucket(bucket)?;
        let prefix = prefix.trim_end_matches('/');
        check_prefix(prefix)?;

        let mut endpoint = None;
        let mut region = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| {
                invalid(format!("the S3 URL's {key} is not valid percent-encoding"))
            })?;
            let slot = match key {
                "endpoint" => &mut endpoint,
                "region" => &mut region,
                "access_key_id" | "secret_access_key" | "access_key" | "secret_key" | "secret"
                | "token" | "session_token" => {
                    return Err(invalid(format!(
                        "the S3 URL holds a secret ({key}): give credentials as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
                    )));
                }
                other => {
                    return Err(invalid(format!(
                        "the S3 URL has an unknown parameter {other:?} (known: {QUERY_KEYS})"
                    )));
                }
            };
            if slot.replace(value).is_some() {
                return Err(invalid(format!("the S3 URL gives {key} twice")));
            }
        }

        let allow_http = match &endpoint {
            Some(endpoint) => check_endpoint(endpoint)?,
            None => false,
        };
        let from_env = |name: &str| env(name).filter(|value| !value.is_empty());
        let region = region
            .filter(|region| !region.is_empty())
            .or_else(|| from_env("AWS_REGION"))
            .or_else(|| from_env("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                invalid("no S3 region: add ?region=REGION to the URL or set AWS_REGION")
            })?;
        let access_key_id = from_env("AWS_ACCESS_KEY_ID")
            .ok_or_else(|| invalid("no S3 credentials: AWS_ACCESS_KEY_ID is not set"))?;
        let secret_access_key = from_env("AWS_SECRET_ACCESS_KEY")
            .ok_or_else(|| invalid("no S3 credentials: AWS_SECRET_ACCESS_KEY is not set"))?;
        Ok(S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            allow_http,
        })
    }

    /// `s3://BUCKET/PREFIX` (and the endpoint): where the blobs are, for
    /// messages. Holds no secret.
    pub fn location(&self) -> String {
        let mut location = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            location.push('/');
            location.push_str(&self.prefix);
        }
        if let Some(endpoint) = &self.endpoint {
            location.push_str(" at ");
            location.push_str(endpoint);
        }
        location
    }

    /// Checks the fields (as [`S3Config::from_url`] does for those it
    /// reads), for a config built by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bucket(&self.bucket)?;
        check_prefix(&self.prefix)?;
        if let Some(endpoint) = &self.endpoint {
            let http = check_endpoint(endpoint)?;
            if http && !self.allow_http {
                return Err(invalid(format!(
                    "the S3 endpoint {endpoint} is plain HTTP, which allow_http does not allow"
                )));
            }
        }
        if self.region.is_empty() {
            return Err(invalid("no S3 region"));
        }
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return Err(invalid("no S3 credentials"));
        }
        Ok(())
    }
}

// The secret stays out of logs.
impl fmt::Debug for S3Config {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// S3's rules for bucket names: 3 to 63 lowercase letters, digits, `.`
/// and `-`, starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), ConfigError> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'.' | b'-')
        })
        && bucket.starts_with(|first: char| first.is_ascii_alphanumeric())
        && bucket.ends_with(|last: char| last.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "{bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, '.' and '-')"
        )))
    }
}

/// A prefix is segments of blob-name characters joined by `/`, none of
/// them `.` or `..`: a key means the same to every server and client.
fn check_prefix(prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty() {
        return Ok(());
    }
    for segment in prefix.split('/') {
        let valid = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.len() <= 255
            && segment
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if !valid {
            return Err(invalid(format!(
                "{prefix:?} is not a blob prefix (segments of letters, digits, '.', '_' and '-' joined by '/')"
            )));
        }
    }
    Ok(())
}

/// An endpoint is an `http://` or `https://` URL with a host; answers
/// whether it is plain HTTP.
fn check_endpoint(endpoint: &str) -> Result<bool, ConfigError> {
    let (http, rest) = if let Some(rest) = endpoint.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = endpoint.strip_prefix("https://") {
        (false, rest)
    } else {
        return Err(invalid(format!(
            "the S3 endpoint {endpoint:?} is not an http:// or https:// URL"
        )));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err(invalid(format!(
            "the S3 endpoint {endpoint:?} has no host (or holds credentials)"
        )));
    }
    Ok(http)
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = value.get(index + 1..index + 3)?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "AWS_ACCESS_KEY_ID" => Some("access".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
            "AWS_DEFAULT_REGION" => Some("eu-west-1".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn reads_a_url_and_the_environment() {
        let config = S3Config::from_url(
            "s3://wok-data/nodes/blobs/?endpoint=http%3A%2F%2F127.0.0.1:9000&region=us-east-1",
            &env,
        )
        .unwrap();
        assert_eq!(
            config,
            S3Config {
                bucket: "wok-data".to_owned(),
                prefix: "nodes/blobs".to_owned(),
                endpoint: Some("http://127.0.0.1:9000".to_owned()),
                region: "us-east-1".to_owned(),
                access_key_id: "access".to_owned(),
                secret_access_key: "secret".to_owned(),
                allow_http: true,
            }
        );
        config.validate().unwrap();
        assert!(!format!("{config:?}").contains("secret\""));

        let config = S3Config::from_url("s3://wok-data", &env).unwrap();
        assert_eq!(
            (
                config.prefix.as_str(),
                config.endpoint,
                config.region.as_str(),
                config.allow_http
            ),
            ("", None, "eu-west-1", false)
        );
    }

    #[test]
    fn says_what_is_wrong_in_one_line() {
        let no_env = |_: &str| None;
        for (url, env, message) in [
            (
                "http://bucket/x",
                &env as &dyn Fn(&str) -> Option<String>,
                "is not an S3 URL",
            ),
            ("s3://Bucket", &env, "is not an S3 bucket name"),
            ("s3://key:secret@bucket", &env, "holds credentials"),
            ("s3://bucket/a//b", &env, "is not a blob prefix"),
            ("s3://bucket/../b", &env, "is not a blob prefix"),
            ("s3://bucket?secret_access_key=x", &env, "holds a secret"),
            (
                "s3://bucket?endpont=http://x",
                &env,
                "unknown parameter \"endpont\"",
            ),
            ("s3://bucket?region=a&region=b", &env, "gives region twice"),
            (
                "s3://bucket?endpoint=ftp://x",
                &env,
                "is not an http:// or https:// URL",
            ),
            (
                "s3://bucket?endpoint=%zz",
                &env,
                "not valid percent-encoding",
            ),
            ("s3://bucket", &no_env, "no S3 region"),
            (
                "s3://bucket?region=r",
                &no_env,
                "AWS_ACCESS_KEY_ID is not set",
            ),
        ] {
            let error = S3Config::from_url(url, env).unwrap_err().to_string();
            assert!(error.contains(message), "{url}: {error}");
            assert!(!error.contains('\n'), "{url}: {error}");
        }
    }
}
