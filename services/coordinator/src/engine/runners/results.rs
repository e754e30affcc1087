//! Results and hand-backs from runners. Results a runner sent together are
//! checked here, stored in one transaction by the finisher, then
//! acknowledged, each before its slot can be reused.

use std::sync::Arc;
use std::time::Duration;

use testrunner_proto::v1::{self as pb, ResultAck, coordinator_message::Message as Out};

use super::{Runners, known};
use crate::domain::{RETRY_AVOID_MS, TestResult, TestStatus, now_millis};
use crate::engine::dispatch::Session;
use crate::error::{Error, Result};
use crate::live::hub::RunEvent;

/// Longest error text stored with a result, in characters.
const MAX_ERROR_CHARS: usize = 4096;

impl Runners {
    /// Checks a result: the result to store, or `None` for an assignment
    /// that was revoked (acknowledged as refused, not stored).
    pub fn check_finished(
        session: &Session,
        finished: pb::Finished,
    ) -> Result<(String, Option<TestResult>)> {
        let held = known(session, &finished.assignment_id, "finished")?;
        let status = match pb::Outcome::try_from(finished.outcome) {
            Ok(pb::Outcome::Passed) => TestStatus::Passed,
            Ok(pb::Outcome::Failed) => TestStatus::Failed,
            Ok(pb::Outcome::TimedOut) => TestStatus::TimedOut,
            Ok(pb::Outcome::Cancelled) => TestStatus::Cancelled,
            Ok(pb::Outcome::Error) => TestStatus::Error,
            Ok(pb::Outcome::Unspecified) | Err(_) => {
                return Err(Error::invalid(
                    "finished.outcome",
                    format!("{} is not an outcome", finished.outcome),
                ));
            }
        };
        let duration_ms = finished
            .duration
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64);
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
                .take(MAX_ERROR_CHARS)
                .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
                .collect(),
        });
        Ok((finished.assignment_id, result))
    }

    /// Stores checked results in the background, in one transaction
    /// (`finisher`), then acknowledges them: the stream goes on to its next
    /// message at once.
    pub fn store_results(&self, session: &Arc<Session>, group: Vec<(String, Option<TestResult>)>) {
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
                    Err(error) => {
                        // Some of the group may be stored (a failed batch is
                        // retried one by one): end the stream and the runner
                        // sends them all again on its next one, where the
                        // stored ones are acknowledged as not accepted. No
                        // more work goes to this stream meanwhile.
                        tracing::warn!(runner = %session.info.name, results = group.len(), %error, "storing results failed; closing the stream");
                        session.close();
                        session.close_with(error).await;
                        return;
                    }
                }
            }
            .into_iter();
            // A failure may have been queued for a retry that keeps off
            // this runner for a while: look at the queue again once that
            // ends, or a retry only this runner can take would wait for an
            // unrelated event (there is no polling timer).
            if group
                .iter()
                .any(|(_, r)| r.as_ref().is_some_and(|r| r.status.is_retryable()))
            {
                let dispatcher = Arc::clone(&dispatcher);
                tokio::spawn(async move {
                    let after = Duration::from_millis(RETRY_AVOID_MS as u64 + 50);
                    tokio::time::sleep(after).await;
                    dispatcher.wake();
                });
            }
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

    /// A test the runner hands back unrun: queued again without using an
    /// attempt.
    pub async fn on_release(&self, session: &Session, release: pb::Release) -> Result<()> {
        let held = known(session, &release.assignment_id, "release")?;
        if !held.revoked
            && let Some(testrun_id) = self
                .store
                .release_assignment(&release.assignment_id, now_millis())
                .await?
        {
            tracing::info!(runner = %session.info.name, assignment_id = %release.assignment_id, "assignment handed back");
            self.hub.publish(testrun_id, RunEvent::Resync);
            // A runner whose set-up failed hands the Testrun's tests back
            // after its SetupFinished: if no runner is left that could take
            // them, end them now rather than at the collector's next sweep.
            // (Only then: other hand-backs stay off this query.)
            if session.failed_setup() {
                super::setups::end_stranded(&*self.store, &self.hub).await?;
            }
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
