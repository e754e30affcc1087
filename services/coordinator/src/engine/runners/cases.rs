//! JUnit test cases from runners (runner.proto rule 11): checked, stored
//! exactly once (a resend overlapping what is stored is dropped by the
//! store), acknowledged, and announced to watchers as the test and Testrun
//! with their new counts.

use testrunner_proto::v1::{self as pb, Cancel, CasesAck, coordinator_message::Message as Out};

use super::{Runners, known};
use crate::domain::cases::{check_batch, storable_note};
use crate::engine::dispatch::Session;
use crate::error::Result;
use crate::live::hub::{ListEvent, RunEvent};
use crate::store::CasesOutcome;
use crate::wire;

impl Runners {
    /// Stores a batch of one assignment's cases and acknowledges it. The
    /// stream's next message (its `Finished`, say) is read only after this,
    /// so the cases are stored before the result.
    pub async fn on_cases(&self, session: &Session, cases: pb::Cases) -> Result<()> {
        let held = known(session, &cases.assignment_id, "cases")?;
        check_batch(cases.first_index, cases.cases.len(), cases.total)?;
        let end = cases.first_index + cases.cases.len() as u32;
        if held.revoked {
            // Acknowledge and drop: the runner can forget these cases.
            session
                .send(Out::CasesAck(CasesAck {
                    assignment_id: cases.assignment_id,
                    next_index: end,
                }))
                .await;
            return Ok(());
        }
        let first = i64::from(cases.first_index);
        let checked = cases
            .cases
            .into_iter()
            .enumerate()
            .map(|(i, c)| wire::new_case(c, first + i as i64))
            .collect::<Result<Vec<_>>>()?;
        let outcome = self
            .store
            .store_cases(
                &cases.assignment_id,
                first,
                &checked,
                &storable_note(&cases.note),
            )
            .await?;
        match outcome {
            CasesOutcome::Stored {
                next_index,
                inserted,
                test,
                testrun,
            } => {
                tracing::debug!(assignment_id = %cases.assignment_id, inserted, next_index, "cases stored");
                if inserted > 0 || !cases.note.is_empty() {
                    self.hub.publish(testrun.id, RunEvent::Test(*test));
                    self.hub
                        .publish(testrun.id, RunEvent::Testrun((*testrun).clone()));
                    self.hub.publish_list(ListEvent::Changed(*testrun));
                }
                session
                    .send(Out::CasesAck(CasesAck {
                        assignment_id: cases.assignment_id,
                        next_index: next_index.clamp(0, i64::from(u32::MAX)) as u32,
                    }))
                    .await;
            }
            CasesOutcome::Refused => {
                // Moved elsewhere (lease ran out) or deleted: stop it.
                session.revoke(&cases.assignment_id);
                session
                    .send(Out::Cancel(Cancel {
                        assignment_id: cases.assignment_id,
                        reason: "assignment no longer held by this runner".into(),
                        forget: true,
                    }))
                    .await;
            }
        }
        Ok(())
    }
}
