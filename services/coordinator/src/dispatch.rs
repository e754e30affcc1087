//! The dispatcher: hands queued tests to attached runners with free slots.
//!
//! Event-driven: creating a Testrun, a runner attaching, a slot freeing up
//! and a test being requeued all call `wake`, and the dispatch loop claims
//! from the store at once; nothing polls on a timer. `Notify` keeps one
//! permit, so a wake that arrives during a pass is never lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testrunner_proto::v1::{Assign, Cancel, CoordinatorMessage, coordinator_message::Message};
use tokio::sync::{Notify, mpsc};
use tonic::Status;

use crate::domain::{Assignment, RunnerInfo, Test, TestStatus, now_millis};
use crate::hub::{Hub, ListEvent, RunEvent};
use crate::metrics::Metrics;
use crate::store::Store;

/// The outbound half of a runner's stream.
pub type Outbound = mpsc::Sender<Result<CoordinatorMessage, Status>>;

/// An assignment a runner holds, as its session knows it.
#[derive(Debug, Clone)]
pub struct Held {
    pub testrun_id: i64,
    pub name: String,
    /// No longer current (moved elsewhere or unknown after a reconnect):
    /// what the runner says about it is acknowledged and dropped.
    pub revoked: bool,
    /// When this session took it on.
    pub since: Instant,
}

/// One attached runner, shared by its stream task and the dispatcher.
#[derive(Debug)]
pub struct Session {
    pub info: RunnerInfo,
    /// Distinguishes two streams of the same runner across a reconnect.
    pub serial: u64,
    /// The registration this stream belongs to; claims must present it.
    pub epoch: i64,
    /// Replaced by a newer stream, or known stale: never given work again.
    closed: AtomicBool,
    tx: Outbound,
    state: Mutex<SessionState>,
}

#[derive(Debug, Default)]
struct SessionState {
    held: HashMap<String, Held>,
    draining: bool,
    /// Recent test durations on this runner (a moving average, in ms);
    /// unknown until its first result.
    recent_ms: Option<f64>,
}

/// How much work a runner's queue holds per slot, by its recent test
/// durations: 50 ms is 16 tests of 3 ms, 1 test of 30 ms, and no queue at
/// all for tests of 50 ms or more. For short tests a round trip to the
/// coordinator between two tests is a large share of a slot's time, and
/// the deeper the queue, the more results and claims share a transaction.
/// Longer tests are handed out one per free slot, so none waits behind
/// another while an idle runner could take it.
const QUEUED_WORK_MS: f64 = 50.0;
/// Weight of the newest duration in the moving average.
const RECENT_WEIGHT: f64 = 0.2;
/// No queue while the runner has held an assignment this long: a test that
/// long is not short, whatever the average says, and what came with it may
/// be as long. (A runner hands back what waited in its queue for a second,
/// so such tests go to runners with free slots.)
const QUEUE_WHILE_HELD_UNDER: Duration = Duration::from_millis(250);

/// A runner's room for assignments.
#[derive(Debug, Default)]
struct Room {
    /// Assignments it can take now: its slots plus its queue, minus what it
    /// holds (revoked assignments no longer count: the runner drops them),
    /// never more than the outbound channel can take right now.
    free: usize,
    /// Assignments it holds.
    live: usize,
    /// How many of them may wait for a slot, given its recent tests.
    queue: usize,
}

