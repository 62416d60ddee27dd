//! `wok auth`: a project's app users, their sessions, its auth settings
//! and its token signing keys (`--project`; the admin credential or a
//! service key as `--token`). Talks to the project's auth admin routes,
//! `/p/PROJECT/auth/v1/admin/...`.
use crate::client::Client;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::io::Read;
use std::process::ExitCode;

/// App users and their sessions, auth settings and signing keys.
#[derive(clap::Subcommand)]
pub enum Auth {
    /// The project's app users.
    #[command(subcommand)]
    Users(Users),
    /// A user's sessions.
    #[command(subcommand)]
    Sessions(Sessions),
    /// The project's auth settings.
    #[command(subcommand)]
    Config(Config),
    /// The keys that sign the project's access tokens.
    #[command(subcommand)]
    Keys(Keys),
}

#[derive(clap::Subcommand)]
pub enum Users {
    /// List users, by id.
    Ls {
        #[arg(long, default_value_t = 1)]
        page: u64,
        #[arg(long, default_value_t = 50)]
        per_page: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a user (its password, if any, read from standard input).
    Create {
        email: String,
        /// Read a password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Count the email as confirmed.
        #[arg(long)]
        confirmed: bool,
        /// user_metadata, as a JSON object.
        #[arg(long, value_name = "JSON")]
        data: Option<String>,
        /// app_metadata, as a JSON object (only the service side sets it).
        #[arg(long, value_name = "JSON")]
        app_data: Option<String>,
    },
    /// Show a user.
    Get { id: String },
    /// Change a user: a new password or a ban ends its sessions.
    Update {
        id: String,
        #[arg(long)]
        email: Option<String>,
        /// Read a new password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Whether the email counts as confirmed.
        #[arg(long)]
        confirmed: Option<bool>,
        /// Merged into user_metadata (a JSON object).
        #[arg(long, value_name = "JSON")]
        data: Option<String>,
        /// Merged into app_metadata (a JSON object).
        #[arg(long, value_name = "JSON")]
        app_data: Option<String>,
    },
    /// Ban a user for a while (e.g. 24h); its sessions end at once.
    Ban {
        id: String,
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
    },
    /// Lift a ban.
    Unban { id: String },
    /// Delete a user; its sessions end at once.
    Rm { id: String },
    /// A user's second factors (TOTP).
    #[command(subcommand)]
    Factors(Factors),
    /// Mint a single-use login ticket for a user and print it; the user's
    /// client trades it for a session (POST /auth/v1/token?grant_type=ticket).
    Ticket {
        id: String,
        /// How long the ticket works, in seconds (at most 600).
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        expires_in: i64,
    },
}

#[derive(clap::Subcommand)]
pub enum Factors {
    /// A user's second factors.
    Ls {
        user: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user's factor (when its authenticator is lost).
    Rm { user: String, factor: String },
}

#[derive(clap::Subcommand)]
pub enum Sessions {
    /// A user's live sessions.
    Ls {
        user: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// End every session of a user at once.
    End { user: String },
}

#[derive(clap::Subcommand)]
pub enum Config {
    /// Show the settings.
    Get,
    /// Change settings: NAME=VALUE, each VALUE JSON (true, 600) or text.
    Set {
        #[arg(required = true, value_name = "NAME=VALUE")]
        settings: Vec<String>,
    },
}

#[derive(clap::Subcommand)]
pub enum Keys {
    /// The signing keys, oldest first; the newest honoured one signs.
    Ls,
    /// Make a new signing key; older ones are honoured until retired.
    Rotate,
    /// Stop honouring a key: its tokens are refused from now on.
    Retire { kid: String },
}

fn object(flag: &str, text: &Option<String>) -> anyhow::Result<Option<Value>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("{flag} is not JSON: {text}"))?;
    if !value.is_object() {
        bail!("{flag} must be a JSON object");
    }
    Ok(Some(value))
}

fn password_from_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

fn print_user(user: &Value) {
    println!("{}", serde_json::to_string_pretty(user).unwrap_or_default());
}

impl Auth {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        let admin =
            |method: reqwest::Method, path: &str| client.auth(method, &format!("/admin{path}"));
        match self {
            Auth::Users(Users::Ls {
                page,
                per_page,
                json,
            }) => {
                let path = format!("/users?page={page}&per_page={per_page}");
                let list: Value = client.json(admin(reqwest::Method::GET, &path)).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                    return Ok(ExitCode::SUCCESS);
                }
                println!("{:<36}  {:<9} {:<7} EMAIL", "ID", "KIND", "BANNED");
                for user in list["users"].as_array().into_iter().flatten() {
                    let kind = if user["is_anonymous"] == true {
                        "anonymous"
                    } else {
                        "email"
                    };
                    let banned = if user["banned_until"].is_string() {
                        "yes"
                    } else {
                        ""
                    };
                    println!(
                        "{:<36}  {kind:<9} {banned:<7} {}",
                        user["id"].as_str().unwrap_or(""),
                        user["email"].as_str().unwrap_or("")
                    );
                }
            }
            Auth::Users(Users::Create {
                email,
                password_stdin,
                confirmed,
                data,
                app_data,
            }) => {
                let mut body = json!({ "email": email, "email_confirm": confirmed });
                if password_stdin {
                    body["password"] = password_from_stdin()?.into();
                }
                if let Some(data) = object("--data", &data)? {
                    body["user_metadata"] = data;
                }
                if let Some(data) = object("--app-data", &app_data)? {
                    body["app_metadata"] = data;
                }
                let user: Value = client
                    .json(admin(reqwest::Method::POST, "/users").json(&body))
                    .await?;
                eprintln!("created user {}", user["id"].as_str().unwrap_or(""));
                print_user(&user);
            }
            Auth::Users(Users::Get { id }) => {
                let user: Value = client
                    .json(admin(reqwest::Method::GET, &format!("/users/{id}")))
                    .await?;
                print_user(&user);
            }
            Auth::Users(Users::Update {
                id,
                email,
                password_stdin,
                confirmed,
                data,
                app_data,
            }) => {
                let mut body = json!({});
                if let Some(email) = email {
                    body["email"] = email.into();
                }
                if password_stdin {
                    body["password"] = password_from_stdin()?.into();
                }
                if let Some(confirmed) = confirmed {
                    body["email_confirm"] = confirmed.into();
                }
                if let Some(data) = object("--data", &data)? {
                    body["user_metadata"] = data;
                }
                if let Some(data) = object("--app-data", &app_data)? {
                    body["app_metadata"] = data;
                }
                let user: Value = client
                    .json(admin(reqwest::Method::PUT, &format!("/users/{id}")).json(&body))
                    .await?;
                print_user(&user);
            }
            Auth::Users(Users::Ban { id, duration }) => {
                humantime::parse_duration(&duration)
                    .with_context(|| format!("--for {duration:?} is not a duration (like 24h)"))?;
                client
                    .send(
                        admin(reqwest::Method::PUT, &format!("/users/{id}"))
                            .json(&json!({ "ban_duration": duration })),
                    )
                    .await?;
                println!("banned user {id} for {duration}; its sessions ended");
            }
            Auth::Users(Users::Unban { id }) => {
                client
                    .send(
                        admin(reqwest::Method::PUT, &format!("/users/{id}"))
                            .json(&json!({ "ban_duration": "none" })),
                    )
                    .await?;
                println!("lifted the ban of user {id}");
            }
            Auth::Users(Users::Rm { id }) => {
                client
                    .send(admin(reqwest::Method::DELETE, &format!("/users/{id}")))
                    .await?;
                println!("deleted user {id}; its sessions ended");
            }
            Auth::Users(Users::Factors(Factors::Ls { user, json })) => {
                let list: Value = client
                    .json(admin(
                        reqwest::Method::GET,
                        &format!("/users/{user}/factors"),
                    ))
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                    return Ok(ExitCode::SUCCESS);
                }
                println!(
                    "{:<36}  {:<5} {:<10} {:<25} NAME",
                    "ID", "TYPE", "STATUS", "CREATED"
                );
                for factor in list.as_array().into_iter().flatten() {
                    println!(
                        "{:<36}  {:<5} {:<10} {:<25} {}",
                        factor["id"].as_str().unwrap_or(""),
                        factor["factor_type"].as_str().unwrap_or(""),
                        factor["status"].as_str().unwrap_or(""),
                        factor["created_at"].as_str().unwrap_or(""),
                        factor["friendly_name"].as_str().unwrap_or("")
                    );
                }
            }
            Auth::Users(Users::Factors(Factors::Rm { user, factor })) => {
                client
                    .send(admin(
                        reqwest::Method::DELETE,
                        &format!("/users/{user}/factors/{factor}"),
                    ))
                    .await?;
                println!("removed factor {factor} of user {user}");
            }
            Auth::Users(Users::Ticket { id, expires_in }) => {
                let minted: Value = client
                    .json(
                        admin(reqwest::Method::POST, "/tickets")
                            .json(&json!({ "user_id": id, "expires_in": expires_in })),
                    )
                    .await?;
                eprintln!(
                    "a ticket for user {id}, good once until {} (Unix seconds)",
                    minted["expires_at"]
                );
                println!("{}", minted["ticket"].as_str().unwrap_or(""));
            }
            Auth::Sessions(Sessions::Ls { user, json }) => {
                let list: Value = client
                    .json(admin(
                        reqwest::Method::GET,
                        &format!("/users/{user}/sessions"),
                    ))
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                    return Ok(ExitCode::SUCCESS);
                }
                println!("{:<36}  {:<5} {:<25} REFRESHED", "ID", "AAL", "CREATED");
                for session in list["sessions"].as_array().into_iter().flatten() {
                    println!(
                        "{:<36}  {:<5} {:<25} {}",
                        session["id"].as_str().unwrap_or(""),
                        session["aal"].as_str().unwrap_or(""),
                        session["created_at"].as_str().unwrap_or(""),
                        session["refreshed_at"].as_str().unwrap_or("")
                    );
                }
            }
            Auth::Sessions(Sessions::End { user }) => {
                let ended: Value = client
                    .json(admin(
                        reqwest::Method::DELETE,
                        &format!("/users/{user}/sessions"),
                    ))
                    .await?;
                println!("ended {} sessions of user {user}", ended["ended"]);
            }
            Auth::Config(Config::Get) => {
                let settings: Value = client.json(admin(reqwest::Method::GET, "/config")).await?;
                println!("{}", serde_json::to_string_pretty(&settings)?);
            }
            Auth::Config(Config::Set { settings }) => {
                let mut current: Value =
                    client.json(admin(reqwest::Method::GET, "/config")).await?;
                for pair in &settings {
                    let Some((name, value)) = pair.split_once('=') else {
                        bail!("{pair:?} must look like NAME=VALUE");
                    };
                    if current.get(name).is_none() {
                        bail!("{name:?} is not an auth setting (see `wok auth config get`)");
                    }
                    current[name] =
                        serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
                }
                let saved: Value = client
                    .json(admin(reqwest::Method::PUT, "/config").json(&current))
                    .await?;
                println!("{}", serde_json::to_string_pretty(&saved)?);
            }
            Auth::Keys(Keys::Ls) => {
                let list: Value = client.json(admin(reqwest::Method::GET, "/keys")).await?;
                println!("{:<32}  {:<25} RETIRED", "KID", "CREATED");
                for key in list["keys"].as_array().into_iter().flatten() {
                    println!(
                        "{:<32}  {:<25} {}",
                        key["kid"].as_str().unwrap_or(""),
                        key["created_at"].as_str().unwrap_or(""),
                        key["retired_at"].as_str().unwrap_or("")
                    );
                }
            }
            Auth::Keys(Keys::Rotate) => {
                let made: Value = client.json(admin(reqwest::Method::POST, "/keys")).await?;
                println!(
                    "signing key {} signs from now on; older keys are honoured until retired",
                    made["kid"].as_str().unwrap_or("")
                );
            }
            Auth::Keys(Keys::Retire { kid }) => {
                client
                    .send(admin(reqwest::Method::DELETE, &format!("/keys/{kid}")))
                    .await?;
                println!("retired signing key {kid}: its tokens are refused from now on");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
