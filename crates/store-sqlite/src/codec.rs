//! The JSON a function's configuration is stored in: its deploy settings
//! (`api_types::DeploySettings`), every value written out, the same shape
//! the CLI, `wok.toml` and the control API use. (Releases before migration
//! 2 stored a shape of their own; `schema.rs` reads it once to convert.)
use api_types::DeploySettings;
use domain::{FunctionConfig, RuntimeKind};

pub fn config_to_json(config: &FunctionConfig, kind: RuntimeKind) -> String {
    serde_json::to_string(&DeploySettings::from_config(config, kind))
        .expect("deploy settings serialize")
}

pub fn config_from_json(text: &str) -> Result<FunctionConfig, String> {
    serde_json::from_str::<DeploySettings>(text)
        .map_err(|error| error.to_string())?
        .to_config()
}
