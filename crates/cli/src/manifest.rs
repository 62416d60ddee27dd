//! `wok.toml`: the functions of a directory, deployed by a bare `wok deploy`.
//!
//! ```toml
//! [functions.resize]
//! path = "target/wasm32-wasip2/release/resize.wasm"   # relative to wok.toml
//! memory = "128MiB"
//! env = { BUCKET = "photos" }
//! triggers = [
//!     "objects=photos;on=created;suffix=.jpg",
//!     { cron = "0 */5 * * * *", tz = "Europe/Paris", name = "sweep" },
//! ]
//! ```
use anyhow::bail;
use api_types::DeploySettings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    functions: BTreeMap<String, Function>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Function {
    path: PathBuf,
    #[serde(flatten)]
    settings: DeploySettings,
}

/// One function of a manifest: its name, its component (a path relative
/// to the working directory) and its settings.
pub struct ManifestFunction {
    pub name: String,
    pub path: PathBuf,
    pub settings: DeploySettings,
}

/// The functions `path` names, in name order.
pub fn read(path: &Path) -> anyhow::Result<Vec<ManifestFunction>> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "no NAME and PATH given, and there is no {} here to deploy from",
                path.display()
            )
        } else {
            anyhow::anyhow!("reading {}: {error}", path.display())
        }
    })?;
    let manifest: Manifest =
        toml::from_str(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    if manifest.functions.is_empty() {
        bail!("{} names no functions ([functions.NAME])", path.display());
    }
    let base = path.parent().unwrap_or(Path::new("."));
    manifest
        .functions
        .into_iter()
        .map(|(name, function)| {
            let mut settings = function.settings;
            // Trigger tables become their lines here, so that a mistake
            // in one names its function.
            for trigger in &mut settings.triggers {
                let line = trigger
                    .line()
                    .map_err(|error| anyhow::anyhow!("function {name:?}: {error}"))?;
                *trigger = api_types::Trigger::Line(line);
            }
            Ok(ManifestFunction {
                name,
                path: base.join(function.path),
                settings,
            })
        })
        .collect()
}
