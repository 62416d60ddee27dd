//! Domain values to wire DTOs.
use crate::ApiError;
use api_types::ErrorCode;
use domain::Isolation;
use store::{FunctionVersion, StoredLogLine};

pub fn function_info(version: &FunctionVersion) -> api_types::FunctionInfo {
    let config = &version.config;
    api_types::FunctionInfo {
        project: version.project.to_string(),
        name: version.function.to_string(),
        version: version.version,
        world: version.runtime.describe().to_owned(),
        artifact: version.artifact.clone(),
        size_bytes: version.size_bytes,
        memory: config.limits.memory.to_string(),
        timeout_ms: config.limits.timeout.as_millis() as u64,
        max_concurrency: config.limits.max_concurrency,
        max_queue: config.limits.max_queue,
        env_keys: config.env.iter().map(|(key, _)| key.clone()).collect(),
        allowed_outbound_hosts: config.allowed_outbound_hosts.clone(),
        isolation: match config.isolation {
            Isolation::Fresh => "fresh".to_owned(),
            Isolation::Reuse(_) => "reuse".to_owned(),
        },
        created_at: version.created_at,
        url_path: function_path(&version.project, &version.function),
        triggers: config.triggers.iter().map(|t| t.to_text()).collect(),
        base: config.process.base.clone(),
        require_auth: config.require_auth.as_str().to_owned(),
        data_access: config.data_access.as_str().to_owned(),
    }
}

/// Where a function answers: `/fn/NAME` in `default`, else `/p/PROJECT/fn/NAME`.
pub fn function_path(project: &domain::ProjectId, function: &domain::FunctionName) -> String {
    if *project == domain::ProjectId::default_project() {
        format!("/fn/{function}")
    } else {
        format!("/p/{project}/fn/{function}")
    }
}

pub fn project(project: &domain::Project) -> api_types::ProjectInfo {
    api_types::ProjectInfo {
        name: project.id.to_string(),
        created_at: project.created_at,
    }
}

pub fn key(key: &domain::ApiKey) -> api_types::KeyInfo {
    api_types::KeyInfo {
        id: key.id.clone(),
        project: key.project.to_string(),
        kind: key.kind.as_str().to_owned(),
        name: key.name.clone(),
        created_at: key.created_at,
        revoked_at: key.revoked_at,
    }
}

pub fn usage(usage: &domain::Usage) -> api_types::Usage {
    api_types::Usage {
        requests: usage.requests,
        errors: usage.errors,
        billed_ms: usage.billed_ms,
        mib_milliseconds: usage.mib_ms,
        gb_seconds: usage.gb_seconds(),
    }
}

pub fn record(record: &domain::InvocationRecord) -> api_types::InvocationRecord {
    api_types::InvocationRecord {
        id: record.id.to_string(),
        project: record.project.to_string(),
        function: record.function.to_string(),
        version: record.version,
        trigger: record.trigger.clone(),
        start: record.start,
        duration_us: record.duration_us,
        billed_ms: record.billed_ms,
        memory_mib: record.memory_mib,
        peak_memory_bytes: record.peak_memory_bytes,
        cpu_us: record.cpu_us,
        outcome: record.outcome.code().to_owned(),
        cold: record.cold,
        init_us: record.init_us,
        auth: record.auth.clone(),
        user_id: record.user_id.clone(),
        bytes_in: record.bytes_in,
        bytes_out: record.bytes_out,
    }
}

pub fn log_line(stored: &StoredLogLine) -> api_types::LogLine {
    api_types::LogLine {
        seq: stored.seq,
        invocation: stored.line.invocation.to_string(),
        instance: stored.line.instance.clone(),
        time: stored.line.time,
        stream: stored.line.stream.as_str().to_owned(),
        line: stored.line.line.clone(),
    }
}

/// An access rule by its public name.
pub fn access_rule(name: &str) -> Result<domain::AccessRule, ApiError> {
    domain::AccessRule::parse(name)
        .filter(|rule| !matches!(rule, domain::AccessRule::Custom(_)))
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidAccess,
                format!("access {name:?} is not one of private, public-read, public-read-write"),
            )
        })
}
