//! Every assignment the runner holds, and its queue, as one state machine
//! without I/O. The session loop feeds it an [`Event`] at a time (a message
//! from the coordinator, a test's line or end, a flush tick, a signal, the
//! stream coming or going) with the time it happened, and carries out the
//! [`Action`]s it returns (start a test, kill one, send a message), in
//! order. It reads no clock, spawns nothing and touches no socket, so its
//! rules are tested with plain `#[test]`s (`assignments/tests.rs`).
//!
//! One assignment's life ([`State`]; protocol rules in brackets):
//!
//! ```text
//! (new) ─Assign─► Queued ─slot free, stream up, not draining─► Running
//!   │               ├─ its Testrun's first Cancel [8] ─► Reported(Finished CANCELLED)
//!   │               ├─ waited past --queue-wait [3] ───► Reported(Released)
//!   │               ├─ on a new stream, waited half a lease ─► Reported(Released)
//!   │               └─ draining [9] ───────────────────► Reported(Released)
//!   ├─ its Cancel came first [8] ─► Reported(Finished CANCELLED)
//!   └─ draining [9] ──────────────► Reported(Released)
//!
//! Running ─ends─► Reported(Finished)
//! Running ─drain deadline, second signal [9]─► HandingBack ─ends─► Reported(Released)
//! Running, HandingBack ─Cancel{forget} [7]─► Discarding ─ends─► (gone)
//! Reported ─ResultAck [5]─► (gone)
//! Queued, Reported ─Cancel{forget} [7]─► (gone)
//! ```
//!
//! A `Queued` test whose `Assign` names a workspace (rule 11) does not
//! start, and does not count as waiting for a slot, until its Testrun's
//! workspace is prepared on this runner (`setups.rs`); after a failed
//! set-up it goes `Reported(Released)`.
//!
//! A `Reported` assignment remembers whether its report went out on the
//! current stream; a new stream sends it, and every unacknowledged line,
//! again (rule 7). The runner as a whole is taking work, or draining
//! ([`Drain`]), and has a stream up or not ([`Stream`]): nothing starts from
//! the queue while draining or without a stream.
//!
//! This file is longer than 500 lines on purpose: it is the one state
//! machine, its types and all of its transitions but the queue's
//! (`queue.rs`), kept together so that each transition is read next to the
//! states it moves between.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use testrunner_proto::v1::{self as pb, runner_message::Message as Out};

use crate::drain::Drain;
use crate::exec::{ExecEvent, Job, Report};
use crate::junit::{Collected, outbox::CaseOutbox};
use crate::outbox::{BatchLimit, Outbox};
use crate::shipping::{self, Final, ResultGroup};
use crate::wire;

/// The lease assumed until a `Welcome` says otherwise.
const INITIAL_LEASE: Duration = Duration::from_secs(15);
/// Most early cancels remembered (see `cancel`).
const MAX_EARLY_CANCELS: usize = 10_000;

/// The runner's settings that the state machine applies.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Tests run at once.
    pub slots: u32,
    /// Tests held beyond `slots`, waiting for one.
    pub queue_len: u32,
    /// `--queue-wait`: a test that waited this long in the queue is handed
    /// back at the next flush tick.
    pub queue_wait: Duration,
    /// `--drain-timeout`.
    pub drain_timeout: Duration,
    /// `--max-buffered-bytes`: past this, test output is not taken.
    pub max_buffered_bytes: usize,
    /// `--line-delay`: a line of light output goes at once when no line
    /// went for this long, else at most this much later (`LinesDue`).
    /// None: light output waits for the flush tick.
    pub line_delay: Option<Duration>,
}

/// Something that happened, for the state machine to act on.
#[derive(Debug)]
pub enum Event {
    /// A stream is up: its `Welcome` came, with the coordinator's lease
    /// and the batch limits for this stream.
    Attached {
        lease: Option<Duration>,
        batch: BatchLimit,
    },
    /// The stream ended, or a new one could not be opened.
    Detached,
    Assign(pb::Assign),
    LogAck(pb::LogAck),
    ResultAck(pb::ResultAck),
    Cancel(pb::Cancel),
    /// A line of a test's output.
    Line {
        assignment_id: String,
        text: String,
    },
    /// A test's process ended.
    Ended {
        assignment_id: String,
        report: Report,
    },
    /// The flush timer, while a stream is up.
    FlushTick,
    /// The time [`Assignments::lines_due`] named came: light output held
    /// back by `--line-delay` goes now.
    LinesDue,
    /// SIGTERM or SIGINT.
    Signal,
    /// The drain deadline passed.
    DrainDeadline,
    /// Draining without a coordinator for longer than a lease: leaving.
    Abandon,
    /// A test's JUnit cases and note, before its `Ended`.
    Cases {
        assignment_id: String,
        collected: Collected,
    },
    CasesAck(pb::CasesAck),
    /// A Testrun's workspace was prepared, or failed to be (rule 12).
    Prepared(crate::workspace::Preparation),
    SetupAck(pb::SetupAck),
}

