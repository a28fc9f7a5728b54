//! The `nexysync` binary as a library: run the server, provision projects and agents.
//!
//! # Layout
//! - [`cli`]: the clap command tree and one file per command (`up`, `project`, `agent`,
//!   `audit`, `bench`).
//! - [`audit`]: verify, replay and export a project's history, over the domain's auditor.
//! - [`bench`]: the measurements of `nexysync bench`, each beside its raw NATS floor.
//! - [`settings`]: the one typed settings struct (defaults, then a TOML file, then
//!   `NEXYSYNC_*` environment variables).
//! - [`admin_token`]: the token that guards provisioning: taken from the settings, or
//!   generated once into `<data-dir>/admin-token`.
//! - [`project_file`]: the owner's `<home>/projects/<name>.json` with the project key and
//!   the owner signing key.
//! - [`provisioning`]: the HTTP client of the admin routes, with errors a person can act on.
//! - `private_file`: files that hold secrets (0600 in 0700 directories, never overwritten).
//!
//! # Invariants
//! - Keys are generated on this machine. The server receives public keys, signatures and
//!   the SHA-256 of agent tokens; never the project key, a signing key or a token.
//! - Secrets are never printed or logged; messages say where a secret lives instead.
//! - A file holding a secret is never silently overwritten.

pub mod admin_token;
pub mod audit;
pub mod bench;
pub mod cli;
mod private_file;
pub mod project_file;
pub mod provisioning;
pub mod settings;

pub use cli::{run, Cli};

/// Logs go to stderr (stdout is for command output), filtered by `RUST_LOG` or else
/// `default_filter`.
pub fn init_tracing(default_filter: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for people, plain text for log files and test harnesses.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The process exit status for `err`: 2 when an audit found a broken rule, else 1.
pub fn exit_status(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<audit::AuditFailure>().is_some() {
        2
    } else {
        1
    }
}

/// An error and its causes, one per line, for the terminal.
pub fn error_report(err: &anyhow::Error) -> String {
    let mut report = format!("error: {err}");
    for cause in err.chain().skip(1) {
        report.push_str(&format!("\n  caused by: {cause}"));
    }
    report
}
