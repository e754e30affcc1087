//! The runner's I/O loop: one stream to the coordinator at a time (the
//! handshake, then a select over the stream, the tests' events, timers and
//! signals), reconnecting with backoff and carrying on without a stream.
//!
//! Every event goes to the state machine (`assignments`) and every action
//! it returns is carried out here, in this one task, so there are no locks
//! and no races between, say, a cancel and a result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use testrunner_proto::v1::{
    CoordinatorMessage, RunnerMessage, coordinator_message::Message as In,
    runner_message::Message as Out, runner_service_client::RunnerServiceClient,
};
use tokio::sync::mpsc;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::assignments::{Action, Assignments, Event, Settings};
use crate::config::Config;
use crate::connection::{self, Backoff};
use crate::drain::{self, Signals};
use crate::exec::{ExecEvent, ExecSettings};
use crate::isolation::Isolation;
use crate::outbox::BatchLimit;
use crate::processes::Processes;
use crate::stats::Stats;
use crate::wire::{self, Identity, Terms};
use crate::workdir::WorkDirs;
use crate::workspace::{self, Preparation, Preparer, Workspaces};

/// Messages queued for the stream before sending waits.
const OUTBOUND: usize = 1024;
/// How long tests may take to end once killed, when leaving without a
/// coordinator.
const SETTLE: Duration = Duration::from_secs(3);

/// Why a stream ended.
enum Ended {
    /// Reconnect.
    Lost,
    /// Drained: exit.
    Done,
}

/// The runner process.
pub struct Agent {
    config: Config,
    me: Identity,
    assignments: Assignments,
    processes: Processes,
    /// The current stream's sending half, while one is up.
    link: Option<mpsc::Sender<RunnerMessage>>,
    stats: Arc<Stats>,
    signals: Signals,
    channel: Channel,
    /// Workspace preparations: where they run, and their ends.
    workspaces: Arc<Workspaces>,
    preparer: Preparer,
    prepared_tx: mpsc::Sender<Preparation>,
    prepared_rx: mpsc::Receiver<Preparation>,
}

impl Agent {
    /// A runner from its configuration (signals are hooked here).
    pub fn new(config: Config, stats: Arc<Stats>) -> anyhow::Result<Self> {
        config.validate()?;
        let work_dirs = Arc::new(
            WorkDirs::new(config.work_dir.as_deref())
                .map_err(|e| anyhow::anyhow!("creating the work directory root: {e}"))?,
        );
        let channel = connection::channel(&config)?;
        let isolation = Arc::new(Isolation::new(&config.isolation(), work_dirs.root())?);
        let workspaces = Arc::new(workspace_store(
            &config,
            &work_dirs,
            &channel,
            Arc::clone(&isolation),
        )?);
        let exec = Arc::new(ExecSettings {
            interpreters: config.interpreter_table()?,
            kill_grace: config.kill_grace,
            max_line_bytes: config.max_line_bytes,
            max_output_bytes: config.max_output_bytes,
            work_dirs,
            test_path: config.test_path.clone(),
            junit: crate::junit::Limits {
                max_bytes: config.junit_max_bytes,
                max_cases: config.junit_max_cases,
                max_text: config.junit_max_text_bytes,
            },
            isolation,
        });
        let (prepared_tx, prepared_rx) = mpsc::channel(64);
        let slots = config.slot_count().clamp(1, 1024);
        let queue_len = config.queue_len().min(1024);
        stats.set_slots(slots);
        let assignments = Assignments::new(Settings {
            slots,
            queue_len,
            queue_wait: config.queue_wait,
            drain_timeout: config.drain_timeout,
            max_buffered_bytes: config.max_buffered_bytes,
            line_delay: Some(config.line_delay),
        });
        Ok(Self {
            me: Identity {
                instance_id: uuid::Uuid::new_v4().to_string(),
                name: config.display_name(),
                labels: config.label_map()?,
                slots,
                queue: queue_len,
            },
            assignments,
            processes: Processes::new(exec),
            link: None,
            stats,
            signals: Signals::hook()?,
            config,
            channel,
            workspaces,
            preparer: Preparer::start()?,
            prepared_tx,
            prepared_rx,
        })
    }

