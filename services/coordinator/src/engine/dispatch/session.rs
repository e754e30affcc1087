//! One attached runner's session, as the dispatcher and its stream share
//! it: what it holds, whether it drains, and its room for more work (its
//! slots plus a queue sized by how long its recent tests took).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testrunner_proto::v1::{CoordinatorMessage, coordinator_message::Message};
use tokio::sync::mpsc;

use crate::domain::RunnerInfo;
use crate::error::Error;

/// The outbound half of a runner's stream.
pub type Outbound = mpsc::Sender<Result<CoordinatorMessage, Error>>;

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
    /// This runner failed a Testrun's set-up on this stream: its claims
    /// skip that Testrun's tests, so an empty claim of its own no longer
    /// means the queue is empty for everyone.
    failed_setup: AtomicBool,
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
            failed_setup: AtomicBool::new(false),
            tx,
            state: Mutex::new(SessionState {
                held,
                ..SessionState::default()
            }),
        }
    }

    /// Records that this runner failed a Testrun's set-up.
    pub fn mark_failed_setup(&self) {
        self.failed_setup.store(true, Ordering::Relaxed);
    }

    /// Whether this runner failed a Testrun's set-up on this stream.
    pub fn failed_setup(&self) -> bool {
        self.failed_setup.load(Ordering::Relaxed)
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

    /// True once it gets no more work.
    pub fn is_draining(&self) -> bool {
        self.state().draining
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
    pub async fn close_with(&self, err: Error) {
        let _ = self.tx.send(Err(err)).await;
    }

    /// Takes on an assignment just handed out.
    pub fn hold(&self, assignment_id: String, held: Held) {
        self.state().held.insert(assignment_id, held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(
        slots: i32,
        queue: i32,
    ) -> (Session, mpsc::Receiver<Result<CoordinatorMessage, Error>>) {
        let (tx, rx) = mpsc::channel(256);
        let info = RunnerInfo {
            id: "r".into(),
            name: "r".into(),
            slots,
            queue,
            version: String::new(),
            ..RunnerInfo::default()
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
