//! Triggers: what makes a function run besides an HTTP request. A trigger
//! is written as one line of `KEY=VALUE` pairs separated by `;`, the first
//! naming its source, e.g. `queue=orders;concurrency=4` or
//! `cron=0 */5 * * * *;tz=Europe/Paris`. The same text is accepted by the
//! CLI (`--trigger`), the deploy API (`trigger=`) and `wok.toml`, and is
//! what is stored and shown.
use crate::{BucketName, CollectionName, FunctionName, NameError, TopicName, TriggerName};
use std::fmt::Write as _;
use std::time::Duration;

/// Why a trigger was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error(
        "trigger {0:?} must start with its source: cron=SCHEDULE, queue=TOPIC, docs=COLLECTION or objects=BUCKET"
    )]
    NoSource(String),
    #[error("trigger {trigger:?}: {message}")]
    Invalid { trigger: String, message: String },
    #[error("two triggers are named {0:?}; give one of them another name with name=")]
    Duplicate(String),
    #[error("a function has at most {max} triggers")]
    TooMany { max: usize },
}

/// The kinds of change a document or object trigger fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeKinds {
    pub created: bool,
    pub updated: bool,
    pub deleted: bool,
}

impl ChangeKinds {
    pub const ALL: ChangeKinds = ChangeKinds {
        created: true,
        updated: true,
        deleted: true,
    };

    pub fn includes(&self, change: Change) -> bool {
        match change {
            Change::Created => self.created,
            Change::Updated => self.updated,
            Change::Deleted => self.deleted,
        }
    }
}

/// A change to a document or an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    Created,
    Updated,
    Deleted,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Option<Change> {
        match text {
            "created" => Some(Change::Created),
            "updated" => Some(Change::Updated),
            "deleted" => Some(Change::Deleted),
            _ => None,
        }
    }
}

/// Where a trigger's events come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerSource {
    /// A schedule: a cron expression with seconds (six fields; five are
    /// read as seconds = 0), in a time zone (IANA name; default UTC).
    Cron { schedule: String, timezone: String },
    /// Messages published to a topic of the project.
    Queue { topic: TopicName },
    /// Changes to the documents of a collection.
    Documents {
        collection: CollectionName,
        changes: ChangeKinds,
    },
    /// Objects written to or deleted from a bucket, by key prefix and suffix.
    Objects {
        bucket: BucketName,
        changes: ChangeKinds,
        prefix: String,
        suffix: String,
    },
    /// The function's asynchronous invocations (`Prefer: respond-async`):
    /// every function has this one trigger, named `async`, implicitly.
    Async,
}

/// The name of the implicit trigger of asynchronous invocations.
pub const ASYNC_TRIGGER: &str = "async";

/// Where the outcome of an asynchronous invocation is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Published to a topic of the project.
    Topic(TopicName),
    /// Invoked asynchronously (the outcome record is the request body).
    Function(FunctionName),
}

impl Destination {
    /// `topic:NAME` or `function:NAME`.
    pub fn parse(text: &str) -> Result<Destination, TriggerError> {
        let invalid = |message: String| TriggerError::Invalid {
            trigger: text.to_owned(),
            message,
        };
        match text.split_once(':') {
            Some(("topic", name)) => TopicName::new(name)
                .map(Destination::Topic)
                .map_err(|error| invalid(error.to_string())),
            Some(("function", name)) => FunctionName::new(name)
                .map(Destination::Function)
                .map_err(|error| invalid(error.to_string())),
            _ => Err(invalid(
                "a destination is topic:NAME or function:NAME".to_owned(),
            )),
        }
    }

    pub fn to_text(&self) -> String {
        match self {
            Destination::Topic(topic) => format!("topic:{topic}"),
            Destination::Function(function) => format!("function:{function}"),
        }
    }
}

/// How a function's asynchronous invocations are retried, and where their
/// outcomes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncConfig {
    pub retry: RetryPolicy,
    pub on_success: Option<Destination>,
    pub on_failure: Option<Destination>,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        // Lambda's defaults: two retries, events kept six hours.
        Self {
            retry: RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            },
            on_success: None,
            on_failure: None,
        }
    }
}

