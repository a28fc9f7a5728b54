//! `nexysync agent add`: registers an agent (vouched for by the owner's signature) and
//! writes its key file into the directory the agent works in.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nexysync_domain::crypto::{AgentToken, SigningKey};
use nexysync_domain::event::{Actor, AgentRegistered, Draft, EventBody};
use nexysync_domain::ids::{AgentId, AgentName};
use nexysync_mcp::key_file::{AgentEntry, ProjectEntry, KEY_FILE_VERSION};
use nexysync_mcp::KeyFile;

use crate::admin_token;
use crate::private_file;
use crate::project_file::ProjectFile;
use crate::provisioning::Provisioning;
use crate::settings::{validate_server_url, Settings};

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The project: the name (or id) of a project file in NEXYSYNC_HOME/projects, made by
    /// `nexysync project create`.
    pub project: String,

    /// The agent's name, unique in the project (1 to 64 of a-z, A-Z, 0-9, '.', '_', '-').
    /// Other agents address messages to it.
    pub agent: AgentName,

    /// The agent's working directory; the key file goes to DIR/.nexysync/key. Default: the
    /// current directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Replace an existing key file in DIR (its agent stays registered, without a key).
    #[arg(long)]
    pub force: bool,

    /// The NexySync API server. Default: the server recorded in the project file.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// File holding the server's admin token. Default: NEXYSYNC_ADMIN_TOKEN, else
    /// DATA_DIR/admin-token (written by `nexysync up` on this machine).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

pub async fn add(settings: Settings, args: AddArgs) -> anyhow::Result<()> {
    let (_, project) = ProjectFile::find(&settings.home, &args.project)?;
    let server = validate_server_url(args.server.as_deref().unwrap_or(&project.server))?;
    let dir = working_dir(args.dir.as_deref())?;
    let key_path = KeyFile::path_in(&dir);

    // Refuse before registering, so a refusal leaves nothing behind on the server.
    if key_path.exists() && !args.force {
        bail!(
            "the key file {} already exists; nothing was registered. Pass --force to replace it, \
             or choose another --dir",
            key_path.display()
        );
    }
    let (admin_token, _) = admin_token::for_client(args.admin_token_file.as_deref(), &settings)?;
    let client = Provisioning::new(server.clone(), admin_token)?;

    let key_dir = key_path
        .parent()
        .context("the key file path has no parent directory")?
        .to_owned();
    let created_key_dir = !key_dir.exists();
    private_file::create_dir(&key_dir)
        .with_context(|| format!("failed to create the directory {}", key_dir.display()))?;

    let agent = AgentId::generate();
    let signing_key = SigningKey::generate();
    let token = AgentToken::generate();
    let event = Draft::new(
        project.id,
        Actor::Owner,
        EventBody::AgentRegistered(AgentRegistered {
            agent,
            name: args.agent.clone(),
            signing_key: signing_key.public_key(),
            token_hash: token.hash(),
        }),
    )
    .sign(&project.owner_signing_key);

    if let Err(err) = client.register_agent(project.id, &event).await {
        if created_key_dir {
            // Only removes it if still empty.
            let _ = std::fs::remove_dir(&key_dir);
        }
        let hint = if err.code() == Some("unknown_project") {
            format!(
                " (the server at {server} does not know project {}; the project file says it \
                 was created on {})",
                project.id, project.server
            )
        } else {
            String::new()
        };
        return Err(anyhow::Error::new(err).context(format!(
            "failed to register agent `{}` in project `{}`{hint}",
            args.agent, project.name
        )));
    }

    let key_file = KeyFile {
        version: KEY_FILE_VERSION,
        server: server.clone(),
        project: ProjectEntry {
            id: project.id,
            name: project.name.clone(),
            owner_key: project.owner_signing_key.public_key(),
        },
        agent: AgentEntry {
            id: agent,
            name: args.agent.clone(),
        },
        token,
        project_key: project.project_key.clone(),
        signing_key,
    };
    KeyFile::write_new(&key_path, &key_file, args.force).with_context(|| {
        format!(
            "agent `{}` is registered, but its key file could not be written, so its credentials \
             are lost; fix the problem and add the agent again under another name",
            args.agent
        )
    })?;

    println!(
        "Registered agent `{}` (id {agent}) in project `{}`",
        args.agent, project.name
    );
    println!(
        "  key file: {} (mode 0600: the agent's token and keys; never commit it)",
        key_path.display()
    );
    println!();
    print_mcp_config(&dir, &key_path);
    Ok(())
}

/// The directory the key file goes into, absolute, checked to exist.
fn working_dir(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(dir) => dir.to_owned(),
        None => std::env::current_dir().context("failed to read the current directory")?,
    };
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; pass --dir with the agent's working directory (it must exist)",
            dir.display()
        );
    }
    dir.canonicalize()
        .with_context(|| format!("failed to resolve the directory {}", dir.display()))
}

fn print_mcp_config(dir: &Path, key_path: &Path) {
    let dir = dir.display();
    println!(
        "Connect the agent's AI tool: `nexysync-mcp` finds the key file when started in {dir}\n\
         or below (or set NEXYSYNC_KEY_FILE={}).",
        key_path.display()
    );
    println!();
    println!("  Claude Code (run in {dir}):");
    println!("    claude mcp add nexysync -- nexysync-mcp");
    println!("  or {dir}/.mcp.json, and for Cursor {dir}/.cursor/mcp.json:");
    println!(r#"    {{ "mcpServers": {{ "nexysync": {{ "command": "nexysync-mcp" }} }} }}"#);
    println!("  VS Code, {dir}/.vscode/mcp.json:");
    println!(
        r#"    {{ "servers": {{ "nexysync": {{ "type": "stdio", "command": "nexysync-mcp" }} }} }}"#
    );
}
