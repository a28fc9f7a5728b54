//! `nexysync`: runs the NexySync server and provisions projects and agents.
//! See the library (`nexysync::cli`) for the commands.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = nexysync::Cli::parse();
    nexysync::init_tracing(cli.default_log_filter());
    match nexysync::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", nexysync::error_report(&err));
            ExitCode::from(nexysync::exit_status(&err))
        }
    }
}
