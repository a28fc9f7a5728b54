//! `nexysync project create`: the owner makes a project's keys on their own machine and
//! registers only its public part with the server.

use std::path::PathBuf;

use nexysync_domain::event::{Actor, Draft, EventBody, ProjectCreated};
use nexysync_domain::ids::ProjectName;

use crate::admin_token;
use crate::project_file::{ProjectFile, SaveError};
use crate::provisioning::Provisioning;
use crate::settings::{validate_server_url, Settings};

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The project's name: 1 to 64 of a-z, A-Z, 0-9, '.', '_', '-'. The server sees it
    /// (operators need it); it also names the project file.
    pub name: ProjectName,

    /// The NexySync API server. Default: NEXYSYNC_URL, else http://127.0.0.1:8707.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// File holding the server's admin token. Default: NEXYSYNC_ADMIN_TOKEN, else
    /// DATA_DIR/admin-token (written by `nexysync up` on this machine).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

pub async fn create(settings: Settings, args: CreateArgs) -> anyhow::Result<()> {
    let server = match &args.server {
        Some(url) => validate_server_url(url)?,
        None => settings.url.clone(),
    };
    let (token, _) = admin_token::for_client(args.admin_token_file.as_deref(), &settings)?;
    let client = Provisioning::new(server.clone(), token)?;

    let project = ProjectFile::generate(args.name, server.clone());
    let event = Draft::new(
        project.id,
        Actor::Owner,
        EventBody::ProjectCreated(ProjectCreated {
            name: project.name.clone(),
            owner_key: project.owner_signing_key.public_key(),
        }),
    )
    .sign(&project.owner_signing_key);

    // Saved before the server hears of it: the file is the only copy of the owner key, so
    // a project must never exist on the server without it. Saving also refuses a name
    // already used on this machine, before anything is sent.
    let path = project.save_new(&settings.home).map_err(|err| match err {
        SaveError::AlreadyExists(_) => anyhow::Error::new(err),
        SaveError::Io { .. } => anyhow::Error::new(err).context("failed to save the project"),
    })?;

    if let Err(err) = client.create_project(&event).await {
        // Not created (or not known to be): drop the file so the name can be used again.
        if let Err(cleanup) = std::fs::remove_file(&path) {
            eprintln!(
                "warning: failed to remove the project file {} ({cleanup}); remove it before reusing the name",
                path.display()
            );
        }
        return Err(
            anyhow::Error::new(err).context(format!("failed to create project `{}`", project.name))
        );
    }

    println!("Created project `{}` (id {})", project.name, project.id);
    println!("  server:       {server}");
    println!(
        "  project file: {} (the project key and the owner key; keep it private, back it up)",
        path.display()
    );
    println!();
    println!("Next, give an agent its key file:");
    println!(
        "  nexysync agent add {} AGENT --dir <the agent's working directory>",
        project.name
    );
    Ok(())
}
