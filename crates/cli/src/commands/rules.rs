//! `wok rules test FILE`: a per-user rule set tried on sample requests by
//! the server (`POST /v1/rules/_test`), one line a case; fails (exit 1)
//! when a case is not as it expects.
use crate::client::Client;
use anyhow::Context;
use serde_json::Value;
use std::process::ExitCode;

/// Per-user access rules.
#[derive(clap::Subcommand)]
pub enum Rules {
    /// Try a rule set on sample requests: a JSON file (or `-`) of
    /// `{"rules": {...}, "cases": [{"op", "auth", "resource", "request", "expect"}]}`.
    Test { file: String },
}

impl Rules {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let Rules::Test { file } = self;
        let text = if file == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading standard input")?;
            text
        } else {
            std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
        };
        let test: Value =
            serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
        let answer: Value = client
            .json(
                client
                    .control(reqwest::Method::POST, "/v1/rules/_test")
                    .json(&test),
            )
            .await?;
        let results = answer["results"].as_array().cloned().unwrap_or_default();
        for (n, result) in results.iter().enumerate() {
            let name = result["name"]
                .as_str()
                .map_or_else(|| format!("case {n}"), str::to_owned);
            let verdict = if result["ok"] == true { "ok  " } else { "FAIL" };
            let allowed = if result["allowed"] == true {
                "allowed"
            } else {
                "refused"
            };
            let mut line = format!(
                "{verdict} {name}: {} {allowed}",
                result["op"].as_str().unwrap_or("")
            );
            if let Some(expected) = result["expected"].as_bool()
                && result["ok"] != true
            {
                line.push_str(&format!(
                    " (expected {})",
                    if expected { "allowed" } else { "refused" }
                ));
            }
            if result["filter_passes"].is_boolean() && result["filter_passes"] != result["allowed"]
            {
                line.push_str(" (the list filter disagrees with the rule)");
            }
            println!("{line}");
        }
        let failed = answer["failed"].as_u64().unwrap_or(0);
        if failed > 0 {
            eprintln!("{failed} of {} cases failed", results.len());
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }
}
