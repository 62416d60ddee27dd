//! Test harnesses: [`TestApp`], the whole server in-process on a loopback
//! port with a clock the test moves (the fast door: no process, no
//! waiting); [`WokServer`], the real `wok` binary as a process (for
//! SIGKILL, signals, the CLI itself and clients in other languages); and
//! the HTTP helpers and `check` both share.
//!
//! Dev-only layer: nothing in the platform depends on this crate.

// Runs `wok` as a process: what this crate is for (ARCHITECTURE.md).
#![allow(clippy::disallowed_methods)]

mod app;
mod http;
mod process;

pub use app::TestApp;
pub use http::{
    Answer, check, control, deploy_api, get, http, metric, send, wait_for, wait_for_records,
};
pub use process::{CliOutput, WokServer};

/// A running server the helpers can talk to.
pub trait Endpoint {
    /// `http://127.0.0.1:PORT`
    fn url(&self) -> &str;
    /// The admin credential.
    fn admin_token(&self) -> String;
}

impl<T: Endpoint + ?Sized> Endpoint for std::sync::Arc<T> {
    fn url(&self) -> &str {
        (**self).url()
    }

    fn admin_token(&self) -> String {
        (**self).admin_token()
    }
}
