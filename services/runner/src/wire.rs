//! The protocol's messages as the runner builds and reads them: plain
//! conversions between `testrunner.v1` messages and the runner's own types,
//! with the defaults and limits that apply to them.

use std::time::Duration;

use testrunner_proto::v1::{
    Assign, Drain, Finished, Heartbeat, Logs, Outcome, ProtocolVersion, Register, Release,
    SetupStarted, Welcome, runner_message::Message as Out,
};

use crate::exec::{Job, Report};
use crate::outbox::BatchLimit;

/// How long a test may run when its `Assign` sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The heartbeat interval when the `Welcome` sets none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3);

/// What this runner says about itself in every `Register`.
#[derive(Debug, Clone)]
pub struct Identity {
    pub instance_id: String,
    pub name: String,
    /// Its `--label`s, already checked (`Config::label_map`).
    pub labels: std::collections::BTreeMap<String, String>,
    pub slots: u32,
    pub queue: u32,
}

/// The first message of a stream, listing the assignments still held
/// (rule 7).
pub fn register(me: &Identity, resume: Vec<String>) -> Out {
    Out::Register(Register {
        instance_id: me.instance_id.clone(),
        name: me.name.clone(),
        labels: me.labels.clone().into_iter().collect(),
        slots: me.slots,
        queue: me.queue,
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: ProtocolVersion::ProtocolVersion1 as i32,
        resume,
    })
}

/// What a `Welcome` sets for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// The coordinator's lease (at least a second), if it says.
    pub lease: Option<Duration>,
    /// Send a heartbeat this often (at least every 50 ms).
    pub heartbeat: Duration,
    /// Logs batches within the coordinator's limits and ours.
    pub batch: BatchLimit,
}

impl Terms {
    /// The terms of `welcome`, with our own batch limits (`--batch-lines`,
    /// `--batch-bytes`) where the coordinator allows more or sets none.
    pub fn of(welcome: &Welcome, ours: BatchLimit) -> Self {
        let lease = welcome
            .lease
            .as_ref()
            .map(|lease| millis(lease).max(Duration::from_secs(1)));
        let heartbeat = welcome
            .heartbeat_interval
            .as_ref()
            .map_or(DEFAULT_HEARTBEAT, millis)
            .max(Duration::from_millis(50));
        // Within the coordinator's limits (0: it sets none).
        let limit_of = |theirs: u32, ours: usize| match theirs {
            0 => ours,
            theirs => ours.min(theirs as usize),
        };
        let batch = BatchLimit {
            lines: limit_of(welcome.max_lines_per_batch, ours.lines).max(1),
            bytes: limit_of(welcome.max_batch_bytes, ours.bytes),
        };
        Self {
            lease,
            heartbeat,
            batch,
        }
    }
}

/// A wire duration as a std one (negative counts as zero).
fn millis(d: &prost_types::Duration) -> Duration {
    Duration::try_from(*d).unwrap_or_default()
}

/// The test an `Assign` asks for.
pub fn job(assign: Assign) -> Job {
    Job {
        timeout: assign.timeout.as_ref().map_or(DEFAULT_TIMEOUT, millis),
        assignment_id: assign.assignment_id,
        name: assign.name,
        content: assign.content,
        command: assign.command,
        attempt: assign.attempt,
        env: assign.env.into_iter().collect(),
        wants_workspace: assign.workspace.is_some(),
        workspace: None,
        // 0: the runner's own limit alone.
        limits: crate::isolation::cgroups::Limits {
            memory: (assign.memory_bytes > 0).then_some(assign.memory_bytes),
            pids: (assign.pids > 0).then_some(u64::from(assign.pids)),
        },
    }
}

/// The result of a test that ran, after its `last_seq` lines.
pub fn finished(assignment_id: &str, report: &Report, last_seq: u64) -> Finished {
    Finished {
        assignment_id: assignment_id.to_owned(),
        outcome: report.outcome as i32,
        exit_code: report.exit_code,
        duration: report.duration.try_into().ok(),
        error: report.error.clone(),
        log_lines: last_seq,
    }
}

/// The result of an assignment that never ran: CANCELLED.
pub fn not_started(assignment_id: &str) -> Finished {
    let report = Report {
        outcome: Outcome::Cancelled,
        exit_code: None,
        duration: Duration::ZERO,
        error: "cancelled before it started".into(),
    };
    finished(assignment_id, &report, 0)
}

pub fn logs(assignment_id: &str, first_seq: u64, lines: Vec<String>) -> Out {
    Out::Logs(Logs {
        assignment_id: assignment_id.to_owned(),
        first_seq,
        lines,
    })
}

pub fn release(assignment_id: &str) -> Out {
    Out::Release(Release {
        assignment_id: assignment_id.to_owned(),
    })
}

pub fn drain() -> Out {
    Out::Drain(Drain {})
}

pub fn setup_started(testrun_id: i64) -> Out {
    Out::SetupStarted(SetupStarted { testrun_id })
}

/// The result of an assignment that could not start (a workspace it
/// names is malformed): ERROR, with why.
pub fn not_runnable(assignment_id: &str, error: String) -> Finished {
    let report = Report {
        outcome: Outcome::Error,
        exit_code: None,
        duration: Duration::ZERO,
        error,
    };
    finished(assignment_id, &report, 0)
}

pub fn heartbeat() -> Out {
    Out::Heartbeat(Heartbeat {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_within_both_sides_limits() {
        let ours = BatchLimit {
            lines: 50_000,
            bytes: 1 << 20,
        };
        let welcome = |lines, bytes| Welcome {
            max_lines_per_batch: lines,
            max_batch_bytes: bytes,
            ..Welcome::default()
        };
        assert_eq!(Terms::of(&welcome(0, 0), ours).batch, ours, "0: no limit");
        assert_eq!(
            Terms::of(&welcome(1_000, 4096), ours).batch,
            BatchLimit {
                lines: 1_000,
                bytes: 4096
            }
        );
        let few = BatchLimit { lines: 0, bytes: 1 };
        assert_eq!(Terms::of(&welcome(10, 0), few).batch.lines, 1);
    }

    #[test]
    fn lease_and_heartbeat_have_floors_and_defaults() {
        let terms = Terms::of(&Welcome::default(), BatchLimit { lines: 1, bytes: 1 });
        assert_eq!(terms.lease, None);
        assert_eq!(terms.heartbeat, DEFAULT_HEARTBEAT);
        let welcome = Welcome {
            lease: Some(testrunner_proto::millis(10)),
            heartbeat_interval: Some(testrunner_proto::millis(1)),
            ..Welcome::default()
        };
        let terms = Terms::of(&welcome, BatchLimit { lines: 1, bytes: 1 });
        assert_eq!(terms.lease, Some(Duration::from_secs(1)));
        assert_eq!(terms.heartbeat, Duration::from_millis(50));
    }

    #[test]
    fn a_job_without_a_timeout_gets_the_default() {
        let job = job(Assign {
            assignment_id: "a".into(),
            name: "t.sh".into(),
            ..Assign::default()
        });
        assert_eq!(
            (job.assignment_id.as_str(), job.timeout),
            ("a", DEFAULT_TIMEOUT)
        );
    }
}
