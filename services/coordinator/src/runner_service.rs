//! `RunnerService/Attach`: one task per runner stream, speaking the protocol
//! written down in `proto/testrunner/v1/runner.proto`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, Stream};
use testrunner_proto::v1::{
    self as pb, Cancel, CoordinatorMessage, LogAck, ResultAck, RunnerMessage, Welcome,
    coordinator_message::Message as Out, runner_message::Message as In,
    runner_service_server::RunnerService,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::check_bearer;
use crate::config::RunnerSettings;
use crate::dispatch::{Dispatcher, Held, Session};
use crate::domain::{RunnerInfo, TestResult, TestStatus, now_millis};
use crate::finisher::Finisher;
use crate::hub::{Hub, ListEvent, RunEvent};
use crate::metrics::Metrics;
use crate::store::{AppendOutcome, Store};

/// How long a new stream may take to send Register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued towards one runner before the session waits.
const OUTBOUND_CAPACITY: usize = 256;

/// The gRPC adapter for runners.
#[derive(Debug, Clone)]
pub struct RunnerApi {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub dispatcher: Arc<Dispatcher>,
    pub finisher: Finisher,
    pub metrics: Arc<Metrics>,
    pub settings: RunnerSettings,
    pub token: Arc<str>,
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
        check_bearer(request.metadata(), &self.token, "runner token")
            .inspect_err(|_| self.metrics.runner_refused())?;
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let api = self.clone();
        tokio::spawn(async move {
            if let Err(status) = api.serve(inbound, tx.clone()).await {
                tracing::info!(code = ?status.code(), message = status.message(), "runner stream closed with error");
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A protocol violation: the stream ends with this status.
fn violation(code: tonic::Code, message: impl Into<String>) -> Status {
    Status::new(code, message.into())
}

impl RunnerApi {
    async fn serve(
        &self,
        mut inbound: Streaming<RunnerMessage>,
        tx: mpsc::Sender<Result<CoordinatorMessage, Status>>,
    ) -> Result<(), Status> {
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Register within 10s"))??;
        // A stream closed before saying anything is not an error.
        let Some(first) = first else { return Ok(()) };
        let Some(In::Register(register)) = first.message else {
            return Err(violation(
                tonic::Code::FailedPrecondition,
                "the first message must be Register",
            ));
        };
        let info = validate_register(&register)?;
        let lease_ms = self.settings.lease.as_millis() as i64;
        // A new epoch for this runner: its older streams (here or on another
        // coordinator) can claim nothing more. Keep what the runner still
        // holds and we still recognise; tell it to drop the rest (rule 7);
        // hand back what we think it holds but it does not list.
        let now = now_millis();
        let registration = self
            .store
            .register_runner(&info, now + lease_ms, &register.resume, now)
            .await
            .map_err(Status::from)?;
        for testrun_id in &registration.requeued {
            self.hub.publish(*testrun_id, RunEvent::Resync);
            if let Ok(Some(run)) = self.store.get_testrun(*testrun_id, false).await {
                self.hub.publish_list(ListEvent::Changed(run));
            }
        }
        if !registration.requeued.is_empty() {
            tracing::info!(runner = %info.name, testruns = ?registration.requeued, "tests the runner never received were requeued");
        }
        let resumed = registration.resumed;
        let mut held = HashMap::new();
        for r in &resumed {
            held.insert(
                r.assignment_id.clone(),
                Held {
                    testrun_id: r.testrun_id,
                    name: r.name.clone(),
                    revoked: false,
                    since: std::time::Instant::now(),
                },
            );
        }
        let stale: Vec<String> = register
            .resume
            .iter()
            .filter(|id| !held.contains_key(*id))
            .cloned()
            .collect();
        for id in &stale {
            held.insert(
                id.clone(),
                Held {
                    testrun_id: 0,
                    name: String::new(),
                    revoked: true,
                    since: std::time::Instant::now(),
                },
            );
        }
        let session = Arc::new(Session::new(info.clone(), registration.epoch, tx, held));
        session
            .send(Out::Welcome(Welcome {
                runner_id: info.id.clone(),
                heartbeat_interval: Some(to_pb_duration(self.settings.heartbeat)),
                lease: Some(to_pb_duration(self.settings.lease)),
                max_lines_per_batch: self.settings.max_lines_per_batch,
                max_line_bytes: self.settings.max_line_bytes,
                max_batch_bytes: max_batch_bytes(&self.settings),
            }))
            .await;
        for id in stale {
            session
                .send(Out::Cancel(Cancel {
                    assignment_id: id,
                    reason: "assignment no longer held by this runner".into(),
                    forget: true,
                }))
                .await;
        }
        // Tests of a Testrun cancelled while the runner was away.
        for r in resumed.iter().filter(|r| r.cancelled) {
            session
                .send(Out::Cancel(Cancel {
                    assignment_id: r.assignment_id.clone(),
                    reason: "testrun cancelled".into(),
                    forget: false,
                }))
                .await;
        }
        if let Some(old) = self.dispatcher.attach(Arc::clone(&session)) {
            old.close_with(Status::aborted(
                "replaced by a newer stream of the same runner",
            ))
            .await;
        }
        tracing::info!(runner_id = %info.id, runner = %info.name, slots = info.slots, resumed = resumed.len(), "runner attached");

        let result = self.pump(&session, &mut inbound).await;
        self.dispatcher.detach(&session);
        tracing::info!(runner_id = %info.id, runner = %info.name, held = session.held_count(), "runner detached");
        result
    }

    /// Handles messages until the stream ends.
    async fn pump(
        &self,
        session: &Arc<Session>,
        inbound: &mut Streaming<RunnerMessage>,
    ) -> Result<(), Status> {
        let lease = self.settings.lease;
        let renew_every = (self.settings.heartbeat.as_millis() as i64).max(100);
        let mut renewed_at = now_millis();
        // A message read early, while gathering results sent together.
        let mut lookahead = None;
        loop {
            let next = match lookahead.take() {
                Some(next) => next,
                None => match tokio::time::timeout(lease, inbound.message()).await {
                    Ok(next) => next,
                    Err(_) => {
                        return Err(Status::deadline_exceeded(format!(
                            "no message from the runner within its lease ({})",
                            humantime::format_duration(lease)
                        )));
                    }
                },
            };
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
                self.store
                    .renew_lease(&session.info.id, now + lease.as_millis() as i64)
                    .await
                    .map_err(Status::from)?;
                renewed_at = now;
            }
            match message.message {
                None => {
                    return Err(violation(tonic::Code::InvalidArgument, "empty message"));
                }
                Some(In::Register(_)) => {
                    return Err(violation(
                        tonic::Code::FailedPrecondition,
                        "register: already registered on this stream",
                    ));
                }
                Some(In::Heartbeat(_)) => {}
                Some(In::Logs(logs)) => self.on_logs(session, logs).await?,
                Some(In::Finished(finished)) => {
                    // Results the runner sent together (those already
                    // received) are stored in one transaction.
                    let mut group = vec![Self::check_finished(session, finished)?];
                    while let Some(next) = inbound.message().now_or_never() {
                        match next {
                            Ok(Some(RunnerMessage {
                                message: Some(In::Finished(finished)),
                            })) => group.push(Self::check_finished(session, finished)?),
                            other => {
                                lookahead = Some(other);
                                break;
                            }
                        }
                    }
                    self.store_results(session, group);
                }
                Some(In::Drain(_)) => {
                    tracing::info!(runner = %session.info.name, "runner draining");
                    session.drain();
                }
                Some(In::Release(release)) => self.on_release(session, release).await?,
            }
        }
    }

    fn known(session: &Session, assignment_id: &str, what: &str) -> Result<Held, Status> {
        session.held(assignment_id).ok_or_else(|| {
            violation(
                tonic::Code::FailedPrecondition,
                format!("{what}.assignment_id: {assignment_id:?} is not held by this runner"),
            )
        })
    }

    async fn on_logs(&self, session: &Session, logs: pb::Logs) -> Result<(), Status> {
        let held = Self::known(session, &logs.assignment_id, "logs")?;
        if logs.lines.len() > self.settings.max_lines_per_batch as usize {
            return Err(violation(
                tonic::Code::InvalidArgument,
                format!(
                    "logs.lines: {} lines is more than the limit of {} per batch",
                    logs.lines.len(),
                    self.settings.max_lines_per_batch
                ),
            ));
        }
        let max_line = self.settings.max_line_bytes as usize;
        if let Some(i) = logs.lines.iter().position(|l| l.len() > max_line) {
            return Err(violation(
                tonic::Code::InvalidArgument,
                format!("logs.lines[{i}]: longer than the limit of {max_line} bytes"),
            ));
        }
        let last_sent = (logs.first_seq + logs.lines.len() as u64).saturating_sub(1);
        if held.revoked {
            // Acknowledge and drop: the runner can forget these lines.
            session
                .send(Out::LogAck(LogAck {
                    assignment_id: logs.assignment_id,
                    seq: last_sent,
                }))
                .await;
            return Ok(());
        }
        let outcome = self
            .store
            .append_logs(&logs.assignment_id, logs.first_seq as i64, &logs.lines)
            .await
            .map_err(Status::from)?;
        match outcome {
            AppendOutcome::Stored { last_seq, lines } => {
                self.metrics.lines_ingested(lines.len());
                if let (Some(first), Some(last)) = (lines.first(), lines.last()) {
                    self.hub.publish(
                        held.testrun_id,
                        RunEvent::Log {
                            first_seq: first.run_seq,
                            last_seq: last.run_seq,
                            encoded: encoded_log_event(&held.name, &lines),
                        },
                    );
                }
                session
                    .send(Out::LogAck(LogAck {
                        assignment_id: logs.assignment_id,
                        seq: last_seq as u64,
                    }))
                    .await;
            }
            AppendOutcome::Refused => {
                // Moved elsewhere (lease ran out) or deleted: stop it.
                session.revoke(&logs.assignment_id);
                session
                    .send(Out::Cancel(Cancel {
                        assignment_id: logs.assignment_id,
                        reason: "assignment no longer held by this runner".into(),
                        forget: true,
                    }))
                    .await;
            }
        }
        Ok(())
    }

    /// Checks a result: the result to store, or `None` for an assignment
    /// that was revoked (acknowledged as refused, not stored).
    fn check_finished(
        session: &Session,
        finished: pb::Finished,
    ) -> Result<(String, Option<TestResult>), Status> {
        let held = Self::known(session, &finished.assignment_id, "finished")?;
        let status = match pb::Outcome::try_from(finished.outcome) {
            Ok(pb::Outcome::Passed) => TestStatus::Passed,
            Ok(pb::Outcome::Failed) => TestStatus::Failed,
            Ok(pb::Outcome::TimedOut) => TestStatus::TimedOut,
            Ok(pb::Outcome::Cancelled) => TestStatus::Cancelled,
            Ok(pb::Outcome::Error) => TestStatus::Error,
            Ok(pb::Outcome::Unspecified) | Err(_) => {
                return Err(violation(
                    tonic::Code::InvalidArgument,
                    format!("finished.outcome: {} is not an outcome", finished.outcome),
                ));
            }
        };
        let duration_ms = finished
            .duration
            .as_ref()
            .map_or(0, testrunner_proto::duration_to_millis);
        // Only a test that ran says how long this runner's tests are: one
        // cancelled, or never started, would make long tests look short
        // and fill the runner's queue with them.
        if !held.revoked && status != TestStatus::Cancelled {
            session.record_duration(duration_ms);
        }
        let result = (!held.revoked).then(|| TestResult {
            status,
            exit_code: finished.exit_code,
            duration_ms,
            // Postgres refuses NUL in text; a runner's message must not
            // fail the batch it is stored in.
            error: finished
                .error
                .chars()
                .take(4096)
                .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
                .collect(),
        });
        Ok((finished.assignment_id, result))
    }

    /// Stores checked results in the background, in one transaction
    /// (`finisher`), then acknowledges them: the stream goes on to its next
    /// message at once.
    fn store_results(&self, session: &Arc<Session>, group: Vec<(String, Option<TestResult>)>) {
        let (finisher, dispatcher) = (self.finisher.clone(), Arc::clone(&self.dispatcher));
        let metrics = Arc::clone(&self.metrics);
        let session = Arc::clone(session);
        tokio::spawn(async move {
            let to_store: Vec<(String, TestResult)> = group
                .iter()
                .filter_map(|(id, result)| Some((id.clone(), result.clone()?)))
                .collect();
            let mut stored = if to_store.is_empty() {
                Vec::new()
            } else {
                match finisher.finish(to_store).await {
                    Ok(accepted) => accepted,
                    Err(status) => {
                        // Some of the group may be stored (a failed batch is
                        // retried one by one): end the stream and the runner
                        // sends them all again on its next one, where the
                        // stored ones are acknowledged as not accepted. No
                        // more work goes to this stream meanwhile.
                        tracing::warn!(runner = %session.info.name, results = group.len(), error = %status, "storing results failed; closing the stream");
                        session.close();
                        session.close_with(status).await;
                        return;
                    }
                }
            }
            .into_iter();
            for (assignment_id, result) in group {
                let accepted = result.is_some() && stored.next().unwrap_or(false);
                if result.is_some() && !accepted {
                    tracing::info!(runner = %session.info.name, %assignment_id, "late result refused: assignment moved elsewhere");
                }
                if !accepted {
                    metrics.result_refused();
                }
                // Acknowledge before the slot is reused, so the runner never
                // sees an Assign while it still counts this assignment
                // (rule 3).
                session
                    .send(Out::ResultAck(ResultAck {
                        assignment_id: assignment_id.clone(),
                        accepted,
                    }))
                    .await;
                session.forget(&assignment_id);
            }
            dispatcher.wake();
        });
    }

    async fn on_release(&self, session: &Session, release: pb::Release) -> Result<(), Status> {
        let held = Self::known(session, &release.assignment_id, "release")?;
        if !held.revoked
            && let Some(testrun_id) = self
                .store
                .release_assignment(&release.assignment_id, now_millis())
                .await
                .map_err(Status::from)?
        {
            tracing::info!(runner = %session.info.name, assignment_id = %release.assignment_id, "assignment handed back");
            self.hub.publish(testrun_id, RunEvent::Resync);
        }
        session
            .send(Out::ResultAck(ResultAck {
                assignment_id: release.assignment_id.clone(),
                accepted: !held.revoked,
            }))
            .await;
        session.forget(&release.assignment_id);
        self.dispatcher.wake();
        Ok(())
    }
}

/// Line bytes a Logs batch may hold and still fit the message size limit
/// with its other fields and per-line framing (a tag and a length each),
/// and well within what watchers are sent as one shared event.
fn max_batch_bytes(settings: &RunnerSettings) -> u32 {
    let framing_per_line =
        1 + prost::encoding::encoded_len_varint(u64::from(settings.max_line_bytes));
    let framing = settings.max_lines_per_batch as usize * framing_per_line + 1024;
    settings
        .max_runner_message_bytes
        .saturating_sub(framing)
        .min(MAX_SHARED_EVENT_BYTES / 2)
        .clamp(1, u32::MAX as usize) as u32
}

/// Largest batch sent to watchers as one prebuilt event.
const MAX_SHARED_EVENT_BYTES: usize = 4 << 20;

/// The wire event every caught-up watcher sends for these lines, encoded
/// once as a whole gRPC message: with hundreds of watchers, encoding per
/// watcher was most of the coordinator's fan-out work (bench scenario 5).
fn encoded_log_event(
    test_name: &str,
    lines: &[crate::domain::LogLine],
) -> Option<Arc<crate::shared_watch::SharedEvent>> {
    let bytes: usize = lines.iter().map(|l| l.text.len() + 8).sum();
    if bytes > MAX_SHARED_EVENT_BYTES {
        return None;
    }
    let event = pb::TestrunEvent {
        cursor: lines.last()?.run_seq.max(0) as u64,
        event: Some(pb::testrun_event::Event::Log(crate::convert::log_lines(
            test_name, lines,
        ))),
    };
    Some(crate::shared_watch::SharedEvent::new(&event))
}

fn to_pb_duration(d: Duration) -> prost_types::Duration {
    testrunner_proto::duration_from_millis(d.as_millis() as i64)
}

/// Checks a Register message and turns it into the runner's record.
fn validate_register(r: &pb::Register) -> Result<RunnerInfo, Status> {
    let bad = |field: &str, message: &str| {
        Status::invalid_argument(format!("register.{field}: {message}"))
    };
    if pb::ProtocolVersion::try_from(r.protocol) != Ok(pb::ProtocolVersion::ProtocolVersion1) {
        return Err(Status::failed_precondition(format!(
            "register.protocol: version {} is not supported (this coordinator speaks 1)",
            r.protocol
        )));
    }
    if r.instance_id.is_empty() || r.instance_id.len() > 64 {
        return Err(bad("instance_id", "must be 1 to 64 bytes"));
    }
    let name_chars = r.name.chars().count();
    if name_chars == 0 || name_chars > 64 || r.name.chars().any(char::is_control) {
        return Err(bad("name", "must be 1 to 64 printable characters"));
    }
    if r.slots == 0 || r.slots > 1024 {
        return Err(bad("slots", "must be 1 to 1024"));
    }
    if r.queue > 1024 {
        return Err(bad("queue", "must be 0 to 1024"));
    }
    // Slots plus queue (2,048 at most), and assignments the coordinator
    // disowned whose processes are still being killed.
    if r.resume.len() > 4096 {
        return Err(bad(
            "resume",
            "lists more assignments than any runner can hold",
        ));
    }
    Ok(RunnerInfo {
        id: r.instance_id.clone(),
        name: r.name.clone(),
        slots: r.slots as i32,
        queue: r.queue as i32,
        version: r.version.chars().take(64).collect(),
    })
}
