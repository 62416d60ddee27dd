//! The S3 endpoint's request parsing, as wok serves it: SigV4
//! `Authorization` headers, presigned queries (`X-Amz-*`), aws-chunked
//! bodies, paths and XML, through s3s with a signer that knows one key.
//! Any request is answered (an error, mostly) without a panic.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3, S3Result};

struct Nothing;

#[async_trait::async_trait]
impl S3 for Nothing {}

struct OneKey;

#[async_trait::async_trait]
impl S3Auth for OneKey {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == "wok_admin" {
            Ok(SecretKey::from("secret".to_owned()))
        } else {
            Err(s3s::s3_error!(InvalidAccessKeyId))
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    authorization: Option<String>,
}

fuzz_target!(|input: Input| {
    let method = ["GET", "PUT", "POST", "DELETE", "HEAD"][usize::from(input.method) % 5];
    let uri = format!("/{}?{}", input.path.trim_start_matches('/'), input.query);
    let Ok(uri) = uri.parse::<http::Uri>() else {
        return;
    };
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, value) in &input.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            request = request.header(name, value);
        }
    }
    if let Some(authorization) = &input.authorization {
        // Shaped like SigV4, so the parser is reached.
        if let Ok(value) = http::HeaderValue::from_str(&format!(
            "AWS4-HMAC-SHA256 Credential=wok_admin/20260101/us-east-1/s3/aws4_request, {authorization}"
        )) {
            request = request.header(http::header::AUTHORIZATION, value);
        }
    }
    let Ok(request) = request.body(s3s::Body::from(input.body.clone())) else {
        return;
    };
    let mut builder = s3s::service::S3ServiceBuilder::new(Nothing);
    builder.set_auth(OneKey);
    let service = builder.build();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let _ = service.call(request).await;
    });
});