impl From<ExecEvent> for Event {
    fn from(event: ExecEvent) -> Self {
        match event {
            ExecEvent::Line {
                assignment_id,
                text,
            } => Self::Line {
                assignment_id,
                text,
            },
            ExecEvent::Done {
                assignment_id,
                report,
            } => Self::Ended {
                assignment_id,
                report,
            },
            ExecEvent::Cases {
                assignment_id,
                collected,
            } => Self::Cases {
                assignment_id,
                collected,
            },
        }
    }
}

/// What the session loop is to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start this test's process.
    Start(Job),
    /// Kill this assignment's process (its end is reported as an event).
    Kill(String),
    /// Send this on the current stream (only asked for while one is up).
    Send(Out),
    /// Prepare this Testrun's workspace (its end comes as
    /// [`Event::Prepared`]).
    Prepare {
        testrun_id: i64,
        spec: crate::workspace::Spec,
    },
}

/// Where one assignment is.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Waiting in the queue for a slot: not started (rule 3).
    Queued(Job),
    /// Its process runs (a plain `Cancel` kills it and it stays here); its
    /// end is reported with `Finished`.
    Running,
    /// Killed at the drain deadline; its end is reported with `Release`,
    /// so it is requeued without using an attempt (rule 9).
    HandingBack,
    /// Disowned (`Cancel{forget}`) while it ran: killed; its lines and end
    /// are dropped. A plain `Cancel` after that makes it report again, as
    /// `Running` or `HandingBack`, whichever it was.
    Discarding { handing_back: bool },
    /// Ended, or never started; the report is kept until its `ResultAck`.
    /// `sent`: it went out on the current stream.
    Reported { report: Final, sent: bool },
}

impl State {
    /// Reported, not sent yet.
    fn reported(report: Final) -> Self {
        Self::Reported {
            report,
            sent: false,
        }
    }

    /// Whether its process runs.
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            Self::Running | Self::HandingBack | Self::Discarding { .. }
        )
    }
}

/// Whether the runner has a stream to the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Not attached yet.
    Starting,
    /// Attached, sending `Logs` batches within `batch`.
    Up { batch: BatchLimit },
    /// The last stream ended, or none could be opened, at `since` (the
    /// first failure of a run of them).
    Down { since: Instant },
}

/// One assignment as the runner holds it.
#[derive(Debug)]
struct Assignment {
    /// The Testrun it is a test of: a cancel of one of its assignments
    /// covers every one still queued (rule 8).
    testrun_id: i64,
    /// When its `Assign` came.
    since: Instant,
    outbox: Outbox,
    /// Its JUnit cases not acknowledged yet (rule 11).
    cases: CaseOutbox,
    state: State,
}

impl Assignment {
    /// Takes a test that waits for a slot out of the queue with `report`:
    /// it never runs. False if it was not waiting.
    fn unqueue(&mut self, report: Final) -> bool {
        if !matches!(self.state, State::Queued(_)) {
            return false;
        }
        self.state = State::reported(report);
        true
    }

    /// Sends its unsent lines and then, if it has one, its report.
    fn flush(&mut self, id: &str, batch: BatchLimit, out: &mut Vec<Action>) {
        // Lines, then the JUnit cases, then the report (rule 11).
        shipping::lines(id, &mut self.outbox, batch, false, &mut |m| {
            out.push(Action::Send(m));
        });
        while let Some(cases) = self.cases.next_batch(id) {
            out.push(Action::Send(Out::Cases(cases)));
        }
        let report = match &mut self.state {
            State::Reported { report, sent } => Some((&*report, sent)),
            _ => None,
        };
        shipping::everything(id, &mut self.outbox, report, batch, &mut |m| {
            out.push(Action::Send(m));
        });
    }
}

