//! `nexysync project create`: the owner makes a project's keys on their own machine and
//! registers only its public part with the server. `nexysync project retention`: the
//! owner changes the project's retention policy (ADR 0012).

use std::path::PathBuf;

use nexysync_domain::event::{Actor, Draft, EventBody, ProjectCreated, RetentionPolicy};
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

    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// A retention policy on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// How long a message lives when it names no TTL: seconds, or a number with s, m, h
    /// or d (`3600`, `12h`, `7d`). Default: for ever.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub default_ttl: Option<u32>,

    /// The longest TTL a message may ask for, same form. Default: no project maximum.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_ttl: Option<u32>,
}

impl RetentionArgs {
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            default_ttl_s: self.default_ttl,
            max_ttl_s: self.max_ttl,
        }
    }
}

/// `3600`, `45s`, `30m`, `12h` or `7d`, in seconds (at least 1).
pub fn parse_duration(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let scale: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h or d")),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 3600, 12h, 7d)"))?;
    match value.checked_mul(scale).and_then(|s| u32::try_from(s).ok()) {
        Some(0) => Err("a duration must be at least 1 second".into()),
        Some(seconds) => Ok(seconds),
        None => Err(format!("`{text}` is too long")),
    }
}

#[derive(Debug, clap::Args)]
pub struct RetentionSetArgs {
    /// The project: the name (or id) of a project file in NEXYSYNC_HOME/projects.
    pub project: String,

    #[command(flatten)]
    pub retention: RetentionArgs,

    /// The NexySync API server. Default: the server recorded in the project file.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// File holding the server's admin token. Default: NEXYSYNC_ADMIN_TOKEN, else
    /// DATA_DIR/admin-token (written by `nexysync up` on this machine).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

/// Replaces the project's retention policy for messages sent from now on; messages sent
/// before keep the expiry they had.
pub async fn set_retention(settings: Settings, args: RetentionSetArgs) -> anyhow::Result<()> {
    let (_, project) = ProjectFile::find(&settings.home, &args.project)?;
    let server = validate_server_url(args.server.as_deref().unwrap_or(&project.server))?;
    let (token, _) = admin_token::for_client(args.admin_token_file.as_deref(), &settings)?;
    let client = Provisioning::new(server, token)?;
    let policy = args.retention.policy();
    let event = Draft::new(project.id, Actor::Owner, EventBody::RetentionSet(policy))
        .sign(&project.owner_signing_key);
    let appended = client
        .set_retention(project.id, &event)
        .await
        .map_err(|err| {
            anyhow::Error::new(err).context(format!(
                "failed to set the retention of project `{}`",
                project.name
            ))
        })?;
    println!(
        "Retention of project `{}` set (seq {}): {}",
        project.name,
        appended.seq,
        describe(&policy)
    );
    println!("  It applies to messages sent from now on; earlier ones keep their expiry.");
    Ok(())
}

/// "messages live 7d by default, at most 30d".
fn describe(policy: &RetentionPolicy) -> String {
    let default = match policy.default_ttl_s {
        Some(s) => format!("messages live {s} s unless they ask otherwise"),
        None => "messages live for ever unless they ask for a TTL".into(),
    };
    match policy.max_ttl_s {
        Some(max) => format!("{default}, at most {max} s"),
        None => format!("{default}, no maximum"),
    }
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
            retention: args.retention.policy(),
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
    println!("  retention:    {}", describe(&args.retention.policy()));
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

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_read_as_seconds_with_an_optional_unit() {
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("7w").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("99999999d").is_err());
    }
}
