//! The runner's main loop: one stream to the coordinator at a time, tests
//! running underneath it, output kept until acknowledged.
//!
//! Everything that changes runner state happens in this one task (a select
//! over the stream, the tests' events, timers and signals), so there are no
//! locks and no races between, say, a cancel and a result.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng as _;
use testrunner_proto::v1::{
    self as pb, CoordinatorMessage, Drain, Finished, Heartbeat, Logs, Outcome, ProtocolVersion,
    Register, Release, RunnerMessage, coordinator_message::Message as In,
    runner_message::Message as Out, runner_service_client::RunnerServiceClient,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tonic::Streaming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::Config;
use crate::exec::{self, ExecEvent, ExecSettings, Job, Report, Stop};
use crate::outbox::{BatchLimit, Outbox};
use crate::stats::Stats;
use crate::workdir::WorkDirs;

/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One assignment as the runner holds it.
struct Slot {
    /// The Testrun it is a test of: a cancel of one of its assignments
    /// covers every one (rule 8).
    testrun_id: i64,
    outbox: Outbox,
    stop: watch::Sender<Stop>,
    /// Waiting in the queue for a slot: not started yet.
    queued: Option<Job>,
    /// When the assignment arrived.
    since: Instant,
    /// Still running (no `Done` yet).
    running: bool,
    /// Killed on drain: report `Release`, not `Finished`.
    hand_back: bool,
    /// The coordinator disowned it: drop its output and result.
    discard: bool,
}

impl Slot {
    /// Takes a test that still waits for a slot out of the queue: it never
    /// runs, and is reported as not started, handed back or cancelled.
    /// False if it was not waiting.
    fn unqueue(&mut self, assignment_id: &str, hand_back: bool) -> bool {
        if self.queued.take().is_none() {
            return false;
        }
        self.hand_back = hand_back;
        self.outbox.result = Some(not_started(assignment_id));
        true
    }
}

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
    instance_id: String,
    name: String,
    slots: u32,
    queue_len: u32,
    exec: Arc<ExecSettings>,
    events_tx: mpsc::Sender<ExecEvent>,
    events_rx: mpsc::Receiver<ExecEvent>,
    held: HashMap<String, Slot>,
    /// Assignments waiting for a slot, oldest first (rule 3).
    waiting: VecDeque<String>,
    /// Results not sent yet because tests still wait in the queue.
    held_results: Vec<String>,
    /// Cancels that overtook their Assign (a cancel racing a claim): the
    /// test is reported CANCELLED when its Assign arrives, never run.
    early_cancels: HashSet<String>,
    buffered: usize,
    draining: Option<Instant>,
    /// The coordinator's lease: past it, a lost runner's tests are gone.
    lease: Duration,
    /// When the last stream ended, while there is no new one (from its
    /// end to the next Welcome). Queued tests start only while this is
    /// none: without a stream the coordinator may be giving them to
    /// another runner (its lease runs out), and a test must not run twice.
    disconnected_since: Option<Instant>,
    stats: Arc<Stats>,
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
}

impl Agent {
    /// A runner from its configuration (signals are hooked here).
    pub fn new(config: Config, stats: Arc<Stats>) -> anyhow::Result<Self> {
        config.validate()?;
        let exec = Arc::new(ExecSettings {
            interpreters: config.interpreter_table()?,
            kill_grace: config.kill_grace,
            max_line_bytes: config.max_line_bytes,
            max_output_bytes: config.max_output_bytes,
            work_dirs: Arc::new(
                WorkDirs::new(config.work_dir.as_deref())
                    .map_err(|e| anyhow::anyhow!("creating the work directory root: {e}"))?,
            ),
            test_path: config.test_path.clone(),
        });
        let (events_tx, events_rx) = mpsc::channel(4096);
        let slots = config.slot_count().clamp(1, 1024);
        let queue_len = config.queue_len().min(1024);
        stats.set_slots(slots);
        Ok(Self {
            instance_id: uuid::Uuid::new_v4().to_string(),
            name: config.display_name(),
            slots,
            queue_len,
            exec,
            events_tx,
            events_rx,
            held: HashMap::new(),
            waiting: VecDeque::new(),
            held_results: Vec::new(),
            early_cancels: HashSet::new(),
            buffered: 0,
            draining: None,
            lease: Duration::from_secs(15),
            disconnected_since: None,
            stats,
            sigterm: signal(SignalKind::terminate())?,
            sigint: signal(SignalKind::interrupt())?,
            config,
        })
    }

