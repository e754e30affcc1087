//! Log lines from runners: checked against the limits, stored exactly once
//! (a resend overlapping what is stored is dropped by the store), published
//! to watchers as one pre-encoded event, then acknowledged.

use std::sync::Arc;

use testrunner_proto::v1::{self as pb, Cancel, LogAck, coordinator_message::Message as Out};

use super::{Runners, known};
use crate::config::RunnerSettings;
use crate::domain::LogLine;
use crate::engine::dispatch::Session;
use crate::error::{Error, Result};
use crate::live::frame::SharedEvent;
use crate::live::hub::RunEvent;
use crate::store::AppendOutcome;
use crate::wire;

/// Largest batch sent to watchers as one prebuilt event.
const MAX_SHARED_EVENT_BYTES: usize = 4 << 20;

impl Runners {
    /// Stores a batch of one assignment's lines and acknowledges it.
    pub async fn on_logs(&self, session: &Session, logs: pb::Logs) -> Result<()> {
        let held = known(session, &logs.assignment_id, "logs")?;
        if logs.lines.len() > self.settings.max_lines_per_batch as usize {
            return Err(Error::invalid(
                "logs.lines",
                format!(
                    "{} lines is more than the limit of {} per batch",
                    logs.lines.len(),
                    self.settings.max_lines_per_batch
                ),
            ));
        }
        let max_line = self.settings.max_line_bytes as usize;
        if let Some(i) = logs.lines.iter().position(|l| l.len() > max_line) {
            return Err(Error::invalid(
                format!("logs.lines[{i}]"),
                format!("longer than the limit of {max_line} bytes"),
            ));
        }
        let last_sent = (logs.first_seq + logs.lines.len() as u64).saturating_sub(1);
        if held.revoked {
            // Acknowledge and drop: the runner can forget these lines.
            session
                .send(Out::LogAck(LogAck {
                    assignment_id: logs.assignment_id,
                    seq: last_sent,
                }))
                .await;
            return Ok(());
        }
        let outcome = self
            .store
            .append_logs(&logs.assignment_id, logs.first_seq as i64, &logs.lines)
            .await?;
        match outcome {
            AppendOutcome::Stored { last_seq, lines } => {
                self.metrics.lines_ingested(lines.len());
                if let (Some(first), Some(last)) = (lines.first(), lines.last()) {
                    self.hub.publish(
                        held.testrun_id,
                        RunEvent::Log {
                            first_seq: first.run_seq,
                            last_seq: last.run_seq,
                            encoded: encoded_log_event(&held.name, &lines),
                        },
                    );
                }
                session
                    .send(Out::LogAck(LogAck {
                        assignment_id: logs.assignment_id,
                        seq: last_seq as u64,
                    }))
                    .await;
            }
            AppendOutcome::Refused => {
                // Moved elsewhere (lease ran out) or deleted: stop it.
                session.revoke(&logs.assignment_id);
                session
                    .send(Out::Cancel(Cancel {
                        assignment_id: logs.assignment_id,
                        reason: "assignment no longer held by this runner".into(),
                        forget: true,
                    }))
                    .await;
            }
        }
        Ok(())
    }
}

/// Line bytes a Logs batch may hold and still fit the message size limit
/// with its other fields and per-line framing (a tag and a length each),
/// and well within what watchers are sent as one shared event.
pub fn max_batch_bytes(settings: &RunnerSettings) -> u32 {
    let framing_per_line =
        1 + prost::encoding::encoded_len_varint(u64::from(settings.max_line_bytes));
    let framing = settings.max_lines_per_batch as usize * framing_per_line + 1024;
    settings
        .max_runner_message_bytes
        .saturating_sub(framing)
        .min(MAX_SHARED_EVENT_BYTES / 2)
        .clamp(1, u32::MAX as usize) as u32
}

/// The wire event every caught-up watcher sends for these lines, encoded
/// once as a whole gRPC message: with hundreds of watchers, encoding per
/// watcher was most of the coordinator's fan-out work (bench scenario 5).
fn encoded_log_event(test_name: &str, lines: &[LogLine]) -> Option<Arc<SharedEvent>> {
    let bytes: usize = lines.iter().map(|l| l.text.len() + 8).sum();
    if bytes > MAX_SHARED_EVENT_BYTES {
        return None;
    }
    let event = pb::TestrunEvent {
        cursor: lines.last()?.run_seq.max(0) as u64,
        event: Some(pb::testrun_event::Event::Log(wire::log_lines(
            test_name, lines,
        ))),
    };
    Some(SharedEvent::new(&event))
}
