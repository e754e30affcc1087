//! The dispatcher: hands queued tests to attached runners with free slots.
//!
//! Event-driven: creating a Testrun, a runner attaching, a slot freeing up
//! and a test being requeued all call `wake`, and the dispatch loop claims
//! from the store at once; nothing polls on a timer. `Notify` keeps one
//! permit, so a wake that arrives during a pass is never lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
                draining: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().expect("session lock")
    }

    /// Slots the runner has free for new work: its slots minus what it
    /// holds (revoked assignments no longer occupy a slot: the runner drops
    /// them), never more than the outbound channel can take right now.
    pub fn free(&self) -> usize {
        if self.is_closed() {
            return 0;
        }
        let s = self.state();
        if s.draining {
            return 0;
        }
        let live = s.held.values().filter(|h| !h.revoked).count();
        (self.info.slots.max(0) as usize)
            .saturating_sub(live)
            .min(self.tx.capacity())
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
        (sessions.len(), sessions.values().map(|s| s.free()).sum())
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
            let mut candidates: Vec<(usize, Arc<Session>)> = self
                .sessions
                .lock()
                .expect("sessions lock")
                .values()
                .map(|s| (s.free(), Arc::clone(s)))
                .filter(|(free, _)| *free > 0)
                .collect();
            if candidates.is_empty() {
                return Ok(());
            }
            // Emptiest runners first, so work spreads across the fleet.
            candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
            for (free, session) in candidates {
                let claim = self
                    .store
                    .claim_tests(&session.info, session.epoch, free as i64, now_millis())
                    .await?;
                if claim.stale {
                    // The runner registered a newer stream (maybe elsewhere).
                    session.close();
                    continue;
                }
                if claim.assignments.is_empty() && claim.cancelled.is_empty() {
                    return Ok(());
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
                    if let Err(err) = self.hand_out(&session, a).await {
                        tracing::warn!(error = %err, "could not hand out or release an assignment");
                    }
                }
            }
        }
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