/// Most unsent lines of one assignment that still count as light output,
/// sent at once or `line_delay` later; more wait for the flush tick, so a
/// chatty test's lines travel in few large batches (each batch is one
/// transaction on the coordinator).
const LIGHT_LINES: u64 = 32;

fn is_light(unsent: u64) -> bool {
    (1..=LIGHT_LINES).contains(&unsent)
}

/// Every assignment the runner holds, its queue, and the runner's drain and
/// stream state.
#[derive(Debug)]
pub struct Assignments {
    settings: Settings,
    held: HashMap<String, Assignment>,
    /// Assignments waiting for a slot, oldest first (rule 3): exactly the
    /// `Queued` ones.
    queue: VecDeque<String>,
    /// Results not sent yet because tests still wait in the queue.
    results: ResultGroup,
    /// Cancels that overtook their Assign (a cancel racing a claim): the
    /// test is reported CANCELLED when its Assign arrives, never run.
    early_cancels: HashSet<String>,
    /// Assignments whose process runs.
    running: usize,
    /// Bytes of unacknowledged output held.
    buffered: usize,
    /// The coordinator's lease: past it, a lost runner's tests are gone.
    lease: Duration,
    stream: Stream,
    drain: Drain,
    /// Workspace preparations by Testrun, and their unacknowledged
    /// reports (rule 12; `setups.rs`).
    setups: setups::Setups,
    /// When lines of light output last went (see `Settings::line_delay`).
    lines_sent_at: Option<Instant>,
    /// When held-back light output must go, if any is held back.
    lines_due: Option<Instant>,
}

