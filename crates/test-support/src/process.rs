//! The real `wok` binary as a server, and CLI commands run against it:
//! for what needs a process (SIGKILL, signals, the CLI itself, clients of
//! other languages).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `wok up`. Dropping it kills the process.
pub struct WokServer {
    binary: PathBuf,
    data_dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Environment variables given to the process (again on a restart).
    env: Vec<(String, String)>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl WokServer {
    /// Starts a server with a new, empty data directory.
    pub fn start(binary: &str) -> Self {
        Self::start_with(binary, &[])
    }

    /// Starts a server whose data directory is a new directory in `parent`
    /// (a small filesystem, say).
    pub fn start_in(binary: &str, parent: &Path, extra_args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir_in(parent).expect("creating a data directory");
        Self::launch(
            PathBuf::from(binary),
            data_dir,
            extra_args.iter().map(|s| s.to_string()).collect(),
        )
    }

    /// Starts a server with extra `wok up` flags.
    pub fn start_with(binary: &str, extra_args: &[&str]) -> Self {
        Self::start_with_env(binary, extra_args, &[])
    }

    /// Starts a server with extra `wok up` flags and environment variables.
    pub fn start_with_env(binary: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let data_dir = tempfile::tempdir().expect("creating a data directory");
        Self::launch_with_env(
            PathBuf::from(binary),
            data_dir,
            extra_args.iter().map(|s| s.to_string()).collect(),
            env,
        )
    }

    fn launch(binary: PathBuf, data_dir: tempfile::TempDir, extra_args: Vec<String>) -> Self {
        Self::launch_with_env(binary, data_dir, extra_args, &[])
    }

    fn launch_with_env(
        binary: PathBuf,
        data_dir: tempfile::TempDir,
        extra_args: Vec<String>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(&binary)
            .envs(env.iter().copied())
            .arg("up")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data_dir.path())
            // Tests run many servers at once: keep each one's reservation small.
            .args(["--max-instances", "64"])
            .args(&extra_args)
            .env("WOK_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting wok up");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("wok listening on ") {
                    let _ = sender.send(url.trim().to_owned());
                }
            }
        });
        let url = receiver
            .recv_timeout(Duration::from_secs(120))
            .expect("wok up printed where it listens within 120s");
        Self {
            binary,
            data_dir,
            child: Some(child),
            extra_args,
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            url,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("admin-token"))
            .expect("admin token file")
            .trim()
            .to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A `wok` command aimed at this server the way a local user runs it:
    /// only the data directory is known; server and token are found there.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("WOK_DATA", self.data_dir.path())
            .env_remove("WOK_SERVER")
            .env_remove("WOK_TOKEN");
        command
    }

    /// Runs a `wok` command to completion.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        CliOutput(self.command(args).output().expect("running wok"))
    }

    /// Runs a `wok` command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.0.status.success(),
            "wok {args:?} failed: {}",
            output.stderr()
        );
        output.stdout()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM");
        self.child
            .take()
            .expect("running")
            .wait()
            .expect("waiting for wok")
    }

    /// Sends SIGTERM without waiting.
    pub fn send_terminate(&self) {
        self.signal("-TERM");
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.child
            .take()
            .expect("running")
            .wait()
            .expect("waiting for wok")
    }

    /// Stops gracefully and starts again on the same data directory.
    pub fn restart(self) -> Self {
        self.restart_after(|_| {})
    }

    /// Stops gracefully, lets `change` alter the stopped server's data
    /// directory (as an operator would), and starts again on it.
    pub fn restart_after(mut self, change: impl FnOnce(&Path)) -> Self {
        let status = self.terminate();
        assert!(status.success(), "wok exited with {status} on SIGTERM");
        change(self.data_dir.path());
        self.relaunch()
    }

    /// Kills the server with SIGKILL (no chance to flush anything) and
    /// starts it again on the same data directory.
    pub fn crash_and_restart(mut self) -> Self {
        self.signal("-KILL");
        let _ = self.child.take().expect("running").wait();
        self.relaunch()
    }

    fn relaunch(mut self) -> Self {
        let data_dir = std::mem::replace(
            &mut self.data_dir,
            tempfile::tempdir().expect("placeholder"),
        );
        let env = std::mem::take(&mut self.env);
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        Self::launch_with_env(
            self.binary.clone(),
            data_dir,
            std::mem::take(&mut self.extra_args),
            &env,
        )
    }
}

impl crate::Endpoint for WokServer {
    fn url(&self) -> &str {
        &self.url
    }

    fn admin_token(&self) -> String {
        WokServer::admin_token(self)
    }
}

impl Drop for WokServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The output of a finished `wok` command.
pub struct CliOutput(pub Output);

impl CliOutput {
    pub fn success(&self) -> bool {
        self.0.status.success()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}
