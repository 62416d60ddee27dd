//! Answers every event with what it received and the function's name,
//! through `lambda_runtime`'s own client of the Runtime API.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if payload["rawPath"] == "/fail" {
        return Err("failing on purpose".into());
    }
    Ok(json!({
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json!({
            "runtime": "rust",
            "path": payload["rawPath"],
            "request_id": context.request_id,
            "function": context.env_config.function_name,
        }).to_string(),
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}
