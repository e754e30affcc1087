//! `testrunner`: the command-line client of the TestRunner API.
//!
//! `testrunner run tests/*.sh` creates a Testrun, follows it live (log lines
//! prefixed with their test), prints a summary and exits 0 only on SUCCESS,
//! which is what a CI job wants. The other subcommands mirror the API.

mod cases;
mod commands;
mod output;
mod runners;
mod workspace;

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    match commands::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("testrunner: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
