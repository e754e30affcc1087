//! The dispatcher: hands queued tests to attached runners with free slots.
//!
//! Event-driven: creating a Testrun, a runner attaching, a slot freeing up
//! and a test being requeued all call `wake`, and the dispatch loop claims
//! from the store at once; nothing polls on a timer. `Notify` keeps one
//! permit, so a wake that arrives during a pass is never lost.

mod session;
mod workspaces;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testrunner_proto::v1::{Assign, Cancel, coordinator_message::Message};
use tokio::sync::Notify;

pub use session::{Held, Outbound, Session};

use testrunner_content::label;

use crate::domain::{Assignment, Labels, Test, TestStatus, now_millis};
use crate::error::Result;
use crate::live::cluster::LocalRunners;
use crate::live::hub::{Hub, ListEvent, RunEvent};
use crate::live::signal::Signal;
use crate::metrics::Metrics;
use crate::store::Store;

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
    workspaces: workspaces::WorkspaceCache,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, hub: Arc<Hub>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            hub,
            metrics,
            notify: Notify::new(),
            sessions: Mutex::default(),
            workspaces: workspaces::WorkspaceCache::default(),
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
            self.hub.cluster().send(Signal::Cancel {
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
    async fn pass(&self) -> Result<()> {
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
            // Labels of runners that found nothing to take. With runner
            // pools, an empty claim means only "nothing for these labels":
            // a runner with other labels may still find work. A runner
            // whose labels are a subset of such a set would find nothing
            // either (whatever it may take, they may), so it is skipped;
            // without labels anywhere one empty claim still ends the pass.
            let mut empty_for: Vec<&Labels> = Vec::new();
            for want in [Session::wanted_idle, Session::wanted] {
                let mut candidates: Vec<(usize, &Arc<Session>)> = sessions
                    .iter()
                    .map(|s| (want(s), s))
                    .filter(|(n, _)| *n > 0)
                    .collect();
                // Emptiest runners first, so work spreads across the fleet.
                candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
                for (n, session) in candidates {
                    let labels = &session.info.labels;
                    if empty_for.iter().any(|e| label::matches(labels, e)) {
                        continue;
                    }
                    match self.claim_for(session, n).await? {
                        Claimed::Some => claimed = true,
                        // Nothing for a runner that failed a set-up may
                        // still be work for the others.
                        Claimed::QueueEmpty if session.failed_setup() => {}
                        Claimed::QueueEmpty => empty_for.push(labels),
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
    async fn claim_for(&self, session: &Session, n: usize) -> Result<Claimed> {
        let claim = self
            .store
            .claim_tests(&session.info, session.epoch, n as i64, now_millis())
            .await?;
        if claim.stale {
            // The runner registered a newer stream (maybe elsewhere).
            session.close();
            return Ok(Claimed::Stale);
        }
        if claim.drained {
            // Drained by an operator: nothing more for it, but other
            // runners may still take work.
            if !session.is_draining() {
                tracing::info!(runner = %session.info.name, "runner drained by an operator");
            }
            session.drain();
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

    async fn hand_out(&self, session: &Session, a: Assignment) -> Result<()> {
        let now = now_millis();
        self.metrics.dispatched((now - a.queued_at) as f64 / 1000.0);
        session.hold(
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
            cases: Default::default(),
            note: String::new(),
            expected_ms: a.expected_ms,
        };
        // Watchers learn of the start before the runner can report the end.
        self.hub.publish(a.testrun_id, RunEvent::Test(test));
        let mut assign = Assign {
            assignment_id: a.assignment_id.clone(),
            testrun_id: a.testrun_id,
            test_id: a.test_id,
            name: a.name,
            content: a.content,
            command: a.command.unwrap_or_default(),
            timeout: Some(testrunner_proto::millis(a.timeout_ms)),
            attempt: a.attempt.max(0) as u32,
            memory_bytes: a.limits.memory_bytes.map_or(0, |n| n.max(0) as u64),
            pids: a
                .limits
                .pids
                .map_or(0, |n| n.clamp(0, u32::MAX.into()) as u32),
            ..Assign::default()
        };
        match self.workspaces.get(&*self.store, a.testrun_id).await {
            Ok(Some(ws)) => workspaces::fill(&mut assign, &ws),
            Ok(None) => {}
            Err(err) => {
                // Sending it without its workspace would run it wrongly.
                session.forget(&a.assignment_id);
                self.store.release_assignment(&a.assignment_id, now).await?;
                return Err(err);
            }
        }
        let sent = !session.is_closed() && session.try_send(Message::Assign(assign));
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

impl LocalRunners for Dispatcher {
    fn wake(&self) {
        Dispatcher::wake(self);
    }

    fn cancel_local(&self, runner_id: &str, assignment_id: &str, reason: &str) -> bool {
        Dispatcher::cancel_local(self, runner_id, assignment_id, reason)
    }
}
