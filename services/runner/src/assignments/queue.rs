//! The queue of tests waiting for a slot (protocol rule 3): what leaves it
//! for a slot, and what leaves it unstarted (waited too long, cancelled,
//! drained). Part of the state machine in `assignments`: no I/O, time
//! passed in.

use std::time::{Duration, Instant};

use super::{Action, Assignments, State};
use crate::shipping::Final;
use crate::wire;

impl Assignments {
    /// Hands back assignments that waited in the queue for `limit` by
    /// `now`: the tests ahead of them turned out long, and a runner with a
    /// free slot may take them (rule 3).
    pub(super) fn hand_back_stale(&mut self, now: Instant, limit: Duration, out: &mut Vec<Action>) {
        let batch = self.batch();
        // Tests waiting for their workspace to be prepared are not waiting
        // for a slot: they stay (their wait starts once it is ready).
        let mut at = 0;
        while let Some(id) = self.queue.get(at) {
            if let Some(a) = self.held.get(id) {
                if self.waits_for_setup(&a.state, a.testrun_id) {
                    at += 1;
                    continue;
                }
                if now.saturating_duration_since(a.since) < limit {
                    break;
                }
            }
            let id = self.queue.remove(at).expect("exists");
            if let Some(a) = self.held.get_mut(&id)
                && a.unqueue(Final::Released)
            {
                tracing::debug!(assignment_id = %id, "handing back a test that waited too long for a slot");
                if let Some(batch) = batch {
                    a.flush(&id, batch, out);
                }
            }
        }
    }

    /// Starts queued tests while slots are free (none while draining: those
    /// were handed back; none without a stream: the coordinator may be
    /// giving them to another runner as the lease runs out, and a test must
    /// not run twice).
    pub(super) fn start_queued(&mut self, out: &mut Vec<Action>) {
        while self.running < self.settings.slots as usize
            && !self.drain.is_on()
            && self.batch().is_some()
        {
            // The first that may start: tests waiting for their workspace
            // let later ones (of other Testruns) go ahead.
            let Some(at) = self.queue.iter().position(|id| {
                self.held
                    .get(id)
                    .is_none_or(|a| !self.waits_for_setup(&a.state, a.testrun_id))
            }) else {
                break;
            };
            let id = self.queue.remove(at).expect("exists");
            // Cancelled or disowned while it waited: nothing to start.
            let Some(testrun_id) = self.held.get(&id).map(|a| a.testrun_id) else {
                continue;
            };
            let workspace = self.workspace_for(testrun_id);
            let Some(a) = self.held.get_mut(&id) else {
                continue;
            };
            if !matches!(a.state, State::Queued(_)) {
                continue;
            }
            let State::Queued(mut job) = std::mem::replace(&mut a.state, State::Running) else {
                unreachable!("checked above");
            };
            if job.wants_workspace {
                job.workspace = workspace;
            }
            self.running += 1;
            out.push(Action::Start(job));
        }
    }

    /// Takes every test of a cancelled Testrun that still waits for a slot
    /// out of the queue, and reports it CANCELLED without running it.
    pub(super) fn cancel_queued(&mut self, testrun_id: i64, out: &mut Vec<Action>) {
        let held = &self.held;
        let mut cancelled = Vec::new();
        self.queue.retain(|id| {
            let of_run = held.get(id).is_some_and(|a| a.testrun_id == testrun_id);
            if of_run {
                cancelled.push(id.clone());
            }
            !of_run
        });
        let batch = self.batch();
        for id in cancelled {
            if let Some(a) = self.held.get_mut(&id)
                && a.unqueue(Final::Finished(wire::not_started(&id)))
            {
                tracing::debug!(assignment_id = %id, testrun_id, "cancelled while it waited in the queue");
                if let Some(batch) = batch {
                    a.flush(&id, batch, out);
                }
            }
        }
    }

    /// Hands back every assignment still waiting for a slot (draining): it
    /// never ran, so it is requeued without using up an attempt. Sent with
    /// the next flush of everything.
    pub(super) fn hand_back_queued(&mut self) {
        for id in self.queue.drain(..) {
            if let Some(a) = self.held.get_mut(&id) {
                a.unqueue(Final::Released);
            }
        }
    }
}