    /// Runs until drained (SIGTERM / Ctrl-C).
    pub async fn run(mut self) -> anyhow::Result<()> {
        let channel = self.channel.clone();
        let mut backoff = Backoff::default();
        loop {
            if self.assignments.drained() {
                tracing::info!("drained; exiting");
                return Ok(());
            }
            let ended = self.session(channel.clone()).await;
            self.link = None;
            match ended {
                Ok(Ended::Done) => {
                    tracing::info!("drained; exiting");
                    return Ok(());
                }
                Ok(Ended::Lost) => backoff.reset(),
                Err(status) => {
                    if status.code() == tonic::Code::Unauthenticated {
                        tracing::error!(
                            message = status.message(),
                            "coordinator refused this runner"
                        );
                    } else {
                        tracing::warn!(code = ?status.code(), message = status.message(), "coordinator unreachable");
                    }
                }
            }
            self.stats.set_connected(false);
            self.feed(Event::Detached).await;
            if self.assignments.abandons(Instant::now()) {
                // The coordinator has requeued whatever we hold by now; stop
                // the tests and leave rather than wait for it forever.
                tracing::warn!("draining without a coordinator for longer than the lease; exiting");
                self.feed(Event::Abandon).await;
                self.settle(SETTLE).await;
                return Ok(());
            }
            // Tests keep running meanwhile.
            let until = tokio::time::Instant::now() + backoff.wait();
            while tokio::time::Instant::now() < until {
                if self.idle_step(until).await {
                    return Ok(());
                }
            }
        }
    }

    /// Hands `event` to the state machine and carries out what it says.
    async fn feed(&mut self, event: Event) {
        let actions = self.assignments.handle(Instant::now(), event);
        for action in actions {
            match action {
                Action::Start(job) => {
                    self.processes.start(job);
                    self.stats.test_started();
                }
                Action::Kill(id) => self.processes.kill(&id),
                Action::Send(message) => self.send(message).await,
                Action::Prepare { testrun_id, spec } => self.prepare(testrun_id, spec),
            }
        }
        self.stats.set_running(self.assignments.running());
        self.stats.set_buffered(self.assignments.buffered());
    }

    async fn send(&mut self, message: Out) {
        // A closed stream is noticed on the receiving side; what was not
        // acknowledged is resent on the next stream.
        if let Some(link) = &self.link {
            let _ = link
                .send(RunnerMessage {
                    message: Some(message),
                })
                .await;
        }
    }

    /// Prepares a Testrun's workspace on the preparer's thread; its end
    /// comes back through `prepared_rx`.
    fn prepare(&self, testrun_id: i64, spec: workspace::Spec) {
        tracing::info!(testrun_id, workspace = %spec.workspace, "preparing workspace");
        let workspaces = Arc::clone(&self.workspaces);
        let done = self.prepared_tx.clone();
        self.preparer.spawn(async move {
            let preparation = workspaces.prepare(testrun_id, &spec).await;
            let _ = done.send(preparation).await;
        });
    }

    async fn on_test_event(&mut self, event: ExecEvent) {
        self.feed(event.into()).await;
    }