/// How failed deliveries are retried: the n-th retry waits about
/// `delay * 2^(n-1)` (at most [`RetryPolicy::MAX_DELAY`], with jitter);
/// after `max_attempts` deliveries, or once the event is older than
/// `max_age`, the event goes to the dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub max_age: Duration,
    pub delay: Duration,
}

impl RetryPolicy {
    pub const MAX_DELAY: Duration = Duration::from_secs(300);
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            max_age: Duration::from_secs(6 * 3600),
            delay: Duration::from_secs(1),
        }
    }
}

/// One trigger of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerSpec {
    pub name: TriggerName,
    pub source: TriggerSource,
    /// Deliveries running at once.
    pub concurrency: u32,
    /// Events per invocation: 1 sends one event in CloudEvents binary mode;
    /// more send a JSON array of events (`application/cloudevents-batch+json`).
    pub batch: u32,
    pub retry: RetryPolicy,
    /// Whether changes this function made itself to the collection or bucket
    /// that triggers it are delivered to it. Off by default, so such a
    /// function does not trigger itself. (Queue triggers always get the
    /// messages a function publishes, its own included.)
    pub own_writes: bool,
}

/// Most triggers of one function.
pub const MAX_TRIGGERS: usize = 16;

impl TriggerSpec {
    /// Parses one trigger line.
    pub fn parse(text: &str) -> Result<TriggerSpec, TriggerError> {
        let invalid = |message: String| TriggerError::Invalid {
            trigger: text.to_owned(),
            message,
        };
        let name_error = |error: NameError| invalid(error.to_string());
        let mut pairs = text
            .split(';')
            .map(str::trim)
            .filter(|pair| !pair.is_empty());
        let (kind, value) = pairs
            .next()
            .and_then(|first| first.split_once('='))
            .ok_or_else(|| TriggerError::NoSource(text.to_owned()))?;
        let (kind, value) = (kind.trim(), value.trim());
        let mut spec = TriggerSpec {
            name: TriggerName::new("unnamed").expect("a valid name"),
            source: match kind {
                "cron" => TriggerSource::Cron {
                    schedule: value.split_whitespace().collect::<Vec<_>>().join(" "),
                    timezone: "UTC".to_owned(),
                },
                "queue" => TriggerSource::Queue {
                    topic: TopicName::new(value).map_err(name_error)?,
                },
                "docs" => TriggerSource::Documents {
                    collection: CollectionName::new(value).map_err(name_error)?,
                    changes: ChangeKinds::ALL,
                },
                "objects" => TriggerSource::Objects {
                    bucket: BucketName::new(value).map_err(name_error)?,
                    changes: ChangeKinds::ALL,
                    prefix: String::new(),
                    suffix: String::new(),
                },
                _ => return Err(TriggerError::NoSource(text.to_owned())),
            },
            concurrency: 8,
            batch: 1,
            retry: RetryPolicy::default(),
            own_writes: false,
        };
        let mut name = None;
        for pair in pairs {
            let (key, value) = pair
                .split_once('=')
                .map(|(key, value)| (key.trim(), value.trim()))
                .ok_or_else(|| invalid(format!("{pair:?} must look like KEY=VALUE")))?;
            let number = |low: u32, high: u32| -> Result<u32, TriggerError> {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (low..=high).contains(n))
                    .ok_or_else(|| {
                        invalid(format!("{key} must be a whole number from {low} to {high}"))
                    })
            };
            let duration = |low: Duration, high: Duration| -> Result<Duration, TriggerError> {
                humantime::parse_duration(value)
                    .ok()
                    .filter(|d| (low..=high).contains(d))
                    .ok_or_else(|| {
                        invalid(format!(
                            "{key} must be a duration (like 500ms, 10s, 5m, 2h) from {low:?} to {high:?}"
                        ))
                    })
            };
            match (key, &mut spec.source) {
                ("name", _) => name = Some(TriggerName::new(value).map_err(name_error)?),
                ("concurrency", _) => spec.concurrency = number(1, 1000)?,
                ("batch", TriggerSource::Queue { .. }) => spec.batch = number(1, 100)?,
                ("max_attempts", _) => spec.retry.max_attempts = number(1, 100)?,
                ("max_age", _) => {
                    spec.retry.max_age =
                        duration(Duration::from_secs(1), Duration::from_secs(14 * 86400))?
                }
                ("retry_delay", _) => {
                    spec.retry.delay =
                        duration(Duration::from_millis(10), Duration::from_secs(3600))?
                }
                ("own_writes", _) => {
                    spec.own_writes = match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(invalid("own_writes must be true or false".to_owned())),
                    }
                }
                ("tz", TriggerSource::Cron { timezone, .. }) => *timezone = value.to_owned(),
                (
                    "on",
                    TriggerSource::Documents { changes, .. }
                    | TriggerSource::Objects { changes, .. },
                ) => {
                    let mut kinds = ChangeKinds {
                        created: false,
                        updated: false,
                        deleted: false,
                    };
                    for change in value.split(',').map(str::trim) {
                        match Change::parse(change) {
                            Some(Change::Created) => kinds.created = true,
                            Some(Change::Updated) => kinds.updated = true,
                            Some(Change::Deleted) => kinds.deleted = true,
                            None => {
                                return Err(invalid(format!(
                                    "on={value:?}: the changes are created, updated and deleted"
                                )));
                            }
                        }
                    }
                    *changes = kinds;
                }
                ("prefix", TriggerSource::Objects { prefix, .. }) => *prefix = value.to_owned(),
                ("suffix", TriggerSource::Objects { suffix, .. }) => *suffix = value.to_owned(),
                _ => {
                    return Err(invalid(format!(
                        "{key:?} is not a setting of a {kind} trigger"
                    )));
                }
            }
        }
        if let TriggerSource::Cron { schedule, .. } = &spec.source
            && schedule.is_empty()
        {
            return Err(invalid("the cron schedule is empty".to_owned()));
        }
        spec.name = match name {
            Some(name) => name,
            None => TriggerName::new(match &spec.source {
                TriggerSource::Cron { .. } => "cron".to_owned(),
                TriggerSource::Queue { topic } => format!("queue-{topic}"),
                TriggerSource::Documents { collection, .. } => format!("docs-{collection}"),
                TriggerSource::Objects { bucket, .. } => {
                    format!("objects-{}", bucket.as_str().replace('.', "-"))
                }
                TriggerSource::Async => ASYNC_TRIGGER.to_owned(),
            })
            .map_err(|_| invalid("the default name is too long; set one with name=".to_owned()))?,
        };
        Ok(spec)
    }

    /// The canonical line: every setting, in a fixed order; parses back to
    /// the same trigger.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let changes = |text: &mut String, kinds: &ChangeKinds| {
            let on: Vec<&str> = [Change::Created, Change::Updated, Change::Deleted]
                .into_iter()
                .filter(|change| kinds.includes(*change))
                .map(Change::as_str)
                .collect();
            let _ = write!(text, ";on={}", on.join(","));
        };
        match &self.source {
            TriggerSource::Cron { schedule, timezone } => {
                let _ = write!(text, "cron={schedule};tz={timezone}");
            }
            TriggerSource::Queue { topic } => {
                let _ = write!(text, "queue={topic};batch={}", self.batch);
            }
            TriggerSource::Documents {
                collection,
                changes: kinds,
            } => {
                let _ = write!(text, "docs={collection}");
                changes(&mut text, kinds);
            }
            TriggerSource::Async => text.push_str(ASYNC_TRIGGER),
            TriggerSource::Objects {
                bucket,
                changes: kinds,
                prefix,
                suffix,
            } => {
                let _ = write!(text, "objects={bucket}");
                changes(&mut text, kinds);
                if !prefix.is_empty() {
                    let _ = write!(text, ";prefix={prefix}");
                }
                if !suffix.is_empty() {
                    let _ = write!(text, ";suffix={suffix}");
                }
            }
        }
        let _ = write!(
            text,
            ";name={};concurrency={};max_attempts={};max_age={};retry_delay={};own_writes={}",
            self.name,
            self.concurrency,
            self.retry.max_attempts,
            humantime::format_duration(self.retry.max_age),
            humantime::format_duration(self.retry.delay),
            self.own_writes
        );
        text
    }

    /// The stream of events this trigger reads: shared by every trigger on
    /// the same topic, collection or bucket; a schedule's own for cron.
    pub fn stream(&self, function: &FunctionName) -> String {
        match &self.source {
            TriggerSource::Cron { .. } => format!("cron/{function}/{}", self.name),
            TriggerSource::Queue { topic } => topic_stream(topic),
            TriggerSource::Documents { collection, .. } => documents_stream(collection),
            TriggerSource::Objects { bucket, .. } => objects_stream(bucket),
            TriggerSource::Async => async_stream(function),
        }
    }

    /// The implicit trigger of a function's asynchronous invocations.
    pub fn async_invocations(config: &AsyncConfig, concurrency: u32) -> TriggerSpec {
        TriggerSpec {
            name: TriggerName::new(ASYNC_TRIGGER).expect("a valid name"),
            source: TriggerSource::Async,
            concurrency: concurrency.min(1000),
            batch: 1,
            retry: config.retry.clone(),
            own_writes: true,
        }
    }

    /// What the invocation records of its deliveries name as their trigger.
    pub fn kind(&self) -> &'static str {
        match &self.source {
            TriggerSource::Cron { .. } => "cron",
            TriggerSource::Queue { .. } => "queue",
            TriggerSource::Documents { .. } => "docs",
            TriggerSource::Objects { .. } => "objects",
            TriggerSource::Async => "async",
        }
    }
}

