use crate::client::Client;
use api_types::{CreateProject, ProjectList};
use std::process::ExitCode;

/// Manage projects, the tenancy unit (admin credential).
#[derive(clap::Subcommand)]
pub enum Project {
    /// Create a project. Names are DNS labels and are never reused.
    Create {
        /// Project name.
        name: String,
    },
    /// List projects.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an empty project and revoke its keys.
    Rm {
        /// Project name.
        name: String,
    },
}

impl Project {
    pub async fn run(self, client: Client) -> anyhow::Result<ExitCode> {
        match self {
            Project::Create { name } => {
                let request = client
                    .control(reqwest::Method::POST, "/v1/projects")
                    .json(&CreateProject { name: name.clone() });
                client.send(request).await?;
                println!("created project {name}");
            }
            Project::Ls { json } => {
                let list: ProjectList = client
                    .json(client.control(reqwest::Method::GET, "/v1/projects"))
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    for project in &list.projects {
                        println!("{}", project.name);
                    }
                }
            }
            Project::Rm { name } => {
                client
                    .send(client.control(reqwest::Method::DELETE, &format!("/v1/projects/{name}")))
                    .await?;
                println!("removed project {name}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