    /// Runs until drained (SIGTERM / Ctrl-C).
    pub async fn run(mut self) -> anyhow::Result<()> {
        let channel = self.channel()?;
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.draining.is_some() && self.held.is_empty() {
                tracing::info!("drained; exiting");
                return Ok(());
            }
            match self.session(channel.clone()).await {
                Ok(Ended::Done) => {
                    tracing::info!("drained; exiting");
                    return Ok(());
                }
                Ok(Ended::Lost) => backoff = BACKOFF_MIN,
                Err(status) => {
                    let level_error = status.code() == tonic::Code::Unauthenticated;
                    if level_error {
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
            let since = *self.disconnected_since.get_or_insert_with(Instant::now);
            if self.draining.is_some() && since.elapsed() > self.lease {
                // The coordinator has requeued whatever we hold by now; stop
                // the tests and leave rather than wait for it forever.
                tracing::warn!("draining without a coordinator for longer than the lease; exiting");
                self.hand_back_all();
                self.settle(Duration::from_secs(3)).await;
                return Ok(());
            }
            // Jittered exponential backoff; tests keep running meanwhile.
            let wait = backoff.mul_f64(rand::rng().random_range(0.5..1.5));
            backoff = (backoff * 2).min(BACKOFF_MAX);
            let until = tokio::time::Instant::now() + wait;
            while tokio::time::Instant::now() < until {
                if self.idle_step(until).await {
                    return Ok(());
                }
            }
        }
    }

    fn channel(&self) -> anyhow::Result<Channel> {
        use anyhow::Context as _;
        let mut endpoint = Endpoint::from_shared(self.config.coordinator.clone())
            .context("--coordinator is not a valid URL")?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if self.config.coordinator.starts_with("https://") || self.config.tls_ca.is_some() {
            let mut tls = ClientTlsConfig::new().with_enabled_roots();
            if let Some(ca) = &self.config.tls_ca {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&self.config.tls_cert, &self.config.tls_key) {
                let cert =
                    std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
                let key =
                    std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).context("configuring TLS")?;
        }
        Ok(endpoint.connect_lazy())
    }

    /// While disconnected: keep taking test output (bounded) and signals,
    /// and enforce the drain deadline. Returns true if the runner should
    /// exit now.
    async fn idle_step(&mut self, until: tokio::time::Instant) -> bool {
        let room = self.buffered < self.config.max_buffered_bytes;
        let deadline = self.drain_deadline();
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            Some(event) = self.events_rx.recv(), if room => self.on_exec_event(event, None).await,
            _ = self.sigterm.recv() => self.on_signal(None).await,
            _ = self.sigint.recv() => self.on_signal(None).await,
            () = tokio::time::sleep_until(deadline), if self.draining.is_some() => self.hand_back_all(),
        }
        self.draining.is_some() && self.held.is_empty()
    }

    /// When running tests are handed back (far away if not draining).
    fn drain_deadline(&self) -> tokio::time::Instant {
        self.draining
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600))
    }

    /// Takes test events for up to `limit`, until no test runs.
    async fn settle(&mut self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        while self.held.values().any(|s| s.running) {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                Some(event) = self.events_rx.recv() => self.on_exec_event(event, None).await,
            }
        }
    }

    /// One stream, from Register to its end.
    async fn session(&mut self, channel: Channel) -> Result<Ended, tonic::Status> {
        let (tx, rx) = mpsc::channel::<RunnerMessage>(1024);
        let register = Register {
            instance_id: self.instance_id.clone(),
            name: self.name.clone(),
            labels: self
                .config
                .labels
                .iter()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            slots: self.slots,
            queue: self.queue_len,
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: ProtocolVersion::ProtocolVersion1 as i32,
            resume: self.held.keys().cloned().collect(),
        };
        let _ = tx
            .send(RunnerMessage {
                message: Some(Out::Register(register)),
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
        if let Some(lease) = &welcome.lease {
            self.lease = Duration::from_millis(testrunner_proto::duration_to_millis(lease) as u64)
                .max(Duration::from_secs(1));
        }
        let heartbeat = welcome
            .heartbeat_interval
            .as_ref()
            .map_or(Duration::from_secs(3), |d| {
                Duration::from_millis(testrunner_proto::duration_to_millis(d) as u64)
            })
            .max(Duration::from_millis(50));
        // Within the coordinator's limits (0: it sets none).
        let limit_of = |theirs: u32, ours: usize| match theirs {
            0 => ours,
            theirs => ours.min(theirs as usize),
        };
        let batch = BatchLimit {
            lines: limit_of(welcome.max_lines_per_batch, self.config.batch_lines).max(1),
            bytes: limit_of(welcome.max_batch_bytes, self.config.batch_bytes),
        };
        tracing::info!(runner_id = %welcome.runner_id, name = %self.name, slots = self.slots, resumed = self.held.len(), "attached to coordinator");
        self.stats.set_connected(true);

        let mut link = Link { tx, batch };
        // Say we are draining before anything else, so no Assign is sent.
        if self.draining.is_some() {
            link.send(Out::Drain(Drain {})).await;
        }
        self.resume(&mut link).await;
        self.pump(&mut link, &mut inbound, heartbeat).await
    }

    /// On a new stream, after its Welcome: sends again what was not
    /// acknowledged (rule 7), and starts the queue again.
    async fn resume(&mut self, link: &mut Link) {
        self.disconnected_since = None;
        for slot in self.held.values_mut() {
            slot.outbox.rewind();
        }
        // A test that waited in the queue through the disconnection may be
        // another runner's by now (our lease ran out), and the
        // `Cancel{forget}` saying so comes after the Welcome, too late if
        // the test started already. So what waited for half a lease goes
        // back, as does what waited past `--queue-wait`; the rest starts.
        let stale = self.config.queue_wait.min(self.lease / 2);
        self.hand_back_stale(stale, link).await;
        self.flush_all(link).await;
        self.start_waiting();
    }

    async fn pump(
        &mut self,
        link: &mut Link,
        inbound: &mut Streaming<CoordinatorMessage>,
        heartbeat: Duration,
    ) -> Result<Ended, tonic::Status> {
        let mut flush = tokio::time::interval(self.config.flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.draining.is_some() && self.held.is_empty() {
                return Ok(Ended::Done);
            }
            let room = self.buffered < self.config.max_buffered_bytes;
            let deadline = self.drain_deadline();
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(m)) => self.on_message(m, link).await,
                    Ok(None) => return Ok(Ended::Lost),
                    Err(status) => return Err(status),
                },
                Some(event) = self.events_rx.recv(), if room => {
                    self.on_exec_event(event, Some(link)).await;
                }
                _ = flush.tick() => {
                    self.hand_back_stale(self.config.queue_wait, link).await;
                    self.flush_due(link).await;
                }
                _ = beat.tick() => link.send(Out::Heartbeat(Heartbeat {})).await,
                _ = self.sigterm.recv() => self.on_signal(Some(link)).await,
                _ = self.sigint.recv() => self.on_signal(Some(link)).await,
                () = tokio::time::sleep_until(deadline), if self.draining.is_some() => {
                    self.hand_back_all();
                }
            }
        }
    }

    async fn on_message(&mut self, message: CoordinatorMessage, link: &mut Link) {
        match message.message {
            Some(In::Assign(assign)) => {
                let id = assign.assignment_id.clone();
                self.start(assign);
                // Never to run (draining, or cancelled before it arrived):
                // report it at once.
                if let Some(slot) = self.held.get_mut(&id)
                    && slot.outbox.result.is_some()
                {
                    Self::flush(&id, slot, link).await;
                }
            }
            Some(In::LogAck(ack)) => {
                if let Some(slot) = self.held.get_mut(&ack.assignment_id) {
                    let freed = slot.outbox.ack(ack.seq);
                    self.buffered -= freed;
                    self.stats.set_buffered(self.buffered);
                }
            }
            Some(In::ResultAck(ack)) => {
                if let Some(slot) = self.held.get(&ack.assignment_id)
                    && !slot.running
                {
                    if !ack.accepted {
                        tracing::info!(assignment_id = %ack.assignment_id, "coordinator refused the result (test moved elsewhere)");
                    }
                    self.drop_slot(&ack.assignment_id);
                }
            }
            Some(In::Cancel(cancel)) => {
                let Some(slot) = self.held.get_mut(&cancel.assignment_id) else {
                    // Its Assign may still be on the way (a cancel racing a
                    // claim); remember it, within reason.
                    if !cancel.forget {
                        if self.early_cancels.len() > 10_000 {
                            self.early_cancels.clear();
                        }
                        self.early_cancels.insert(cancel.assignment_id);
                    }
                    return;
                };
                tracing::info!(assignment_id = %cancel.assignment_id, reason = %cancel.reason, "cancel");
                let testrun_id = slot.testrun_id;
                if slot.running {
                    let _ = slot.stop.send(Stop::Kill);
                    slot.discard = cancel.forget;
                } else if cancel.forget {
                    self.drop_slot(&cancel.assignment_id);
                }
                if !cancel.forget {
                    // Only a cancelled Testrun sends these (rule 8), one per
                    // assignment and in any order: its tests still in the
                    // queue go now, this one included, or a slot freed
                    // before their own Cancel comes would start one.
                    self.cancel_waiting(testrun_id, link).await;
                }
            }
            Some(In::Welcome(_)) | None => {
                tracing::warn!("unexpected message from the coordinator ignored");
            }
        }
    }

    fn drop_slot(&mut self, assignment_id: &str) {
        if let Some(slot) = self.held.remove(assignment_id) {
            if slot.queued.is_some() {
                self.waiting.retain(|id| id != assignment_id);
            }
            self.buffered -= slot.outbox.bytes();
            self.stats.set_buffered(self.buffered);
            self.stats
                .set_running(self.held.values().filter(|s| s.running).count());
        }
    }

    /// Takes an assignment: it starts when a slot is free, in the order
    /// assignments came (rule 3).
    fn start(&mut self, assign: pb::Assign) {
        // The test's process subscribes when it starts.
        let (stop, _) = watch::channel(Stop::Run);
        let cancelled = self.early_cancels.remove(&assign.assignment_id);
        if cancelled || self.draining.is_some() {
            // Never started: a cancelled test is reported CANCELLED, one that
            // arrives while draining is handed straight back.
            let mut outbox = Outbox::new();
            outbox.result = Some(not_started(&assign.assignment_id));
            self.held.insert(
                assign.assignment_id,
                Slot {
                    testrun_id: assign.testrun_id,
                    outbox,
                    stop,
                    queued: None,
                    since: Instant::now(),
                    running: false,
                    hand_back: !cancelled,
                    discard: false,
                },
            );
            return;
        }
        let job = Job {
            assignment_id: assign.assignment_id.clone(),
            name: assign.name,
            content: assign.content,
            command: assign.command,
            timeout: assign
                .timeout
                .as_ref()
                .map_or(Duration::from_secs(600), |d| {
                    Duration::from_millis(testrunner_proto::duration_to_millis(d) as u64)
                }),
            attempt: assign.attempt,
        };
        self.held.insert(
            assign.assignment_id.clone(),
            Slot {
                testrun_id: assign.testrun_id,
                outbox: Outbox::new(),
                stop,
                queued: Some(job),
                since: Instant::now(),
                running: false,
                hand_back: false,
                discard: false,
            },
        );
        self.waiting.push_back(assign.assignment_id);
        self.start_waiting();
    }

    /// Starts waiting assignments while slots are free (none while
    /// draining: those were handed back; none without a stream: see
    /// `disconnected_since`).
    fn start_waiting(&mut self) {
        let mut running = self.held.values().filter(|s| s.running).count();
        while running < self.slots as usize
            && self.draining.is_none()
            && self.disconnected_since.is_none()
        {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            // Cancelled or disowned while it waited: nothing to start.
            let Some(slot) = self.held.get_mut(&id) else {
                continue;
            };
            let Some(job) = slot.queued.take() else {
                continue;
            };
            slot.running = true;
            running += 1;
            tracing::debug!(assignment_id = %id, name = %job.name, "test started");
            self.stats.test_started();
            tokio::spawn(exec::run(
                job,
                Arc::clone(&self.exec),
                self.events_tx.clone(),
                slot.stop.subscribe(),
            ));
        }
        self.stats.set_running(running);
    }

    /// Hands back assignments that waited in the queue for `limit`
    /// (`--queue-wait`): the tests ahead of them turned out long, and a
    /// runner with a free slot may take them (rule 3).
    async fn hand_back_stale(&mut self, limit: Duration, link: &mut Link) {
        while let Some(id) = self.waiting.front() {
            if self
                .held
                .get(id)
                .is_some_and(|slot| slot.since.elapsed() < limit)
            {
                break;
            }
            let id = self.waiting.pop_front().expect("front exists");
            if let Some(slot) = self.held.get_mut(&id)
                && slot.unqueue(&id, true)
            {
                tracing::debug!(assignment_id = %id, "handing back a test that waited too long for a slot");
                Self::flush(&id, slot, link).await;
            }
        }
    }

    /// Takes every test of a cancelled Testrun that still waits for a slot
    /// out of the queue, and reports it CANCELLED without running it.
    async fn cancel_waiting(&mut self, testrun_id: i64, link: &mut Link) {
        let held = &self.held;
        let mut cancelled = Vec::new();
        self.waiting.retain(|id| {
            let of_run = held.get(id).is_some_and(|s| s.testrun_id == testrun_id);
            if of_run {
                cancelled.push(id.clone());
            }
            !of_run
        });
        for id in cancelled {
            if let Some(slot) = self.held.get_mut(&id)
                && slot.unqueue(&id, false)
            {
                tracing::debug!(assignment_id = %id, testrun_id, "cancelled while it waited in the queue");
                Self::flush(&id, slot, link).await;
            }
        }
    }

    /// Hands back every assignment still waiting for a slot (draining):
    /// it never ran, so it is requeued without using up an attempt.
    fn hand_back_waiting(&mut self) {
        for id in self.waiting.drain(..) {
            if let Some(slot) = self.held.get_mut(&id) {
                slot.unqueue(&id, true);
            }
        }
    }

    async fn on_exec_event(&mut self, event: ExecEvent, link: Option<&mut Link>) {
        match event {
            ExecEvent::Line {
                assignment_id,
                text,
            } => {
                let Some(slot) = self.held.get_mut(&assignment_id) else {
                    return;
                };
                if slot.discard {
                    return;
                }
                self.buffered += text.len();
                slot.outbox.push(text);
                self.stats.set_buffered(self.buffered);
                if let Some(link) = link {
                    // Full batches go at once; the rest waits for the flush
                    // timer, so a byte-limited batch is not chased by a
                    // one-line remainder.
                    Self::send_lines(&assignment_id, slot, link, true).await;
                }
            }
            ExecEvent::Done {
                assignment_id,
                report,
            } => {
                let Some(slot) = self.held.get_mut(&assignment_id) else {
                    return;
                };
                slot.running = false;
                if slot.discard {
                    self.drop_slot(&assignment_id);
                    self.start_waiting();
                    return;
                }
                tracing::debug!(assignment_id = %assignment_id, outcome = ?report.outcome, "test ended");
                slot.outbox.result =
                    Some(finished(&assignment_id, &report, slot.outbox.last_seq()));
                slot.outbox.result_sent = false;
                // The next test first: it does not wait for this result to
                // be sent.
                self.start_waiting();
                self.held_results.push(assignment_id);
                // While tests wait in the queue every slot stays busy, and
                // the coordinator refills the queue half at a time: results
                // go in groups of that size, each stored in one transaction.
                // Once the queue is empty, at once; the flush timer bounds
                // the wait in between.
                let group = (self.queue_len as usize).div_ceil(2);
                if let Some(link) = link
                    && (self.waiting.is_empty() || self.held_results.len() >= group)
                {
                    for id in std::mem::take(&mut self.held_results) {
                        if let Some(slot) = self.held.get_mut(&id) {
                            Self::flush(&id, slot, link).await;
                        }
                    }
                }
            }
        }
    }

    /// Sends an assignment's unsent lines in batches (only full ones if
    /// `full_only`).
    async fn send_lines(assignment_id: &str, slot: &mut Slot, link: &mut Link, full_only: bool) {
        while !full_only || slot.outbox.fills(link.batch) {
            let Some((first_seq, lines)) = slot.outbox.next_batch(link.batch) else {
                break;
            };
            link.send(Out::Logs(Logs {
                assignment_id: assignment_id.to_owned(),
                first_seq,
                lines,
            }))
            .await;
        }
    }

    /// Sends what one assignment has unsent: lines, then its result.
    async fn flush(assignment_id: &str, slot: &mut Slot, link: &mut Link) {
        Self::send_lines(assignment_id, slot, link, false).await;
        if let Some(result) = &slot.outbox.result
            && !slot.outbox.result_sent
        {
            slot.outbox.result_sent = true;
            let message = if slot.hand_back {
                Out::Release(Release {
                    assignment_id: assignment_id.to_owned(),
                })
            } else {
                Out::Finished(result.clone())
            };
            link.send(message).await;
        }
    }

    /// Sends everything unsent (a new stream, a drain).
    async fn flush_all(&mut self, link: &mut Link) {
        self.flush_held(link, None).await;
    }

    /// At a flush tick: everything unsent, except that heavy output of a
    /// running test goes only in full batches for a while (see
    /// `Outbox::holds_back`).
    async fn flush_due(&mut self, link: &mut Link) {
        self.flush_held(link, Some(Instant::now())).await;
    }

    async fn flush_held(&mut self, link: &mut Link, tick: Option<Instant>) {
        // Every result goes now (a held-back outbox has none).
        self.held_results.clear();
        for (id, slot) in self.held.iter_mut() {
            if slot.discard {
                continue;
            }
            if tick.is_some_and(|now| slot.outbox.holds_back(now)) {
                Self::send_lines(id, slot, link, true).await;
            } else {
                Self::flush(id, slot, link).await;
            }
        }
    }

    async fn on_signal(&mut self, link: Option<&mut Link>) {
        if self.draining.is_some() {
            tracing::warn!("second signal: handing back every running test now");
            self.hand_back_all();
            return;
        }
        tracing::info!(running = self.held.len(), deadline = ?self.config.drain_timeout, "draining: no new work; finishing running tests");
        self.draining = Some(Instant::now() + self.config.drain_timeout);
        self.hand_back_waiting();
        if let Some(link) = link {
            link.send(Out::Drain(Drain {})).await;
            self.flush_all(link).await;
        }
    }

    /// Kills every running test and reports it as handed back.
    fn hand_back_all(&mut self) {
        self.hand_back_waiting();
        for slot in self.held.values_mut().filter(|s| s.running) {
            slot.hand_back = true;
            let _ = slot.stop.send(Stop::Kill);
        }
        // Nothing more to wait for once they are reported.
        self.draining = Some(Instant::now() + Duration::from_secs(3600));
    }
}

