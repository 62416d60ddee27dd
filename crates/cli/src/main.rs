//! The `wok` binary: the server (`wok up`) and the client of its control API.
//!
//! Layer: composition. One file per subcommand under `commands/`; the doc
//! comments of the clap fields are the `--help`.

mod client;
mod commands;
mod manifest;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

// The request path allocates many small, short-lived objects (wasmtime
// stores, resources, futures); mimalloc serves them faster than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "wok", version, about = "A self-hostable serverless platform")]
struct Cli {
    /// Server URL (default: the local server found in the data directory, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "WOK_SERVER")]
    server: Option<String>,
    /// Admin token (default: read from the local data directory).
    #[arg(long, global = true, env = "WOK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data directory of the local server (default: $XDG_DATA_HOME/wok or ~/.local/share/wok).
    #[arg(long, global = true, env = "WOK_DATA")]
    data_dir: Option<PathBuf>,
    /// Project the function and key commands act on (default: `default`).
    #[arg(long, short = 'p', global = true, env = "WOK_PROJECT")]
    project: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Up(commands::up::Up),
    Deploy(Box<commands::deploy::Deploy>),
    Invoke(commands::invoke::Invoke),
    Invocation(commands::invoke::Invocation),
    Ls(commands::ls::Ls),
    Rm(commands::rm::Rm),
    Versions(commands::versions::Versions),
    Rollback(commands::rollback::Rollback),
    Logs(commands::logs::Logs),
    Usage(commands::usage::Usage),
    #[command(subcommand)]
    Project(commands::project::Project),
    #[command(subcommand)]
    Keys(commands::keys::Keys),
    #[command(subcommand)]
    Kv(commands::kv::Kv),
    #[command(subcommand)]
    Docs(commands::docs::Docs),
    #[command(subcommand)]
    Objects(commands::objects::Objects),
    Publish(commands::publish::Publish),
    #[command(subcommand)]
    Events(commands::events::Events),
    #[command(subcommand)]
    Auth(commands::auth::Auth),
    #[command(subcommand)]
    Rules(commands::rules::Rules),
}

fn main() -> ExitCode {
    // `wok up` starts this binary again as its small sandbox helper; it
    // must stay single-threaded, so it branches off before anything else.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == server::SANDBOX_HELPER_ARG)
    {
        server::run_sandbox_helper();
    }
    // wasmtime builds an error on every store drop; with RUST_BACKTRACE set
    // in the environment it captures a backtrace each time, costing 15-35%
    // per request. Library backtraces are off unless asked for explicitly;
    // panics still honour RUST_BACKTRACE.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: first thing in main, before any thread exists.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RUST_LIB_BACKTRACE", "0")
        };
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| server::default_data_dir(&|key| std::env::var(key).ok()));
    let connection = client::Connection {
        server: cli.server,
        token: cli.token,
        data_dir: data_dir.clone(),
        project: cli.project,
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(command) => command.run(data_dir).await,
            Command::Deploy(command) => command.run(connection.client()?).await,
            Command::Invoke(command) => command.run(connection.client()?).await,
            Command::Invocation(command) => command.run(connection.client()?).await,
            Command::Ls(command) => command.run(connection.client()?).await,
            Command::Rm(command) => command.run(connection.client()?).await,
            Command::Versions(command) => command.run(connection.client()?).await,
            Command::Rollback(command) => command.run(connection.client()?).await,
            Command::Logs(command) => command.run(connection.client()?).await,
            Command::Usage(command) => command.run(connection.client()?).await,
            Command::Project(command) => command.run(connection.client()?).await,
            Command::Keys(command) => command.run(connection.client()?).await,
            Command::Auth(command) => command.run(connection.client()?).await,
            Command::Rules(command) => command.run(connection.client()?).await,
            Command::Kv(command) => command.run(connection.client()?).await,
            Command::Docs(command) => command.run(connection.client()?).await,
            Command::Objects(command) => command.run(connection.client()?).await,
            Command::Publish(command) => command.run(connection.client()?).await,
            Command::Events(command) => command.run(connection.client()?).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
