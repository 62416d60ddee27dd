use crate::client::{Client, parse_since};
use api_types::{Count, DeadLetterFilter, DeadLetterPage, EventPage, Replayed, TriggerList};
use std::process::ExitCode;

/// Topics, triggers and dead letters of the project (`--project`).
#[derive(clap::Subcommand)]
pub enum Events {
    /// Print a topic's messages, oldest first, one JSON object a line.
    Read {
        topic: String,
        /// From this time on: Unix milliseconds, RFC 3339 or a duration ago (1h).
        #[arg(long, conflicts_with = "after")]
        since: Option<String>,
        /// After this position.
        #[arg(long)]
        after: Option<i64>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show every trigger, its position, and its retrying and dead events.
    Triggers,
    /// List dead letters: events whose delivery failed for good.
    Dead {
        #[arg(long)]
        function: Option<String>,
        #[arg(long)]
        trigger: Option<String>,
        /// Print each dead letter as a JSON object (with its event).
        #[arg(long)]
        json: bool,
    },
    /// Deliver dead letters again (all, or those of a function, trigger or event).
    Redrive {
        #[arg(long)]
        function: Option<String>,
        #[arg(long)]
        trigger: Option<String>,
        /// Only the event at this position.
        #[arg(long)]
        seq: Option<i64>,
    },
    /// Delete dead letters (all, or those of a function, trigger or event).
    Purge {
        #[arg(long)]
        function: Option<String>,
        #[arg(long)]
        trigger: Option<String>,
        #[arg(long)]
        seq: Option<i64>,
    },
    /// Deliver a trigger's events again from a time on.
    Replay {
        function: String,
        trigger: String,
        /// Unix milliseconds, RFC 3339 or a duration ago (1h).
        #[arg(long)]
        from: String,
    },
    /// Show or set who besides service keys may use a topic: `private`
    /// (the default), `public-read` (subscribe), `public-read-write`
    /// (subscribe and publish), or per-user `--rules FILE`.
    Access {
        topic: String,
        rule: Option<String>,
        /// Per-user rules instead of a preset: a JSON file with a `read`
        /// (who receives an event) and a `create` (who publishes) CEL
        /// expression.
        #[arg(long, value_name = "FILE", conflicts_with = "rule")]
        rules: Option<std::path::PathBuf>,
    },
}

fn filter_query(function: &Option<String>, trigger: &Option<String>, seq: Option<i64>) -> String {
    let mut pairs = Vec::new();
    if let Some(function) = function {
        pairs.push(format!("function={}", urlencoding::encode(function)));
    }
    if let Some(trigger) = trigger {
        pairs.push(format!("trigger={}", urlencoding::encode(trigger)));
    }
    if let Some(seq) = seq {
        pairs.push(format!("seq={seq}"));
    }
    pairs.join("&")
}

impl Events {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        match self {
            Events::Access { topic, rule, rules } => {
                let path = format!("/v1/topics/{topic}/_access");
                super::access::show_or_set(&client, &path, &topic, rule, rules).await?;
            }
            Events::Read {
                topic,
                since,
                after,
                limit,
            } => {
                let mut position = match since {
                    Some(since) => format!("since={}", parse_since(&since)?),
                    None => format!("after={}", after.unwrap_or(0)),
                };
                let mut left = limit;
                while left > 0 {
                    let page: EventPage = client
                        .json(client.control(
                            reqwest::Method::GET,
                            &format!(
                                "/v1/topics/{topic}/events?{position}&limit={}",
                                left.min(1000)
                            ),
                        ))
                        .await?;
                    for event in &page.events {
                        println!("{}", serde_json::to_string(event)?);
                    }
                    left = left.saturating_sub(page.events.len() as u32);
                    match page.next {
                        Some(next) => position = format!("after={next}"),
                        None => break,
                    }
                }
            }
            Events::Triggers => {
                let list: TriggerList = client
                    .json(client.control(reqwest::Method::GET, "/v1/triggers"))
                    .await?;
                if list.triggers.is_empty() {
                    println!("no triggers");
                }
                for trigger in list.triggers {
                    println!(
                        "{}/{}  position {}  retrying {}  dead {}\n  {}",
                        trigger.function,
                        trigger.trigger,
                        trigger.cursor,
                        trigger.retrying,
                        trigger.dead,
                        trigger.spec
                    );
                }
            }
            Events::Dead {
                function,
                trigger,
                json,
            } => {
                let filter = filter_query(&function, &trigger, None);
                let mut after = 0;
                let mut any = false;
                loop {
                    let page: DeadLetterPage = client
                        .json(client.control(
                            reqwest::Method::GET,
                            &format!("/v1/events/dead?{filter}&after={after}&limit=1000"),
                        ))
                        .await?;
                    for dead in &page.dead_letters {
                        any = true;
                        if json {
                            println!("{}", serde_json::to_string(dead)?);
                        } else {
                            println!(
                                "{}  {}/{}  {}  attempts {}  {}",
                                dead.event.seq,
                                dead.function,
                                dead.trigger,
                                dead.event.kind,
                                dead.attempts,
                                dead.error
                            );
                        }
                    }
                    match page.next {
                        Some(next) => after = next,
                        None => break,
                    }
                }
                if !any && !json {
                    println!("no dead letters");
                }
            }
            Events::Redrive {
                function,
                trigger,
                seq,
            } => {
                let body = DeadLetterFilter {
                    function,
                    trigger,
                    seq,
                };
                let count: Count = client
                    .json(
                        client
                            .control(reqwest::Method::POST, "/v1/events/dead/_redrive")
                            .json(&body),
                    )
                    .await?;
                println!("re-driving {} dead letters", count.count);
            }
            Events::Purge {
                function,
                trigger,
                seq,
            } => {
                let filter = filter_query(&function, &trigger, seq);
                let count: Count = client
                    .json(client.control(
                        reqwest::Method::DELETE,
                        &format!("/v1/events/dead?{filter}"),
                    ))
                    .await?;
                println!("deleted {} dead letters", count.count);
            }
            Events::Replay {
                function,
                trigger,
                from,
            } => {
                let from = parse_since(&from)?;
                let replayed: Replayed = client
                    .json(
                        client
                            .control(
                                reqwest::Method::POST,
                                &format!("/v1/functions/{function}/triggers/{trigger}/_replay"),
                            )
                            .json(&serde_json::json!({ "from": from.to_string() })),
                    )
                    .await?;
                println!(
                    "{function}/{trigger} delivers again from position {}",
                    replayed.cursor + 1
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