impl Session {
    /// A session for a runner that holds `held` already (a resume).
    pub fn new(info: RunnerInfo, epoch: i64, tx: Outbound, held: HashMap<String, Held>) -> Self {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        Self {
            info,
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            epoch,
            closed: AtomicBool::new(false),
            tx,
            state: Mutex::new(SessionState {
                held,
                ..SessionState::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().expect("session lock")
    }

    /// How many assignments to claim for this runner now: all its room,
    /// except while all its slots are busy and tests wait in its queue;
    /// then none until half the queue is free, so that one claim serves
    /// several results.
    pub fn wanted(&self) -> usize {
        let Room { free, live, queue } = self.room();
        let slots = self.info.slots.max(0) as usize;
        if live >= slots && free < queue.div_ceil(2) {
            0
        } else {
            free
        }
    }

    /// How many of [`Self::wanted`] would start at once: its idle slots.
    pub fn wanted_idle(&self) -> usize {
        let Room { free, live, .. } = self.room();
        free.min((self.info.slots.max(0) as usize).saturating_sub(live))
    }

    /// The runner's room for assignments (see `Room`).
    fn room(&self) -> Room {
        let slots = self.info.slots.max(0) as usize;
        if self.is_closed() {
            return Room::default();
        }
        let s = self.state();
        // One pass: how many it holds, and since when the oldest.
        let (live, oldest) = s
            .held
            .values()
            .filter(|h| !h.revoked)
            .fold((0, None::<Instant>), |(n, oldest), h| {
                (n + 1, Some(oldest.map_or(h.since, |o| o.min(h.since))))
            });
        if s.draining {
            return Room {
                live,
                ..Room::default()
            };
        }
        let busy_long = oldest.is_some_and(|t| t.elapsed() >= QUEUE_WHILE_HELD_UNDER);
        let per_slot = match s.recent_ms {
            Some(ms) if !busy_long && ms < QUEUED_WORK_MS => (QUEUED_WORK_MS / ms.max(1.0)).floor(),
            _ => 0.0,
        };
        let queue =
            ((per_slot as usize).saturating_mul(slots)).min(self.info.queue.max(0) as usize);
        let free = (slots + queue).saturating_sub(live).min(self.tx.capacity());
        Room { free, live, queue }
    }

    /// Slots with no test in them (for the free-slots gauge).
    pub fn idle_slots(&self) -> usize {
        if self.is_closed() {
            return 0;
        }
        (self.info.slots.max(0) as usize).saturating_sub(self.room().live)
    }

    /// Notes how long a test took on this runner.
    pub fn record_duration(&self, ms: i64) {
        let ms = ms.max(0) as f64;
        let mut s = self.state();
        s.recent_ms = Some(match s.recent_ms {
            None => ms,
            Some(avg) => avg + RECENT_WEIGHT * (ms - avg),
        });
    }

    /// Gives this stream no more work (replaced or stale).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Whether the stream was replaced or found stale.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.tx.is_closed()
    }

    /// What the session knows about an assignment.
    pub fn held(&self, assignment_id: &str) -> Option<Held> {
        self.state().held.get(assignment_id).cloned()
    }

    /// Marks an assignment as no longer current.
    pub fn revoke(&self, assignment_id: &str) {
        if let Some(h) = self.state().held.get_mut(assignment_id) {
            h.revoked = true;
        }
    }

    /// Forgets an assignment (its result arrived or it was handed back).
    pub fn forget(&self, assignment_id: &str) -> Option<Held> {
        self.state().held.remove(assignment_id)
    }

    /// Stops giving this runner work.
    pub fn drain(&self) {
        self.state().draining = true;
    }

    /// Assignments held, for tests and shutdown.
    pub fn held_count(&self) -> usize {
        self.state().held.len()
    }

    /// Sends a message to the runner; false if its stream is gone or full.
    pub fn try_send(&self, message: Message) -> bool {
        self.tx
            .try_send(Ok(CoordinatorMessage {
                message: Some(message),
            }))
            .is_ok()
    }

    /// Sends a message without waiting: at once if there is room, else from
    /// a task that waits for room. False only if the stream is gone.
    pub fn send_soon(&self, message: Message) -> bool {
        let message = Ok(CoordinatorMessage {
            message: Some(message),
        });
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(message)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(message).await;
                });
                true
            }
        }
    }

    /// Sends a message, waiting for room (backpressure from a slow runner).
    pub async fn send(&self, message: Message) -> bool {
        self.tx
            .send(Ok(CoordinatorMessage {
                message: Some(message),
            }))
            .await
            .is_ok()
    }

    /// Ends the runner's stream with an error.
    pub async fn close_with(&self, status: Status) {
        let _ = self.tx.send(Err(status)).await;
    }
}

/// What one claim found.
enum Claimed {
    /// Tests were handed out (or cancelled).
    Some,
    /// No test is queued.
    QueueEmpty,
    /// The runner's stream is gone.
    Stale,
}