impl Assignments {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            held: HashMap::new(),
            queue: VecDeque::new(),
            results: ResultGroup::new(settings.queue_len),
            early_cancels: HashSet::new(),
            running: 0,
            buffered: 0,
            lease: INITIAL_LEASE,
            stream: Stream::Starting,
            drain: Drain::Off,
            setups: setups::Setups::default(),
            lines_sent_at: None,
            lines_due: None,
        }
    }

    /// Applies `event`, which happened at `now`; what to do about it.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Attached { lease, batch } => self.attached(now, lease, batch, &mut out),
            Event::Detached => self.detached(now),
            Event::Assign(assign) => self.assign(now, assign, &mut out),
            Event::LogAck(ack) => self.log_ack(&ack),
            Event::ResultAck(ack) => self.result_ack(&ack),
            Event::Cancel(cancel) => self.cancel(cancel, &mut out),
            Event::Line {
                assignment_id,
                text,
            } => self.line(now, &assignment_id, text, &mut out),
            Event::Ended {
                assignment_id,
                report,
            } => self.ended(assignment_id, &report, &mut out),
            Event::FlushTick => self.flush_tick(now, &mut out),
            Event::LinesDue => self.lines_due_now(now, &mut out),
            Event::Signal => self.signal(now, &mut out),
            Event::DrainDeadline | Event::Abandon => self.hand_back_all(&mut out),
            Event::Cases {
                assignment_id,
                collected,
            } => self.cases(&assignment_id, collected),
            Event::CasesAck(ack) => {
                if let Some(a) = self.held.get_mut(&ack.assignment_id) {
                    a.cases.ack(ack.next_index);
                }
            }
            Event::Prepared(preparation) => self.prepared(now, preparation, &mut out),
            Event::SetupAck(ack) => self.setups.acked(ack.testrun_id),
        }
        out
    }

    /// Every assignment held, for `Register.resume` (rule 7).
    pub fn resume(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Tests whose process runs.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Bytes of output not acknowledged yet.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Whether more test output may be taken (else it waits in the tests'
    /// pipes until the coordinator acknowledges some).
    pub fn has_room(&self) -> bool {
        self.buffered < self.settings.max_buffered_bytes
    }

    pub fn drain(&self) -> Drain {
        self.drain
    }

    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// Drained: nothing held any more, so the runner exits.
    pub fn drained(&self) -> bool {
        self.drain.is_on() && self.held.is_empty()
    }

    /// Whether the runner should stop waiting for a coordinator and leave
    /// ([`Event::Abandon`]): it drains and has had no stream for longer
    /// than a lease, so the coordinator has requeued whatever it holds.
    pub fn abandons(&self, now: Instant) -> bool {
        self.drain.is_on()
            && matches!(self.stream, Stream::Down { since }
                if now.saturating_duration_since(since) > self.lease)
    }

    /// Where one assignment is.
    pub fn state(&self, assignment_id: &str) -> Option<&State> {
        self.held.get(assignment_id).map(|a| &a.state)
    }

    /// The queue, oldest first.
    pub fn queue(&self) -> impl Iterator<Item = &str> {
        self.queue.iter().map(String::as_str)
    }

    fn batch(&self) -> Option<BatchLimit> {
        match self.stream {
            Stream::Up { batch } => Some(batch),
            Stream::Starting | Stream::Down { .. } => None,
        }
    }

    /// A new stream, after its `Welcome`: says it drains before anything
    /// else (so no Assign is sent), sends again what was not acknowledged
    /// (rule 7), and starts the queue again.
    fn attached(
        &mut self,
        now: Instant,
        lease: Option<Duration>,
        batch: BatchLimit,
        out: &mut Vec<Action>,
    ) {
        if let Some(lease) = lease {
            self.lease = lease;
        }
        self.stream = Stream::Up { batch };
        if self.drain.is_on() {
            out.push(Action::Send(wire::drain()));
        }
        for a in self.held.values_mut() {
            a.outbox.rewind(now);
            a.cases.rewind();
            if let State::Reported { sent, .. } = &mut a.state {
                *sent = false;
            }
        }
        // A test that waited in the queue through the disconnection may be
        // another runner's by now (our lease ran out), and the
        // `Cancel{forget}` saying so comes after the Welcome, too late if
        // the test started already. So what waited for half a lease goes
        // back, as does what waited past `--queue-wait`; the rest starts.
        let stale = self.settings.queue_wait.min(self.lease / 2);
        self.hand_back_stale(now, stale, out);
        // Set-up reports before the releases that follow a failed one.
        self.setups.resend(out);
        self.flush_held(None, out);
        self.start_queued(out);
    }

    fn detached(&mut self, now: Instant) {
        if !matches!(self.stream, Stream::Down { .. }) {
            self.stream = Stream::Down { since: now };
        }
    }

    /// Takes an assignment: it starts when a slot is free, in the order
    /// assignments came (rule 3), unless it is never to run.
    fn assign(&mut self, now: Instant, assign: pb::Assign, out: &mut Vec<Action>) {
        let id = assign.assignment_id.clone();
        let testrun_id = assign.testrun_id;
        let cancelled = self.early_cancels.remove(&id);
        let workspace = crate::workspace::Spec::of(&assign);
        let unusable = match &workspace {
            Some(Err(error)) => Some(format!("workspace: {error}")),
            _ => None,
        };
        let setup_failed = workspace.is_some() && self.setups.failed(testrun_id);
        if cancelled || self.drain.is_on() || setup_failed || unusable.is_some() {
            // Never started: a cancelled test is reported CANCELLED, one that
            // arrives while draining, or of a Testrun whose set-up failed
            // here (rule 12), is handed straight back; at once.
            let report = if cancelled {
                Final::Finished(wire::not_started(&id))
            } else if let Some(error) = unusable {
                Final::Finished(wire::not_runnable(&id, error))
            } else {
                Final::Released
            };
            self.insert(id.clone(), testrun_id, now, State::reported(report));
            if let Some(batch) = self.batch()
                && let Some(a) = self.held.get_mut(&id)
            {
                a.flush(&id, batch, out);
            }
            return;
        }
        if let Some(Ok(spec)) = workspace {
            self.setups
                .need(testrun_id, spec, self.batch().is_some(), out);
        }
        self.insert(
            id.clone(),
            testrun_id,
            now,
            State::Queued(wire::job(assign)),
        );
        self.queue.push_back(id);
        self.start_queued(out);
    }

    /// Holds a new assignment. (The coordinator never sends one twice; if
    /// it did, the new one would replace the old.)
    fn insert(&mut self, id: String, testrun_id: i64, now: Instant, state: State) {
        let assignment = Assignment {
            testrun_id,
            since: now,
            outbox: Outbox::new(),
            cases: CaseOutbox::new(),
            state,
        };
        if let Some(old) = self.held.insert(id, assignment) {
            self.forget(&old);
        }
    }

    fn log_ack(&mut self, ack: &pb::LogAck) {
        if let Some(a) = self.held.get_mut(&ack.assignment_id) {
            self.buffered -= a.outbox.ack(ack.seq);
        }
    }

    fn result_ack(&mut self, ack: &pb::ResultAck) {
        if let Some(a) = self.held.get(&ack.assignment_id)
            && !a.state.is_running()
        {
            if !ack.accepted {
                tracing::info!(assignment_id = %ack.assignment_id, "coordinator refused the result (test moved elsewhere)");
            }
            self.remove(&ack.assignment_id);
        }
    }

    /// A `Cancel`: kills the test if it runs; a plain one (a cancelled
    /// Testrun, rule 8) also takes the Testrun's queued tests out of the
    /// queue, `forget` (rule 7) drops the assignment.
    fn cancel(&mut self, cancel: pb::Cancel, out: &mut Vec<Action>) {
        let pb::Cancel {
            assignment_id: id,
            reason,
            forget,
        } = cancel;
        let Some(a) = self.held.get_mut(&id) else {
            // Its Assign may still be on the way (a cancel racing a claim);
            // remember it, within reason.
            if !forget {
                if self.early_cancels.len() > MAX_EARLY_CANCELS {
                    self.early_cancels.clear();
                }
                self.early_cancels.insert(id);
            }
            return;
        };
        tracing::info!(assignment_id = %id, reason = %reason, "cancel");
        let testrun_id = a.testrun_id;
        if a.state.is_running() {
            out.push(Action::Kill(id.clone()));
            a.state = match (&a.state, forget) {
                (State::Running, true) => State::Discarding {
                    handing_back: false,
                },
                (State::HandingBack, true) => State::Discarding { handing_back: true },
                (State::Discarding { handing_back: true }, false) => State::HandingBack,
                (
                    State::Discarding {
                        handing_back: false,
                    },
                    false,
                ) => State::Running,
                (state, _) => state.clone(),
            };
        } else if forget {
            self.remove(&id);
        }
        if !forget {
            // Only a cancelled Testrun sends these, one per assignment and
            // in any order: its tests still in the queue go now, this one
            // included, or a slot freed before their own Cancel comes would
            // start one.
            self.cancel_queued(testrun_id, out);
        }
    }

    fn line(&mut self, now: Instant, id: &str, text: String, out: &mut Vec<Action>) {
        let batch = self.batch();
        let Some(a) = self.held.get_mut(id) else {
            return;
        };
        if matches!(a.state, State::Discarding { .. }) {
            return;
        }
        self.buffered += text.len();
        a.outbox.push(text, now);
        let Some(batch) = batch else {
            return;
        };
        // Full batches go at once; the rest waits, so a byte-limited batch
        // is not chased by a one-line remainder.
        shipping::lines(id, &mut a.outbox, batch, true, &mut |m| {
            out.push(Action::Send(m));
        });
        // Light output: a line after a quiet moment goes at once, so a
        // watcher sees it within a round trip; lines that follow closely
        // wait for one send at most `line_delay` later, which bounds the
        // messages per second whatever the tests print. Heavy output keeps
        // waiting for full batches (`Outbox::holds_back`).
        let Some(delay) = self.settings.line_delay else {
            return;
        };
        if !is_light(a.outbox.unsent()) {
            return;
        }
        match self.lines_sent_at {
            Some(at) if now < at + delay => {
                self.lines_due.get_or_insert(at + delay);
            }
            _ => {
                shipping::lines(id, &mut a.outbox, batch, false, &mut |m| {
                    out.push(Action::Send(m));
                });
                self.lines_sent_at = Some(now);
            }
        }
    }

    /// When held-back light output must go (see `Settings::line_delay`);
    /// the session sends `LinesDue` then.
    pub fn lines_due(&self) -> Option<Instant> {
        self.lines_due
    }

    /// Sends the light output that `line` held back.
    fn lines_due_now(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.lines_due = None;
        let Some(batch) = self.batch() else {
            return;
        };
        let mut sent = false;
        for (id, a) in &mut self.held {
            if !a.state.is_running() || !is_light(a.outbox.unsent()) {
                continue;
            }
            shipping::lines(id, &mut a.outbox, batch, false, &mut |m| {
                out.push(Action::Send(m));
            });
            sent = true;
        }
        if sent {
            self.lines_sent_at = Some(now);
        }
    }

    /// A test's JUnit cases: kept to go before its report. Only a test
    /// that ran and reports `Finished` has any (a handed-back one is run
    /// again; a discarded one is forgotten).
    fn cases(&mut self, id: &str, collected: Collected) {
        if let Some(a) = self.held.get_mut(id)
            && a.state == State::Running
        {
            a.cases.fill(collected);
        }
    }

    fn ended(&mut self, id: String, ended: &Report, out: &mut Vec<Action>) {
        let Some(a) = self.held.get_mut(&id) else {
            return;
        };
        let report = match a.state {
            State::Discarding { .. } => {
                self.remove(&id);
                self.start_queued(out);
                return;
            }
            State::Running => Final::Finished(wire::finished(&id, ended, a.outbox.last_seq())),
            State::HandingBack => Final::Released,
            // No process: nothing of it can end.
            State::Queued(_) | State::Reported { .. } => return,
        };
        tracing::debug!(assignment_id = %id, outcome = ?ended.outcome, "test ended");
        a.state = State::reported(report);
        self.running -= 1;
        // The next test first: it does not wait for this result to be sent.
        self.start_queued(out);
        if self.results.add(id, self.queue.is_empty())
            && let Some(batch) = self.batch()
        {
            for id in self.results.take() {
                if let Some(a) = self.held.get_mut(&id) {
                    a.flush(&id, batch, out);
                }
            }
        }
    }

    /// At a flush tick: hands back what waited past `--queue-wait`, then
    /// sends everything unsent.
    fn flush_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.batch().is_none() {
            // Ticks come only while a stream is up.
            return;
        }
        self.hand_back_stale(now, self.settings.queue_wait, out);
        self.flush_held(Some(now), out);
        // Whatever light output waited went with the tick.
        self.lines_due = None;
    }

    /// Sends everything unsent (a new stream, a drain; at a flush tick
    /// `tick`, heavy output of a running test goes only in full batches
    /// for a while: see `Outbox::holds_back`).
    fn flush_held(&mut self, tick: Option<Instant>, out: &mut Vec<Action>) {
        let Some(batch) = self.batch() else {
            return;
        };
        // Every result goes now (a running test has none).
        self.results.clear();
        for (id, a) in &mut self.held {
            if matches!(a.state, State::Discarding { .. }) {
                continue;
            }
            if let Some(now) = tick
                && a.state.is_running()
                && a.outbox.holds_back(now)
            {
                shipping::lines(id, &mut a.outbox, batch, true, &mut |m| {
                    out.push(Action::Send(m));
                });
            } else {
                a.flush(id, batch, out);
            }
        }
    }

    /// SIGTERM or SIGINT: the first drains (no new work; running tests may
    /// finish until the deadline), a second hands back what runs.
    fn signal(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.drain.is_on() {
            tracing::warn!("second signal: handing back every running test now");
            self.hand_back_all(out);
            return;
        }
        tracing::info!(running = self.held.len(), deadline = ?self.settings.drain_timeout, "draining: no new work; finishing running tests");
        self.drain = Drain::Finishing {
            deadline: now + self.settings.drain_timeout,
        };
        self.hand_back_queued();
        if self.batch().is_some() {
            out.push(Action::Send(wire::drain()));
            self.flush_held(None, out);
        }
    }

    /// Kills every running test and reports it as handed back; nothing
    /// more to wait for once they are reported.
    fn hand_back_all(&mut self, out: &mut Vec<Action>) {
        self.hand_back_queued();
        for (id, a) in &mut self.held {
            a.state = match a.state {
                State::Running | State::HandingBack => State::HandingBack,
                State::Discarding { .. } => State::Discarding { handing_back: true },
                _ => continue,
            };
            out.push(Action::Kill(id.clone()));
        }
        self.drain = Drain::HandedBack;
    }

    fn remove(&mut self, id: &str) {
        if let Some(a) = self.held.remove(id) {
            if matches!(a.state, State::Queued(_)) {
                self.queue.retain(|queued| queued != id);
            }
            self.forget(&a);
            self.setups_unused(a.testrun_id);
        }
    }

    /// The counts without an assignment that is no longer held.
    fn forget(&mut self, a: &Assignment) {
        self.buffered -= a.outbox.bytes();
        if a.state.is_running() {
            self.running -= 1;
        }
    }
}

mod queue;
mod setups;
#[cfg(test)]
mod tests;