    /// While disconnected: keep taking test output (bounded) and signals,
    /// and enforce the drain deadline. Returns true if the runner should
    /// exit now.
    async fn idle_step(&mut self, until: tokio::time::Instant) -> bool {
        let room = self.assignments.has_room();
        let deadline = self.assignments.drain().deadline();
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            Some(event) = self.processes.next(), if room => self.on_test_event(event).await,
            Some(done) = self.prepared_rx.recv() => self.feed(Event::Prepared(done)).await,
            () = self.signals.recv() => self.feed(Event::Signal).await,
            () = drain::deadline(deadline) => self.feed(Event::DrainDeadline).await,
        }
        self.assignments.drained()
    }

    /// Takes test events for up to `limit`, until no test runs.
    async fn settle(&mut self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        while self.assignments.running() > 0 {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                Some(event) = self.processes.next() => self.on_test_event(event).await,
            }
        }
    }

    /// One stream, from Register to its end.
    async fn session(&mut self, channel: Channel) -> Result<Ended, tonic::Status> {
        let (tx, rx) = mpsc::channel::<RunnerMessage>(OUTBOUND);
        let register = wire::register(&self.me, self.assignments.resume());
        let _ = tx
            .send(RunnerMessage {
                message: Some(register),
            })
            .await;
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let auth = format!("Bearer {}", self.config.token)
            .parse()
            .map_err(|_| {
                tonic::Status::invalid_argument("the runner token is not valid metadata")
            })?;
        request.metadata_mut().insert("authorization", auth);
        let mut client = RunnerServiceClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(64 << 20);
        let mut inbound = client.attach(request).await?.into_inner();
        let welcome = match inbound.message().await? {
            Some(CoordinatorMessage {
                message: Some(In::Welcome(w)),
            }) => w,
            _ => {
                return Err(tonic::Status::internal(
                    "expected Welcome as the first message",
                ));
            }
        };
        let ours = BatchLimit {
            lines: self.config.batch_lines,
            bytes: self.config.batch_bytes,
        };
        let terms = Terms::of(&welcome, ours);
        tracing::info!(runner_id = %welcome.runner_id, name = %self.me.name, slots = self.me.slots, resumed = self.assignments.held(), "attached to coordinator");
        self.stats.set_connected(true);
        self.link = Some(tx);
        self.feed(Event::Attached {
            lease: terms.lease,
            batch: terms.batch,
        })
        .await;
        self.pump(&mut inbound, terms.heartbeat).await
    }

    /// The select loop while a stream is up.
    async fn pump(
        &mut self,
        inbound: &mut Streaming<CoordinatorMessage>,
        heartbeat: Duration,
    ) -> Result<Ended, tonic::Status> {
        let mut flush = tokio::time::interval(self.config.flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.assignments.drained() {
                return Ok(Ended::Done);
            }
            let room = self.assignments.has_room();
            let deadline = self.assignments.drain().deadline();
            let lines_due = self.assignments.lines_due();
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(m)) => self.on_message(m).await,
                    Ok(None) => return Ok(Ended::Lost),
                    Err(status) => return Err(status),
                },
                Some(event) = self.processes.next(), if room => self.on_test_event(event).await,
                _ = flush.tick() => self.feed(Event::FlushTick).await,
                () = drain::deadline(lines_due) => self.feed(Event::LinesDue).await,
                _ = beat.tick() => self.send(wire::heartbeat()).await,
                Some(done) = self.prepared_rx.recv() => self.feed(Event::Prepared(done)).await,
                () = self.signals.recv() => self.feed(Event::Signal).await,
                () = drain::deadline(deadline) => self.feed(Event::DrainDeadline).await,
            }
        }
    }

    async fn on_message(&mut self, message: CoordinatorMessage) {
        let event = match message.message {
            Some(In::Assign(assign)) => Event::Assign(assign),
            Some(In::LogAck(ack)) => Event::LogAck(ack),
            Some(In::ResultAck(ack)) => Event::ResultAck(ack),
            Some(In::Cancel(cancel)) => Event::Cancel(cancel),
            Some(In::CasesAck(ack)) => Event::CasesAck(ack),
            Some(In::SetupAck(ack)) => Event::SetupAck(ack),
            Some(In::Welcome(_)) | None => {
                tracing::warn!("unexpected message from the coordinator ignored");
                return;
            }
        };
        self.feed(event).await;
    }
}

/// The workspace cache (`--cache-dir`, else in the work root) and where
/// prepared workspaces and their copies go (always in the work root).
fn workspace_store(
    config: &Config,
    work_dirs: &WorkDirs,
    channel: &Channel,
    isolation: Arc<Isolation>,
) -> anyhow::Result<Workspaces> {
    let cache_dir = config
        .cache_dir
        .clone()
        .unwrap_or_else(|| work_dirs.root().join("cache"));
    let cache = workspace::cache::Cache::open(&cache_dir, config.cache_bytes)
        .map_err(|e| anyhow::anyhow!("--cache-dir {}: {e}", cache_dir.display()))?;
    let fetcher =
        workspace::fetch::Fetcher::new(channel.clone(), &config.token, Arc::clone(&cache))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    Workspaces::new(
        cache,
        fetcher,
        &work_dirs.root().join("workspaces"),
        config.test_path.clone(),
        config.kill_grace,
        Some(isolation),
    )
    .map_err(|e| anyhow::anyhow!("creating the workspace directory: {e}"))
}
