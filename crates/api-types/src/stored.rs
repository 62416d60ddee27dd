//! How a backend stores a function version's configuration and runtime,
//! the same in every backend: the configuration as the JSON of its deploy
//! settings ([`crate::DeploySettings`], every value written out: the shape
//! the CLI, `wok.toml` and the control API use), the runtime as a short
//! name. (SQLite databases from before migration 2 stored a shape of their
//! own; `store-sqlite` reads it once to convert.)
use crate::DeploySettings;
use domain::{FunctionConfig, HttpWorld, ProcessProtocol, Runtime, RuntimeKind};

pub fn config_to_json(config: &FunctionConfig, kind: RuntimeKind) -> String {
    serde_json::to_string(&DeploySettings::from_config(config, kind))
        .expect("deploy settings serialize")
}

pub fn config_from_json(text: &str) -> Result<FunctionConfig, String> {
    serde_json::from_str::<DeploySettings>(text)
        .map_err(|error| error.to_string())?
        .to_config()
}

/// What runs a version and how it takes requests, as stored (the column
/// is `world`: the name is from when wasm was the only runtime).
pub fn runtime_to_column(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Wasm(HttpWorld::P2) => "p2",
        Runtime::Wasm(HttpWorld::P3) => "p3",
        Runtime::Process(ProcessProtocol::Http) => "process-http",
        Runtime::Process(ProcessProtocol::Exec) => "process-exec",
        Runtime::Process(ProcessProtocol::Lambda) => "process-lambda",
    }
}

pub fn runtime_from_column(world: &str) -> Result<Runtime, String> {
    Ok(match world {
        "p2" => Runtime::Wasm(HttpWorld::P2),
        "p3" => Runtime::Wasm(HttpWorld::P3),
        "process-http" => Runtime::Process(ProcessProtocol::Http),
        "process-exec" => Runtime::Process(ProcessProtocol::Exec),
        "process-lambda" => Runtime::Process(ProcessProtocol::Lambda),
        other => {
            return Err(format!(
                "a version's runtime {other:?} is not one this build knows"
            ));
        }
    })
}
