//! Showing and setting the access rule of a collection, bucket,
//! key-value store or topic (`.../_access`): a preset, or per-user rules
//! from a JSON file.
use crate::client::Client;
use anyhow::Context;
use api_types::AccessSetting;

/// Shows the rule at `path` (`.../_access`) of the resource `name`, or
/// sets it to the preset `rule` or the per-user rules in the JSON file
/// `rules`; prints the rule in force.
pub async fn show_or_set(
    client: &Client,
    path: &str,
    name: &str,
    rule: Option<String>,
    rules: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let rules = match rules {
        Some(file) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            Some(
                serde_json::from_str::<serde_json::Value>(&text)
                    .with_context(|| format!("{} is not JSON", file.display()))?,
            )
        }
        None => None,
    };
    let request = match (rule, rules) {
        (Some(rule), _) => client
            .control(reqwest::Method::PUT, path)
            .json(&AccessSetting {
                access: rule,
                rules: None,
            }),
        (None, Some(rules)) => client
            .control(reqwest::Method::PUT, path)
            .json(&AccessSetting {
                access: "rules".to_owned(),
                rules: Some(rules),
            }),
        (None, None) => client.control(reqwest::Method::GET, path),
    };
    let setting: AccessSetting = client.json(request).await?;
    match setting.rules {
        Some(rules) => {
            println!("{name}\trules");
            println!("{}", serde_json::to_string_pretty(&rules)?);
        }
        None => println!("{name}\t{}", setting.access),
    }
    Ok(())
}