/// The stream of a function's asynchronous invocations.
pub fn async_stream(function: &FunctionName) -> String {
    format!("invoke/{function}")
}

/// The stream of a topic's messages.
pub fn topic_stream(topic: &TopicName) -> String {
    format!("topic/{topic}")
}

/// The stream of a collection's changes.
pub fn documents_stream(collection: &CollectionName) -> String {
    format!("docs/{collection}")
}

/// The stream of a bucket's changes.
pub fn objects_stream(bucket: &BucketName) -> String {
    format!("objects/{bucket}")
}

/// Checks a function's triggers as a set: names are unique.
pub fn validate_triggers(triggers: &[TriggerSpec]) -> Result<(), TriggerError> {
    if triggers.len() > MAX_TRIGGERS {
        return Err(TriggerError::TooMany { max: MAX_TRIGGERS });
    }
    for (i, trigger) in triggers.iter().enumerate() {
        if trigger.name.as_str() == ASYNC_TRIGGER {
            return Err(TriggerError::Invalid {
                trigger: trigger.to_text(),
                message: format!(
                    "the name {ASYNC_TRIGGER:?} is the asynchronous invocations'; choose another with name="
                ),
            });
        }
        if triggers[..i].iter().any(|other| other.name == trigger.name) {
            return Err(TriggerError::Duplicate(trigger.name.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_line_round_trips_through_its_canonical_text() {
        for line in [
            "queue=orders",
            "queue=orders;batch=10;concurrency=2;max_attempts=7;max_age=90s;retry_delay=250ms",
            "cron=*/5 * * * * *;tz=Europe/Paris;name=tick",
            "docs=users;on=created,deleted;own_writes=true",
            "objects=photos.raw;on=created;prefix=in/;suffix=.jpg",
        ] {
            let spec = TriggerSpec::parse(line).unwrap();
            let text = spec.to_text();
            assert_eq!(TriggerSpec::parse(&text).unwrap(), spec, "{line} -> {text}");
        }
        let spec = TriggerSpec::parse("objects=photos.raw").unwrap();
        assert_eq!(spec.name.as_str(), "objects-photos-raw");
        assert_eq!(spec.retry, RetryPolicy::default());
    }

    #[test]
    fn bad_trigger_lines_say_what_is_wrong() {
        let message = |line: &str| TriggerSpec::parse(line).unwrap_err().to_string();
        assert!(message("orders").contains("must start with its source"));
        assert!(message("queue=Orders").contains("lowercase"));
        assert!(message("queue=orders;batch=0").contains("batch must be a whole number"));
        assert!(message("docs=users;batch=2").contains("not a setting of a docs trigger"));
        assert!(message("docs=users;on=changed").contains("created, updated and deleted"));
        assert!(message("cron=").contains("schedule is empty"));
        assert!(message("queue=a;max_age=forever").contains("max_age must be a duration"));
        let twice = [
            TriggerSpec::parse("queue=a").unwrap(),
            TriggerSpec::parse("queue=a;batch=2").unwrap(),
        ];
        assert_eq!(
            validate_triggers(&twice),
            Err(TriggerError::Duplicate("queue-a".to_owned()))
        );
    }
}
