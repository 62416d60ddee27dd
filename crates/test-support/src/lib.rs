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
pub mod guest_events;
mod http;
mod process;
pub mod realtime;

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

/// The precompiled files of a data directory, by name, with their times:
/// what a test reads to tell that nothing was compiled again.
pub fn compiled_files(data_dir: &std::path::Path) -> Vec<(String, std::time::SystemTime)> {
    let mut files: Vec<(String, std::time::SystemTime)> =
        std::fs::read_dir(data_dir.join("compiled"))
            .expect("the compiled directory")
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_file())
            .map(|entry| {
                let modified = entry
                    .metadata()
                    .and_then(|metadata| metadata.modified())
                    .expect("a file's time");
                (entry.file_name().to_string_lossy().into_owned(), modified)
            })
            .collect();
    files.sort();
    files
}
