//! wok's own data API, called in process, for guests that reach data
//! with their caller's access (`domain::DataAccess::Caller`): each data
//! call a guest makes becomes a request of the data API with the
//! credential its invocation came with, so that exactly the rules the
//! caller would meet calling the API itself apply (hidden reads, list
//! filters, writes at the version their rule saw, refused batches), with
//! one implementation of them.
//!
//! The runtime keeps the invocation's credential current while the guest
//! runs ([`with_credential`]); the services read it
//! ([`current_credential`]).
use http::HeaderValue;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// An answer of the data API, read whole.
pub type ApiFuture = Pin<Box<dyn Future<Output = http::Response<bytes::Bytes>> + Send>>;

/// The data API, served in process.
pub trait LocalApi: Send + Sync + 'static {
    /// Serves `request` as the API would over HTTP: its credential headers
    /// decide what it may do. Only the data and project routes answer
    /// (never a function's), and an answer's body is read up to a bound.
    fn call(&self, request: http::Request<bytes::Bytes>) -> ApiFuture;
}

/// The data API once the server has made it (functions are loaded
/// before the gateway exists).
#[derive(Default)]
pub struct LocalApiSlot(OnceLock<Arc<dyn LocalApi>>);

impl LocalApiSlot {
    pub fn set(&self, api: Arc<dyn LocalApi>) {
        let _ = self.0.set(api);
    }

    pub fn get(&self) -> Option<&Arc<dyn LocalApi>> {
        self.0.get()
    }
}

/// The credential an invocation's request came with: its
/// `Authorization` and `apikey` headers, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    pub authorization: Option<HeaderValue>,
    pub apikey: Option<HeaderValue>,
}

impl Credential {
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        Self {
            authorization: headers.get(http::header::AUTHORIZATION).cloned(),
            apikey: headers.get("apikey").cloned(),
        }
    }

    /// Puts the credential on a request of the data API.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        if let Some(value) = &self.authorization {
            headers.insert(http::header::AUTHORIZATION, value.clone());
        }
        if let Some(value) = &self.apikey {
            headers.insert("apikey", value.clone());
        }
    }
}

thread_local! {
    static CREDENTIAL: std::cell::RefCell<Option<Credential>> =
        const { std::cell::RefCell::new(None) };
}

/// The credential of the invocation whose guest runs in this poll.
pub fn current_credential() -> Option<Credential> {
    CREDENTIAL.with(|current| current.borrow().clone())
}

/// A future that runs with an invocation's credential.
pub struct WithCredential<F> {
    credential: Option<Credential>,
    inner: Pin<Box<F>>,
}

/// Runs `future` (a guest's call) with `credential` as the current one.
pub fn with_credential<F: Future>(credential: Credential, future: F) -> WithCredential<F> {
    WithCredential {
        credential: Some(credential),
        inner: Box::pin(future),
    }
}

impl<F: Future> Future for WithCredential<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = CREDENTIAL.with(|current| current.replace(self.credential.clone()));
        let result = self.inner.as_mut().poll(cx);
        CREDENTIAL.with(|current| *current.borrow_mut() = previous);
        result
    }
}