/// The current stream's sending half.
struct Link {
    tx: mpsc::Sender<RunnerMessage>,
    batch: BatchLimit,
}

impl Link {
    async fn send(&mut self, message: Out) {
        // A closed stream is noticed on the receiving side; what was not
        // acknowledged is resent on the next stream.
        let _ = self
            .tx
            .send(RunnerMessage {
                message: Some(message),
            })
            .await;
    }
}

/// The result of an assignment that never ran: CANCELLED (or, handed back,
/// a `Release`).
fn not_started(assignment_id: &str) -> Finished {
    let report = Report {
        outcome: Outcome::Cancelled,
        exit_code: None,
        duration: Duration::ZERO,
        error: "cancelled before it started".into(),
    };
    finished(assignment_id, &report, 0)
}

fn finished(assignment_id: &str, report: &Report, last_seq: u64) -> Finished {
    Finished {
        assignment_id: assignment_id.to_owned(),
        outcome: report.outcome as i32,
        exit_code: report.exit_code,
        duration: Some(testrunner_proto::duration_from_millis(
            report.duration.as_millis() as i64,
        )),
        error: report.error.clone(),
        log_lines: last_seq,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// A runner with one slot, as if attached.
    fn agent(args: &[&str]) -> Agent {
        let mut argv = vec!["runner", "--token", "t", "--slots", "1"];
        argv.extend_from_slice(args);
        let config = Config::try_parse_from(argv).expect("parses");
        Agent::new(config, Arc::new(Stats::default())).expect("agent")
    }

    fn stream() -> (Link, mpsc::Receiver<RunnerMessage>) {
        let (tx, rx) = mpsc::channel(1024);
        let batch = BatchLimit {
            lines: 100,
            bytes: 1 << 20,
        };
        (Link { tx, batch }, rx)
    }

    fn assign(id: &str, testrun_id: i64, script: &str) -> CoordinatorMessage {
        CoordinatorMessage {
            message: Some(In::Assign(pb::Assign {
                assignment_id: id.into(),
                testrun_id,
                test_id: 0,
                name: format!("{id}.sh"),
                content: script.into(),
                command: String::new(),
                timeout: None,
                attempt: 1,
            })),
        }
    }

    fn cancel(id: &str) -> CoordinatorMessage {
        CoordinatorMessage {
            message: Some(In::Cancel(pb::Cancel {
                assignment_id: id.into(),
                reason: "testrun cancelled".into(),
                forget: false,
            })),
        }
    }

    /// What the runner sent so far.
    fn sent(rx: &mut mpsc::Receiver<RunnerMessage>) -> Vec<Out> {
        std::iter::from_fn(|| rx.try_recv().ok().and_then(|m| m.message)).collect()
    }

    /// The assignments of the `Finished` messages in `out` that report a
    /// test CANCELLED before it started.
    fn cancelled_unstarted(out: &[Out]) -> Vec<&str> {
        out.iter()
            .filter_map(|m| match m {
                Out::Finished(f)
                    if f.outcome == Outcome::Cancelled as i32 && f.error.contains("before") =>
                {
                    Some(f.assignment_id.as_str())
                }
                _ => None,
            })
            .collect()
    }

    /// Waits for the test `id` to end; its `Done`.
    async fn done_of(agent: &mut Agent, id: &str) -> ExecEvent {
        loop {
            match agent.events_rx.recv().await.expect("events") {
                event @ ExecEvent::Done { .. } if matches!(&event, ExecEvent::Done { assignment_id, .. } if assignment_id == id) =>
                {
                    return event;
                }
                _ => {}
            }
        }
    }

    fn waiting(agent: &Agent, id: &str) -> bool {
        agent.held[id].queued.is_some() && agent.waiting.contains(&id.to_owned())
    }

    #[tokio::test]
    async fn a_cancel_takes_every_queued_test_of_its_testrun_out_of_the_queue() {
        let mut agent = agent(&[]);
        let (mut link, mut rx) = stream();
        agent
            .on_message(assign("a", 1, "exec sleep 30\n"), &mut link)
            .await;
        for (id, testrun) in [("b", 1), ("c", 2), ("d", 1)] {
            agent
                .on_message(assign(id, testrun, "exit 0\n"), &mut link)
                .await;
        }
        assert!(agent.held["a"].running);
        // The Cancel of the running test comes first; those of b and d
        // would come after it was killed, too late.
        agent.on_message(cancel("a"), &mut link).await;
        assert_eq!(cancelled_unstarted(&sent(&mut rx)), ["b", "d"]);
        assert!(waiting(&agent, "c"), "another Testrun's test stays");
        assert_eq!(agent.waiting, ["c"]);

        let done = done_of(&mut agent, "a").await;
        agent.on_exec_event(done, Some(&mut link)).await;
        assert!(agent.held["c"].running, "the freed slot takes c");
        for id in ["b", "d"] {
            assert!(!agent.held[id].running && agent.held[id].queued.is_none());
        }
        // Their own Cancels change nothing now.
        agent.on_message(cancel("b"), &mut link).await;
        agent.on_message(cancel("d"), &mut link).await;
        assert!(cancelled_unstarted(&sent(&mut rx)).is_empty());
    }

    #[tokio::test]
    async fn without_a_stream_no_queued_test_starts_and_the_next_one_hands_back_the_stale() {
        // A long queue wait: only the lease makes b stale.
        let mut agent = agent(&["--queue-wait", "60s"]);
        agent.lease = Duration::from_secs(2);
        let (mut link, _) = stream();
        agent
            .on_message(assign("a", 1, "exec sleep 30\n"), &mut link)
            .await;
        agent
            .on_message(assign("b", 1, "exit 0\n"), &mut link)
            .await;
        agent
            .on_message(assign("c", 1, "exit 0\n"), &mut link)
            .await;

        // The stream ends; then the running test ends.
        agent.disconnected_since = Some(Instant::now());
        let _ = agent.held["a"].stop.send(Stop::Kill);
        let done = done_of(&mut agent, "a").await;
        agent.on_exec_event(done, None).await;
        assert!(!agent.held["a"].running);
        assert!(
            waiting(&agent, "b") && waiting(&agent, "c"),
            "nothing starts"
        );

        // b waited for more than half a lease: by now it may be another
        // runner's. c came just before the stream ended.
        agent.held.get_mut("b").unwrap().since = Instant::now() - Duration::from_millis(1500);
        let (mut link, mut rx) = stream();
        agent.resume(&mut link).await;
        let out = sent(&mut rx);
        assert!(
            out.iter()
                .any(|m| matches!(m, Out::Release(r) if r.assignment_id == "b")),
            "{out:?}"
        );
        assert!(
            out.iter()
                .any(|m| matches!(m, Out::Finished(f) if f.assignment_id == "a")),
            "{out:?}"
        );
        assert!(!agent.held["b"].running && agent.held["b"].queued.is_none());
        assert!(agent.held["c"].running, "the rest starts");
    }
}
