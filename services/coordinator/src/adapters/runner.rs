//! `RunnerService/Attach`: one task per runner stream. Reads messages,
//! hands each to the engine (`engine::runners`), and ends the stream with
//! the status the engine's error maps to. The protocol is written down in
//! `proto/testrunner/v1/runner.proto`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, Stream};
use testrunner_proto::v1::{
    CoordinatorMessage, RunnerMessage, runner_message::Message as In,
    runner_service_server::RunnerService,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::bearer;
use crate::domain::now_millis;
use crate::engine::dispatch::Session;
use crate::engine::fleet::Fleet;
use crate::engine::runners::Runners;
use crate::error::{Error, Result};

/// How long a new stream may take to send Register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued towards one runner before the session waits.
const OUTBOUND_CAPACITY: usize = 256;

/// The gRPC adapter for runners.
#[derive(Debug, Clone)]
pub struct RunnerApi {
    pub runners: Runners,
    /// Checks runner tokens (the shared one or an issued one).
    pub fleet: Fleet,
}

type AttachStream = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl RunnerService for RunnerApi {
    type AttachStream = AttachStream;

    async fn attach(
        &self,
        request: Request<Streaming<RunnerMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        // Authenticate before reading anything: an unauthenticated caller
        // never gets as far as Register.
        let credential = self
            .fleet
            .authenticate(bearer(request.metadata()), true)
            .await
            .inspect_err(|_| self.runners.metrics.runner_refused())?;
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let api = self.clone();
        tokio::spawn(async move {
            let token_name = credential.token_name();
            if let Err(err) = api.serve(inbound, token_name, tx.clone()).await {
                tracing::info!(error = %err, "runner stream closed with error");
                let _ = tx.send(Err(err)).await;
            }
        });
        let outbound = ReceiverStream::new(rx).map(|m| m.map_err(Status::from));
        Ok(Response::new(Box::pin(outbound)))
    }
}

impl RunnerApi {
    async fn serve(
        &self,
        mut inbound: Streaming<RunnerMessage>,
        token_name: &str,
        tx: mpsc::Sender<Result<CoordinatorMessage, Error>>,
    ) -> Result<()> {
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Error::DeadlineExceeded("no Register within 10s".into()))?;
        // A stream that broke or closed before saying anything is no error
        // (as in `pump`: the runner sees its own stream break).
        let first = match first {
            Ok(Some(first)) => first,
            Ok(None) => return Ok(()),
            Err(status) => {
                tracing::debug!(error = %status, "runner stream broke before Register");
                return Ok(());
            }
        };
        let Some(In::Register(register)) = first.message else {
            return Err(Error::FailedPrecondition(
                "the first message must be Register".into(),
            ));
        };
        let session = self.runners.register(&register, token_name, tx).await?;
        let result = self.pump(&session, &mut inbound).await;
        self.runners.detach(&session);
        tracing::info!(runner_id = %session.info.id, runner = %session.info.name, held = session.held_count(), "runner detached");
        result
    }

    /// Handles messages until the stream ends.
    async fn pump(
        &self,
        session: &Arc<Session>,
        inbound: &mut Streaming<RunnerMessage>,
    ) -> Result<()> {
        let lease = self.runners.settings.lease;
        let renew_every = (self.runners.settings.heartbeat.as_millis() as i64).max(100);
        let mut renewed_at = now_millis();
        // Every heartbeat interval, what operators decided (a drain, a
        // revoked token) is read from the database, so it reaches this
        // stream whichever coordinator they asked.
        let heartbeat = self
            .runners
            .settings
            .heartbeat
            .max(Duration::from_millis(100));
        let mut standing =
            tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        standing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_message = tokio::time::Instant::now();
        // A message read early, while gathering results sent together.
        let mut lookahead = None;
        loop {
            let next = match lookahead.take() {
                Some(next) => next,
                None => tokio::select! {
                    // `Streaming::message` is cancel-safe: a tick loses no
                    // message.
                    next = tokio::time::timeout_at(last_message + lease, inbound.message()) => {
                        next.map_err(|_| {
                            Error::DeadlineExceeded(format!(
                                "no message from the runner within its lease ({})",
                                humantime::format_duration(lease)
                            ))
                        })?
                    }
                    _ = standing.tick() => {
                        self.runners.check_standing(session).await?;
                        continue;
                    }
                },
            };
            last_message = tokio::time::Instant::now();
            let message = match next {
                Err(status) => {
                    tracing::debug!(error = %status, "runner stream broke");
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Ok(Some(m)) => m,
            };
            let now = now_millis();
            if now - renewed_at >= renew_every {
                self.runners.renew_lease(session).await?;
                renewed_at = now;
            }
            match message.message {
                None => return Err(Error::invalid("message", "empty message")),
                Some(In::Register(_)) => {
                    return Err(Error::FailedPrecondition(
                        "register: already registered on this stream".into(),
                    ));
                }
                Some(In::Heartbeat(_)) => {}
                Some(In::Logs(logs)) => self.runners.on_logs(session, logs).await?,
                Some(In::Finished(finished)) => {
                    // Results the runner sent together (those already
                    // received) are stored in one transaction.
                    let mut group = vec![Runners::check_finished(session, finished)?];
                    while let Some(next) = inbound.message().now_or_never() {
                        match next {
                            Ok(Some(RunnerMessage {
                                message: Some(In::Finished(finished)),
                            })) => group.push(Runners::check_finished(session, finished)?),
                            other => {
                                lookahead = Some(other);
                                break;
                            }
                        }
                    }
                    self.runners.store_results(session, group);
                }
                Some(In::Drain(_)) => {
                    tracing::info!(runner = %session.info.name, "runner draining");
                    session.drain();
                }
                Some(In::Release(release)) => self.runners.on_release(session, release).await?,
                Some(In::Cases(cases)) => self.runners.on_cases(session, cases).await?,
                Some(In::SetupStarted(m)) => self.runners.on_setup_started(session, m).await?,
                Some(In::SetupFinished(m)) => self.runners.on_setup_finished(session, m).await?,
            }
        }
    }
}
