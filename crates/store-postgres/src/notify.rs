//! Wake-ups across nodes. A node's own commits wake its readers in
//! process (`PgStore::after_commit`); the other nodes learn of them here:
//! the streams of the commits made since the last notification go out as
//! one `pg_notify` on a connection of its own, outside the data
//! transactions (a NOTIFY inside each write transaction serialises the
//! commits of the whole database), and a second connection `LISTEN`s and
//! calls the hook with the other nodes' streams.
//!
//! A notification can be lost (a connection drops, the server restarts).
//! A sender that cannot send keeps the streams and tries again; a
//! listener calls the hook with no streams, which readers take as "look
//! at everything", on every reconnection and every [`SAFETY_POLL`]: the
//! bound on how late a reader learns of an event whose news was lost.
use domain::ProjectId;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use store::events::Hook;
use tokio_postgres::AsyncMessage;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The stream of a connection, TLS or not.
type Stream = <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// The channel the notifications go on.
const CHANNEL: &str = "wok_events";
/// A notification's payload stays under PostgreSQL's 8000-byte limit.
const MAX_PAYLOAD: usize = 7000;
/// How long a lost connection waits before it is made again.
const RECONNECT: Duration = Duration::from_millis(500);
/// How often readers look at every stream anyway: the bound on how late
/// they learn of an event whose notification was lost.
const SAFETY_POLL: Duration = Duration::from_secs(10);

/// Streams with news not yet told, each once: however long the sending
/// connection is down, this holds no more than the streams there are.
#[derive(Default)]
struct Pending {
    streams: Mutex<BTreeSet<(ProjectId, String)>>,
    added: tokio::sync::Notify,
}

pub(crate) struct Notifier {
    pending: Arc<Pending>,
}

impl Notifier {
    /// Starts the sender and the listener, each with its own connection.
    pub(crate) fn start(
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        hook: Arc<RwLock<Option<Hook>>>,
    ) -> Self {
        let node = uuid::Uuid::now_v7().simple().to_string();
        let pending = Arc::new(Pending::default());
        let database = Database { config, tls };
        tokio::spawn(send_loop(database.clone(), node.clone(), pending.clone()));
        tokio::spawn(listen_loop(database, node, hook));
        Self { pending }
    }

    /// Tells the other nodes about `streams` (soon, with whatever else
    /// committed meanwhile).
    pub(crate) fn send(&self, streams: Vec<(ProjectId, String)>) {
        self.pending
            .streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(streams);
        self.pending.added.notify_one();
    }
}

/// The payloads that tell of `streams`: `NODE\nPROJECT\tSTREAM\n...`,
/// each under [`MAX_PAYLOAD`] bytes.
fn payloads(node: &str, streams: &[(ProjectId, String)]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = node.to_owned();
    for (project, stream) in streams {
        let line = format!("\n{}\t{stream}", project.as_str());
        if payload.len() + line.len() > MAX_PAYLOAD && payload.len() > node.len() {
            payloads.push(std::mem::replace(&mut payload, node.to_owned()));
        }
        if node.len() + line.len() <= MAX_PAYLOAD {
            payload.push_str(&line);
        }
    }
    if payload.len() > node.len() {
        payloads.push(payload);
    }
    payloads
}

/// The streams a payload from another node tells of (`None` for this
/// node's own, or one that does not parse).
fn parse(node: &str, payload: &str) -> Option<Vec<(ProjectId, String)>> {
    let mut lines = payload.split('\n');
    if lines.next()? == node {
        return None;
    }
    Some(
        lines
            .filter_map(|line| {
                let (project, stream) = line.split_once('\t')?;
                Some((ProjectId::new(project).ok()?, stream.to_owned()))
            })
            .collect(),
    )
}

/// How to reach the database.
#[derive(Clone)]
struct Database {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl Database {
    async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, Stream>,
        ),
        tokio_postgres::Error,
    > {
        self.config.connect(self.tls.clone()).await
    }
}

async fn send_loop(database: Database, node: String, pending: Arc<Pending>) {
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        pending.added.notified().await;
        // What committed meanwhile goes in the same notification.
        let streams: Vec<(ProjectId, String)> = std::mem::take(
            &mut *pending
                .streams
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
        .into_iter()
        .collect();
        if streams.is_empty() {
            continue;
        }
        let mut sent = true;
        for payload in payloads(&node, &streams) {
            sent = false;
            for _attempt in 0..2 {
                if client.as_ref().is_none_or(|client| client.is_closed()) {
                    client = match database.connect().await {
                        Ok((made, connection)) => {
                            tokio::spawn(connection);
                            Some(made)
                        }
                        Err(error) => {
                            tracing::warn!("cannot connect to notify other nodes: {error}");
                            None
                        }
                    };
                }
                let Some(sender) = &client else { break };
                match sender
                    .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                    .await
                {
                    Ok(_) => {
                        sent = true;
                        break;
                    }
                    Err(error) => {
                        tracing::warn!("cannot notify other nodes: {error}");
                        client = None;
                    }
                }
            }
            if !sent {
                break;
            }
        }
        if !sent {
            // Told again later, with whatever commits meanwhile (a
            // stream told twice costs a reader one look).
            pending
                .streams
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend(streams);
            tokio::time::sleep(RECONNECT).await;
            pending.added.notify_one();
        }
    }
}

async fn listen_loop(database: Database, node: String, hook: Arc<RwLock<Option<Hook>>>) {
    let call = |streams: &[(ProjectId, String)]| {
        if let Some(hook) = hook
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
        {
            hook(streams);
        }
    };
    let mut first = true;
    loop {
        match database.connect().await {
            Err(error) => {
                tracing::warn!("cannot connect to hear other nodes' events: {error}");
            }
            Ok((client, mut connection)) => {
                let mut messages =
                    futures::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed();
                let statement = format!("LISTEN {CHANNEL}");
                let listen = client.batch_execute(&statement);
                // The connection is driven by polling its messages, while
                // the LISTEN waits for its answer.
                let listening = tokio::select! {
                    result = listen => result.is_ok(),
                    _ = messages.next() => false,
                };
                if listening {
                    if !first {
                        // Whatever was told while the listener was away.
                        call(&[]);
                    }
                    first = false;
                    let mut safety = tokio::time::interval(SAFETY_POLL);
                    safety.reset();
                    loop {
                        let message = tokio::select! {
                            message = messages.next() => message,
                            _ = safety.tick() => {
                                call(&[]);
                                continue;
                            }
                        };
                        match message {
                            None => break,
                            Some(Ok(AsyncMessage::Notification(notification))) => {
                                if let Some(streams) = parse(&node, notification.payload()) {
                                    call(&streams);
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(error)) => {
                                tracing::warn!(
                                    "lost the connection that hears other nodes: {error}"
                                );
                                break;
                            }
                        }
                    }
                }
                drop(client);
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_split_under_the_limit_and_parse_back() {
        let project = ProjectId::new("app").unwrap();
        let streams: Vec<(ProjectId, String)> = (0..2000)
            .map(|n| (project.clone(), format!("topic:stream-{n}")))
            .collect();
        let sent = payloads("node-a", &streams);
        assert!(sent.len() > 1);
        assert!(sent.iter().all(|payload| payload.len() <= MAX_PAYLOAD));
        let heard: Vec<_> = sent
            .iter()
            .flat_map(|payload| parse("node-b", payload).unwrap())
            .collect();
        assert_eq!(heard, streams);
        assert_eq!(parse("node-a", &sent[0]), None);
    }
}