/// Attached runners and the loop that feeds them.
#[derive(Debug)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    notify: Notify,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, hub: Arc<Hub>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            hub,
            metrics,
            notify: Notify::new(),
            sessions: Mutex::default(),
        }
    }

    /// Asks for a dispatch pass as soon as possible.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Adds a runner's session, replacing (and returning) an older stream of
    /// the same runner.
    pub fn attach(&self, session: Arc<Session>) -> Option<Arc<Session>> {
        let old = self
            .sessions
            .lock()
            .expect("sessions lock")
            .insert(session.info.id.clone(), session);
        if let Some(old) = &old {
            old.close();
        }
        self.wake();
        old
    }

    /// Removes a session unless a newer stream of the runner replaced it.
    pub fn detach(&self, session: &Session) {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if sessions
            .get(&session.info.id)
            .is_some_and(|s| s.serial == session.serial)
        {
            sessions.remove(&session.info.id);
        }
    }

    /// Tells the runner holding an assignment to kill it: directly if it is
    /// attached here, else through the coordinator it is attached to.
    pub fn cancel(&self, runner_id: &str, assignment_id: &str, reason: &str) {
        if !self.cancel_local(runner_id, assignment_id, reason) {
            self.hub.cluster().send(crate::cluster::Signal::Cancel {
                runner: runner_id.to_owned(),
                assignment: assignment_id.to_owned(),
            });
        }
    }

    /// Tells the runner to kill an assignment if it is attached here.
    /// Returns whether the message went out.
    pub fn cancel_local(&self, runner_id: &str, assignment_id: &str, reason: &str) -> bool {
        let session = self
            .sessions
            .lock()
            .expect("sessions lock")
            .get(runner_id)
            .cloned();
        session.is_some_and(|s| {
            s.send_soon(Message::Cancel(Cancel {
                assignment_id: assignment_id.to_owned(),
                reason: reason.to_owned(),
                forget: false,
            }))
        })
    }

    /// Attached runners and their free slots.
    pub fn gauges(&self) -> (usize, usize) {
        let sessions = self.sessions.lock().expect("sessions lock");
        (
            sessions.len(),
            sessions.values().map(|s| s.idle_slots()).sum(),
        )
    }

    /// Runs dispatch passes until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.notify.notified().await;
            if let Err(err) = self.pass().await {
                tracing::warn!(error = %err, "dispatch pass failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                self.wake();
            }
        }
    }

    /// Fills free slots until either the queue or the slots run out.
    async fn pass(&self) -> crate::error::Result<()> {
        loop {
            let sessions: Vec<Arc<Session>> = self
                .sessions
                .lock()
                .expect("sessions lock")
                .values()
                .cloned()
                .collect();
            // Idle slots across the fleet first, then runners' queues: a
            // test must not wait in one runner's queue while another
            // runner's slot is idle.
            let mut claimed = false;
            for want in [Session::wanted_idle, Session::wanted] {
                let mut candidates: Vec<(usize, &Arc<Session>)> = sessions
                    .iter()
                    .map(|s| (want(s), s))
                    .filter(|(n, _)| *n > 0)
                    .collect();
                // Emptiest runners first, so work spreads across the fleet.
                candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
                for (n, session) in candidates {
                    match self.claim_for(session, n).await? {
                        Claimed::Some => claimed = true,
                        Claimed::QueueEmpty => return Ok(()),
                        Claimed::Stale => {}
                    }
                }
            }
            if !claimed {
                return Ok(());
            }
        }
    }

    /// Claims up to `n` tests for one runner and hands them out.
    async fn claim_for(&self, session: &Session, n: usize) -> crate::error::Result<Claimed> {
        let claim = self
            .store
            .claim_tests(&session.info, session.epoch, n as i64, now_millis())
            .await?;
        if claim.stale {
            // The runner registered a newer stream (maybe elsewhere).
            session.close();
            return Ok(Claimed::Stale);
        }
        if claim.assignments.is_empty() && claim.cancelled.is_empty() {
            return Ok(Claimed::QueueEmpty);
        }
        for run in &claim.testruns {
            let event = if claim.cancelled.is_empty() {
                RunEvent::Testrun(run.clone())
            } else {
                RunEvent::Resync
            };
            self.hub.publish(run.id, event);
            self.hub.publish_list(ListEvent::Changed(run.clone()));
        }
        for a in claim.assignments {
            // One failed release must not strand the rest of the claim.
            if let Err(err) = self.hand_out(session, a).await {
                tracing::warn!(error = %err, "could not hand out or release an assignment");
            }
        }
        Ok(Claimed::Some)
    }

    async fn hand_out(&self, session: &Session, a: Assignment) -> crate::error::Result<()> {
        let now = now_millis();
        self.metrics.dispatched((now - a.queued_at) as f64 / 1000.0);
        session.state().held.insert(
            a.assignment_id.clone(),
            Held {
                testrun_id: a.testrun_id,
                name: a.name.clone(),
                revoked: false,
                since: Instant::now(),
            },
        );
        let test = Test {
            id: a.test_id,
            testrun_id: a.testrun_id,
            name: a.name.clone(),
            status: TestStatus::Running,
            attempt: a.attempt,
            runner_name: Some(session.info.name.clone()),
            exit_code: None,
            error: String::new(),
            started_at: Some(now),
            finished_at: None,
            duration_ms: None,
            log_lines: a.log_lines,
            size_bytes: a.size_bytes,
        };
        // Watchers learn of the start before the runner can report the end.
        self.hub.publish(a.testrun_id, RunEvent::Test(test));
        let sent = !session.is_closed()
            && session.try_send(Message::Assign(Assign {
                assignment_id: a.assignment_id.clone(),
                testrun_id: a.testrun_id,
                test_id: a.test_id,
                name: a.name,
                content: a.content,
                command: a.command.unwrap_or_default(),
                timeout: Some(testrunner_proto::duration_from_millis(a.timeout_ms)),
                attempt: a.attempt.max(0) as u32,
            }));
        if sent {
            tracing::debug!(runner = %session.info.name, assignment_id = %a.assignment_id, test_id = a.test_id, "test assigned");
        } else {
            // The stream went away or was replaced between claim and send
            // (claims never exceed the channel's room): put the test back
            // without using up an attempt.
            session.forget(&a.assignment_id);
            self.store.release_assignment(&a.assignment_id, now).await?;
            tracing::info!(runner = %session.info.name, assignment_id = %a.assignment_id, "runner stream gone; assignment released");
            self.hub.publish(a.testrun_id, RunEvent::Resync);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(
        slots: i32,
        queue: i32,
    ) -> (Session, mpsc::Receiver<Result<CoordinatorMessage, Status>>) {
        let (tx, rx) = mpsc::channel(256);
        let info = RunnerInfo {
            id: "r".into(),
            name: "r".into(),
            slots,
            queue,
            version: String::new(),
        };
        (Session::new(info, 1, tx, HashMap::new()), rx)
    }

    fn hold(session: &Session, n: usize, since: Instant) {
        let mut s = session.state();
        for _ in 0..n {
            let id = format!("a{}", s.held.len());
            s.held.insert(
                id,
                Held {
                    testrun_id: 1,
                    name: "t".into(),
                    revoked: false,
                    since,
                },
            );
        }
    }

    #[test]
    fn no_queue_until_the_runner_has_reported_a_duration() {
        let (s, _rx) = session(4, 64);
        assert_eq!(s.room().free, 4);
        assert_eq!(s.wanted(), 4);
    }

    #[test]
    fn the_queue_holds_about_50ms_of_work_per_slot_up_to_what_the_runner_takes() {
        let (s, _rx) = session(4, 64);
        s.record_duration(10);
        assert_eq!(
            (s.room().queue, s.room().free),
            (20, 24),
            "5 tests of 10 ms per slot"
        );
        s.record_duration(0);
        s.record_duration(0);
        s.record_duration(0);
        s.record_duration(0);
        s.record_duration(0);
        s.record_duration(0);
        // Averaging towards 0 ms: 50 per slot, capped at the runner's 64.
        assert_eq!(s.room().queue, 64);
        let (small, _rx) = session(4, 3);
        small.record_duration(1);
        assert_eq!(
            small.room().queue,
            3,
            "never more than the runner said it takes"
        );
    }

    #[test]
    fn tests_of_50ms_or_more_are_never_queued() {
        let (s, _rx) = session(2, 64);
        s.record_duration(50);
        assert_eq!((s.room().queue, s.room().free), (0, 2));
        let (none, _rx) = session(2, 0);
        none.record_duration(1);
        assert_eq!(none.room().queue, 0, "a runner without a queue gets none");
    }

    #[test]
    fn a_test_held_for_long_stops_the_queue() {
        let (s, _rx) = session(2, 64);
        s.record_duration(1);
        hold(&s, 1, Instant::now());
        assert_eq!(s.room().queue, 64);
        hold(&s, 1, Instant::now() - QUEUE_WHILE_HELD_UNDER);
        assert_eq!((s.room().queue, s.room().free), (0, 0));
    }

    #[test]
    fn with_every_slot_busy_the_queue_is_refilled_half_at_a_time() {
        let (s, _rx) = session(4, 8);
        s.record_duration(1);
        // 4 running, 8 queued: full.
        hold(&s, 12, Instant::now());
        assert_eq!(s.wanted(), 0);
        s.forget("a0");
        s.forget("a1");
        s.forget("a2");
        assert_eq!(
            (s.room().free, s.wanted()),
            (3, 0),
            "3 free of a queue of 8"
        );
        s.forget("a3");
        assert_eq!(s.wanted(), 4);
        // With a slot idle, whatever room there is.
        let (idle, _rx) = session(4, 8);
        idle.record_duration(1);
        hold(&idle, 3, Instant::now());
        assert_eq!(idle.wanted(), 9);
        assert_eq!(idle.wanted_idle(), 1, "one slot idle");
        assert_eq!(s.wanted_idle(), 0, "every slot busy");
    }

    #[test]
    fn a_draining_or_closed_runner_wants_nothing() {
        let (s, _rx) = session(4, 8);
        s.drain();
        assert_eq!(s.wanted(), 0);
        let (c, _rx) = session(4, 8);
        c.close();
        assert_eq!((c.wanted(), c.idle_slots()), (0, 0));
    }
}
