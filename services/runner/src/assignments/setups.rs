//! Workspace preparation in the state machine (protocol rule 11): a
//! Testrun's tests with a workspace wait in the queue until it is prepared
//! on this runner; `SetupStarted` goes when preparing starts and
//! `SetupFinished` when it ends, kept and resent on every new stream until
//! `SetupAck`; after a failure the Testrun's held and later assignments
//! are released. No I/O: the preparation itself is an [`Action::Prepare`]
//! whose end comes back as `Event::Prepared`.

use std::collections::HashMap;
use std::time::Instant;

use testrunner_proto::v1::{self as pb, runner_message::Message as Out};

use super::{Action, Assignments, State};
use crate::shipping::Final;
use crate::wire;
use crate::workspace::{Preparation, Prepared, Spec};

/// Testruns remembered once nothing of them is held (their set-up was
/// reported; a later Assign of one is not announced again).
const MAX_REMEMBERED: usize = 10_000;

/// One Testrun's workspace on this runner.
#[derive(Debug, Clone)]
enum Setup {
    /// Being fetched and set up.
    Preparing { announced: bool },
    /// Ready: its tests start in copies of this.
    Ready(Prepared),
    /// Reported ready, and nothing of the Testrun is held any more: the
    /// prepared directory is not kept for it (a later Assign prepares
    /// again, finding it reused if it is still there).
    Idle,
    /// Its set-up failed here: none of its tests run on this runner.
    Failed,
}

/// Every Testrun's set-up state and unacknowledged `SetupFinished`.
#[derive(Debug, Default)]
pub(super) struct Setups {
    by_testrun: HashMap<i64, Setup>,
    /// `SetupFinished` until its `SetupAck`, with whether it went out on
    /// the current stream.
    reports: HashMap<i64, (pb::SetupFinished, bool)>,
}

impl Setups {
    /// A test of `testrun_id` needs `spec` prepared: starts that unless it
    /// is under way or done.
    pub(super) fn need(&mut self, testrun_id: i64, spec: Spec, up: bool, out: &mut Vec<Action>) {
        let announce = match self.by_testrun.get(&testrun_id) {
            None => true,
            Some(Setup::Idle) => false,
            Some(Setup::Preparing { .. } | Setup::Ready(_) | Setup::Failed) => return,
        };
        if self.by_testrun.len() >= MAX_REMEMBERED {
            self.by_testrun
                .retain(|_, s| !matches!(s, Setup::Idle | Setup::Failed));
        }
        if announce && up {
            out.push(Action::Send(wire::setup_started(testrun_id)));
        }
        self.by_testrun.insert(
            testrun_id,
            Setup::Preparing {
                announced: announce,
            },
        );
        out.push(Action::Prepare { testrun_id, spec });
    }

    pub(super) fn failed(&self, testrun_id: i64) -> bool {
        matches!(self.by_testrun.get(&testrun_id), Some(Setup::Failed))
    }

    /// The prepared workspace of a Testrun, if ready.
    pub(super) fn ready(&self, testrun_id: i64) -> Option<&Prepared> {
        match self.by_testrun.get(&testrun_id) {
            Some(Setup::Ready(base)) => Some(base),
            _ => None,
        }
    }

    pub(super) fn acked(&mut self, testrun_id: i64) {
        self.reports.remove(&testrun_id);
    }

    /// On a new stream: what is being prepared is announced again, and
    /// every unacknowledged report is sent.
    pub(super) fn resend(&mut self, out: &mut Vec<Action>) {
        for (testrun_id, setup) in &self.by_testrun {
            if matches!(
                setup,
                Setup::Preparing {
                    announced: true,
                    ..
                }
            ) {
                out.push(Action::Send(wire::setup_started(*testrun_id)));
            }
        }
        for (report, sent) in self.reports.values_mut() {
            out.push(Action::Send(Out::SetupFinished(report.clone())));
            *sent = true;
        }
    }

    /// Whether a Testrun's workspace is being prepared.
    pub(super) fn preparing(&self, testrun_id: i64) -> bool {
        matches!(
            self.by_testrun.get(&testrun_id),
            Some(Setup::Preparing { .. })
        )
    }
}

impl Assignments {
    /// A preparation ended: the Testrun's queued tests may start, or, after
    /// a failure, are released, its `SetupFinished` first.
    pub(super) fn prepared(
        &mut self,
        now: Instant,
        preparation: Preparation,
        out: &mut Vec<Action>,
    ) {
        let Preparation { base, report } = preparation;
        let testrun_id = report.testrun_id;
        let Some(Setup::Preparing { announced }) = self.setups.by_testrun.get(&testrun_id) else {
            return;
        };
        let announced = *announced;
        let ok = base.is_some();
        match base {
            Some(base) => {
                self.setups
                    .by_testrun
                    .insert(testrun_id, Setup::Ready(base));
            }
            None => {
                tracing::warn!(testrun_id, error = %report.error, "set-up failed; releasing the Testrun's tests");
                self.setups.by_testrun.insert(testrun_id, Setup::Failed);
            }
        }
        // A failure is always said, even for a Testrun whose first
        // preparation was announced on an earlier occasion.
        if announced || !ok {
            let up = self.batch().is_some();
            if up {
                out.push(Action::Send(Out::SetupFinished(report.clone())));
            }
            self.setups.reports.insert(testrun_id, (report, up));
        }
        let batch = self.batch();
        let ids: Vec<String> = self
            .queue
            .iter()
            .filter(|id| {
                self.held
                    .get(*id)
                    .is_some_and(|a| a.testrun_id == testrun_id)
            })
            .cloned()
            .collect();
        for id in ids {
            let Some(a) = self.held.get_mut(&id) else {
                continue;
            };
            if ok {
                // Its wait for a slot starts now (`--queue-wait`).
                a.since = now;
            } else if a.unqueue(Final::Released) {
                self.queue.retain(|q| *q != id);
                if let Some(batch) = batch {
                    a.flush(&id, batch, out);
                }
            }
        }
        if !ok {
            self.setups_unused(testrun_id);
        }
        self.start_queued(out);
    }

    /// Whether a queued job must still wait for its workspace.
    pub(super) fn waits_for_setup(&self, state: &State, testrun_id: i64) -> bool {
        matches!(state, State::Queued(job) if job.wants_workspace)
            && self.setups.ready(testrun_id).is_none()
    }

    /// The prepared workspace a job starting now runs in.
    pub(super) fn workspace_for(&self, testrun_id: i64) -> Option<Prepared> {
        self.setups.ready(testrun_id).cloned()
    }

    /// Once nothing of a Testrun is held, its prepared workspace is no
    /// longer kept for it.
    pub(super) fn setups_unused(&mut self, testrun_id: i64) {
        if !matches!(
            self.setups.by_testrun.get(&testrun_id),
            Some(Setup::Ready(_))
        ) {
            return;
        }
        if self.held.values().any(|a| a.testrun_id == testrun_id) {
            return;
        }
        self.setups.by_testrun.insert(testrun_id, Setup::Idle);
    }

    /// Whether a Testrun's workspace is being prepared here.
    pub fn preparing(&self, testrun_id: i64) -> bool {
        self.setups.preparing(testrun_id)
    }
}
