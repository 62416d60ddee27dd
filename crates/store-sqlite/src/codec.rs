//! The JSON form a function's configuration is stored in. Private to the
//! store: it is a storage format, not the public API.
use domain::{
    AsyncConfig, ByteSize, Destination, FunctionConfig, Isolation, Limits, RetryPolicy,
    ReuseLimits, TriggerSpec,
};
use serde_json::{Value, json};
use std::time::Duration;

pub fn config_to_json(config: &FunctionConfig) -> String {
    let limits = &config.limits;
    let isolation = match &config.isolation {
        Isolation::Fresh => json!({"mode": "fresh"}),
        Isolation::Reuse(reuse) => json!({
            "mode": "reuse",
            "max_requests": reuse.max_requests,
            "max_concurrent": reuse.max_concurrent,
            "idle_timeout_ms": reuse.idle_timeout.as_millis() as u64,
        }),
    };
    json!({
        "memory": limits.memory.bytes(),
        "timeout_ms": limits.timeout.as_millis() as u64,
        "max_concurrency": limits.max_concurrency,
        "max_queue": limits.max_queue,
        "max_request_body": limits.max_request_body.bytes(),
        "max_response_body": limits.max_response_body.bytes(),
        "env": config.env,
        "allowed_outbound_hosts": config.allowed_outbound_hosts,
        "isolation": isolation,
        "triggers": config.triggers.iter().map(TriggerSpec::to_text).collect::<Vec<_>>(),
        "async": {
            "max_attempts": config.async_invocation.retry.max_attempts,
            "max_age_ms": config.async_invocation.retry.max_age.as_millis() as u64,
            "retry_delay_ms": config.async_invocation.retry.delay.as_millis() as u64,
            "on_success": config.async_invocation.on_success.as_ref().map(Destination::to_text),
            "on_failure": config.async_invocation.on_failure.as_ref().map(Destination::to_text),
        },
    })
    .to_string()
}

pub fn config_from_json(text: &str) -> Result<FunctionConfig, String> {
    let value: Value = serde_json::from_str(text).map_err(|error| error.to_string())?;
    let number = |key: &str| {
        value[key]
            .as_u64()
            .ok_or_else(|| format!("config field {key} is missing"))
    };
    let env = serde_json::from_value::<Vec<(String, String)>>(value["env"].clone())
        .map_err(|e| e.to_string())?;
    let allowed_outbound_hosts =
        serde_json::from_value::<Vec<String>>(value["allowed_outbound_hosts"].clone())
            .map_err(|e| e.to_string())?;
    let isolation = match value["isolation"]["mode"].as_str() {
        Some("reuse") => {
            let reuse = &value["isolation"];
            Isolation::Reuse(ReuseLimits {
                max_requests: reuse["max_requests"].as_u64().unwrap_or(1) as u32,
                max_concurrent: reuse["max_concurrent"].as_u64().unwrap_or(1) as u32,
                idle_timeout: Duration::from_millis(reuse["idle_timeout_ms"].as_u64().unwrap_or(0)),
            })
        }
        _ => Isolation::Fresh,
    };
    // Versions from before triggers have none.
    let triggers = match value.get("triggers") {
        None => Vec::new(),
        Some(lines) => serde_json::from_value::<Vec<String>>(lines.clone())
            .map_err(|e| e.to_string())?
            .iter()
            .map(|line| TriggerSpec::parse(line).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
    };
    // Versions from before asynchronous invocations have the defaults.
    let async_invocation = match value.get("async") {
        None => AsyncConfig::default(),
        Some(config) => {
            let destination = |key: &str| {
                config[key]
                    .as_str()
                    .map(|text| Destination::parse(text).map_err(|e| e.to_string()))
                    .transpose()
            };
            let millis = |key: &str| {
                config[key]
                    .as_u64()
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("async field {key} is missing"))
            };
            AsyncConfig {
                retry: RetryPolicy {
                    max_attempts: config["max_attempts"].as_u64().unwrap_or(3) as u32,
                    max_age: millis("max_age_ms")?,
                    delay: millis("retry_delay_ms")?,
                },
                on_success: destination("on_success")?,
                on_failure: destination("on_failure")?,
            }
        }
    };
    Ok(FunctionConfig {
        triggers,
        async_invocation,
        limits: Limits {
            memory: ByteSize(number("memory")?),
            timeout: Duration::from_millis(number("timeout_ms")?),
            max_concurrency: number("max_concurrency")? as u32,
            max_queue: number("max_queue")? as u32,
            max_request_body: ByteSize(number("max_request_body")?),
            max_response_body: ByteSize(number("max_response_body")?),
        },
        env,
        allowed_outbound_hosts,
        isolation,
    })
}
