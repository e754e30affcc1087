//! `testrunner runners ...`: the runner fleet (RunnerAdminService).

use std::process::ExitCode;

use clap::Subcommand;
use testrunner_proto::v1::runner_admin_service_client::RunnerAdminServiceClient;
use testrunner_proto::v1::{
    CreateRunnerTokenRequest, DrainRunnerRequest, ListRunnerTokensRequest, ListRunnersRequest,
    RevokeRunnerTokenRequest, RunnerInfo, RunnerToken,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::commands::status_err;

#[derive(Debug, Subcommand)]
pub enum RunnersCommand {
    /// Runners attached to any coordinator of this database.
    List,
    /// Hand a runner no more tests (by id, or by name when unique); what
    /// it runs finishes.
    Drain { id: String },
    /// Tokens runners attach with, besides the shared one.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token and print its secret (shown only this once).
    Create {
        #[arg(long)]
        name: String,
    },
    /// Issued tokens (never their secrets).
    List,
    /// Revoke a token: runners attached with it are cut off within a
    /// heartbeat.
    Revoke { name: String },
}

/// Runs one `runners` subcommand.
pub async fn run(
    channel: Channel,
    token: Option<&MetadataValue<Ascii>>,
    command: RunnersCommand,
) -> anyhow::Result<ExitCode> {
    let mut client = RunnerAdminServiceClient::new(channel);
    fn with_token<T>(token: Option<&MetadataValue<Ascii>>, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }
    match command {
        RunnersCommand::List => {
            let runners = client
                .list_runners(with_token(token, ListRunnersRequest {}))
                .await
                .map_err(status_err)?
                .into_inner()
                .runners;
            for r in &runners {
                println!("{}", runner_line(r));
            }
            eprintln!("{} runners", runners.len());
        }
        RunnersCommand::Drain { id } => {
            let r = client
                .drain_runner(with_token(token, DrainRunnerRequest { id }))
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}", runner_line(&r));
        }
        RunnersCommand::Token(TokenCommand::Create { name }) => {
            let created = client
                .create_runner_token(with_token(token, CreateRunnerTokenRequest { name }))
                .await
                .map_err(status_err)?
                .into_inner();
            let name = created.token.map(|t| t.name).unwrap_or_default();
            eprintln!(
                "runner token {name} created; give runners the secret below (--token-file). It is not shown again."
            );
            println!("{}", created.secret);
        }
        RunnersCommand::Token(TokenCommand::List) => {
            let tokens = client
                .list_runner_tokens(with_token(token, ListRunnerTokensRequest {}))
                .await
                .map_err(status_err)?
                .into_inner()
                .tokens;
            for t in &tokens {
                println!("{}", token_line(t));
            }
            eprintln!("{} tokens", tokens.len());
        }
        RunnersCommand::Token(TokenCommand::Revoke { name }) => {
            let t = client
                .revoke_runner_token(with_token(token, RevokeRunnerTokenRequest { name }))
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}", token_line(&t));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn when(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .map_or_else(|| "-".to_owned(), |t| format!("@{}", t.seconds))
}

/// `name  id  slots  running/slots  version  token  state  labels`.
fn runner_line(r: &RunnerInfo) -> String {
    let mut labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!(
        "{:<20} {:<36} {}/{} running  {:<10} token={:<12} {}  {}",
        r.name,
        r.id,
        r.running.len(),
        r.slots,
        if r.version.is_empty() {
            "-"
        } else {
            &r.version
        },
        if r.token_name.is_empty() {
            "(shared)"
        } else {
            &r.token_name
        },
        if r.draining { "DRAINING" } else { "ACTIVE" },
        labels.join(",")
    )
}

/// `name  created  used  revoked`.
fn token_line(t: &RunnerToken) -> String {
    format!(
        "{:<20} created {}  last used {}  {}",
        t.name,
        when(&t.created_at),
        when(&t.last_used_at),
        match &t.revoked_at {
            Some(_) => format!("REVOKED {}", when(&t.revoked_at)),
            None => "ACTIVE".to_owned(),
        }
    )
}
