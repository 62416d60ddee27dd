//! Mail to app users: one-time codes and links, sent over each project's
//! own SMTP server (`lettre`, async on tokio, rustls).
//!
//! Requests never wait for a mail: [`Outbox`] holds at most its capacity
//! of mails waiting (a request takes its place with [`Outbox::reserve`]
//! before it does anything else, so a full outbox refuses every request
//! alike), and one worker sends them, a few at once, each within
//! [`SEND_TIMEOUT`]. A mail that fails is logged (its recipient's domain
//! and the error, never its text: it holds a code) and dropped: no retry,
//! so a broken server never piles mails up. The worker stops when the
//! outbox is dropped.
//!
//! Who sends is a [`Mailer`]: [`Smtp`] in the server; tests put their own
//! in to see what would go out.
use domain::ProjectId;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Mails waiting to be sent; more are refused.
pub const OUTBOX: usize = 256;
/// Mails sent at once.
const SENDING_AT_ONCE: usize = 4;
/// Longest a mail may take to send, from connecting to the last reply.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// None at all: for a server on loopback (tests, a local relay).
    None,
    /// Plain, then upgraded with STARTTLS (port 587); refused without it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// A project's SMTP server, its password opened: where its mail goes out.
#[derive(Clone)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    pub tls: SmtpTls,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "..."))
            .field("from", &self.from)
            .field("tls", &self.tls)
            .finish()
    }
}

/// One plain-text mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// What sends a mail.
#[store::async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, server: &SmtpServer, mail: &Mail) -> Result<(), String>;
}

/// Sends through the project's SMTP server, a connection per mail.
pub struct Smtp;

#[store::async_trait]
impl Mailer for Smtp {
    async fn send(&self, server: &SmtpServer, mail: &Mail) -> Result<(), String> {
        let from: Mailbox = server
            .from
            .parse()
            .map_err(|error| format!("the sender {:?}: {error}", server.from))?;
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|error| format!("the recipient: {error}"))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|error| format!("building the message: {error}"))?;
        let builder = match server.tls {
            SmtpTls::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host.as_str())
            }
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&server.host)
                .map_err(|error| error.to_string())?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&server.host)
                .map_err(|error| error.to_string())?,
        };
        let mut builder = builder.port(server.port).timeout(Some(SEND_TIMEOUT));
        if let Some(username) = &server.username {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                server.password.clone().unwrap_or_default(),
            ));
        }
        builder
            .build()
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
}

struct Job {
    project: ProjectId,
    server: SmtpServer,
    mail: Mail,
}

/// The bounded queue of mails to send, and its worker.
pub struct Outbox {
    sender: tokio::sync::mpsc::Sender<Job>,
    worker: tokio::task::JoinHandle<()>,
}

/// A place in the outbox, taken before a request does its work.
pub struct Place(tokio::sync::mpsc::OwnedPermit<Job>);

impl Outbox {
    /// Starts the worker (on the current tokio runtime).
    pub fn start(mailer: Arc<dyn Mailer>, capacity: usize) -> Self {
        let (sender, receiver) = tokio::sync::mpsc::channel(capacity.max(1));
        Self {
            sender,
            worker: tokio::spawn(work(mailer, receiver)),
        }
    }

    /// A place for one more mail, or `None` when the outbox is full.
    pub fn reserve(&self) -> Option<Place> {
        self.sender.clone().try_reserve_owned().ok().map(Place)
    }
}

impl Place {
    /// Queues the mail in this place.
    pub fn send(self, project: &ProjectId, server: SmtpServer, mail: Mail) {
        self.0.send(Job {
            project: project.clone(),
            server,
            mail,
        });
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

async fn work(mailer: Arc<dyn Mailer>, mut jobs: tokio::sync::mpsc::Receiver<Job>) {
    let sending = Arc::new(tokio::sync::Semaphore::new(SENDING_AT_ONCE));
    let mut running = tokio::task::JoinSet::new();
    while let Some(job) = jobs.recv().await {
        while running.try_join_next().is_some() {}
        let permit = sending
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mailer = mailer.clone();
        running.spawn(async move {
            let _permit = permit;
            let sent = tokio::time::timeout(SEND_TIMEOUT, mailer.send(&job.server, &job.mail))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {SEND_TIMEOUT:?}")));
            let domain = job.mail.to.rsplit('@').next().unwrap_or_default();
            match sent {
                Ok(()) => tracing::debug!(project = %job.project, "mailed {:?} to @{domain}", job.mail.subject),
                Err(error) => tracing::warn!(
                    project = %job.project,
                    "a mail to an address @{domain} through {}:{} was not sent: {error}",
                    job.server.host,
                    job.server.port
                ),
            }
        });
    }
}
