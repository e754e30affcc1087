//! Domain types to wire types (the public API's messages). A leaf above
//! the domain: the engine's watch and the adapters both build messages.

use std::time::{Duration, UNIX_EPOCH};
use testrunner_proto::v1 as pb;

use testrunner_proto::millis;

use crate::domain::cases::{CaseCounts, CaseStatus, NewCase, StoredCase, storable};
use crate::domain::{Attempt, Counts, LogLine, Millis, Test, TestStatus, Testrun, TestrunStatus};

/// A stored time (Unix milliseconds) on the wire.
fn timestamp(ms: Millis) -> prost_types::Timestamp {
    (UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).into()
}

/// The wire enum of a Testrun status.
pub fn testrun_status(s: TestrunStatus) -> pb::testrun::Status {
    use pb::testrun::Status as P;
    match s {
        TestrunStatus::Created => P::Created,
        TestrunStatus::Running => P::Running,
        TestrunStatus::Failed => P::Failed,
        TestrunStatus::Success => P::Success,
        TestrunStatus::Cancelled => P::Cancelled,
    }
}

/// The domain status of a wire enum value, if it names one.
pub fn testrun_status_from(value: i32) -> Option<TestrunStatus> {
    use pb::testrun::Status as P;
    match P::try_from(value).ok()? {
        P::Unspecified => None,
        P::Created => Some(TestrunStatus::Created),
        P::Running => Some(TestrunStatus::Running),
        P::Failed => Some(TestrunStatus::Failed),
        P::Success => Some(TestrunStatus::Success),
        P::Cancelled => Some(TestrunStatus::Cancelled),
    }
}

fn test_status(s: TestStatus) -> pb::test::Status {
    use pb::test::Status as P;
    match s {
        TestStatus::Queued => P::Queued,
        TestStatus::Running => P::Running,
        TestStatus::Passed => P::Passed,
        TestStatus::Failed => P::Failed,
        TestStatus::TimedOut => P::TimedOut,
        TestStatus::Cancelled => P::Cancelled,
        TestStatus::Error => P::Error,
        TestStatus::Flaky => P::Flaky,
    }
}

fn counts(c: &Counts) -> pb::TestCounts {
    let n = |v: i64| v.max(0) as u32;
    pb::TestCounts {
        total: n(c.total),
        queued: n(c.queued()),
        running: n(c.running),
        passed: n(c.passed),
        failed: n(c.failed),
        cancelled: n(c.cancelled),
        flaky: n(c.flaky),
    }
}

/// A test on the wire.
pub fn test(t: &Test) -> pb::Test {
    pb::Test {
        id: t.id,
        name: t.name.clone(),
        status: test_status(t.status) as i32,
        attempt: t.attempt.max(0) as u32,
        runner: t.runner_name.clone().unwrap_or_default(),
        exit_code: t.exit_code,
        started_at: t.started_at.map(timestamp),
        finished_at: t.finished_at.map(timestamp),
        duration: t.duration_ms.map(millis),
        error: t.error.clone(),
        log_lines: t.log_lines.max(0) as u64,
        size_bytes: t.size_bytes.max(0) as u64,
        cases: Some(case_counts(&t.cases)),
        note: t.note.clone(),
        attempts: t.attempts.iter().map(attempt).collect(),
        // Filled once durations land.
        expected_duration: None,
    }
}

/// One run of a test on the wire.
pub fn attempt(a: &Attempt) -> pb::Attempt {
    pb::Attempt {
        attempt: a.attempt.max(0) as u32,
        status: test_status(a.status) as i32,
        runner: a.runner_name.clone(),
        exit_code: a.exit_code,
        started_at: a.started_at.map(timestamp),
        finished_at: a.finished_at.map(timestamp),
        duration: a.duration_ms.map(millis),
        error: a.error.clone(),
    }
}

/// A Testrun on the wire, with whatever tests it was loaded with.
pub fn testrun(r: &Testrun) -> pb::Testrun {
    pb::Testrun {
        id: r.id,
        username: r.username.clone(),
        status: testrun_status(r.status) as i32,
        tests: r.tests.iter().map(test).collect(),
        counts: Some(counts(&r.counts)),
        created_at: Some(timestamp(r.created_at)),
        started_at: r.started_at.map(timestamp),
        finished_at: r.finished_at.map(timestamp),
        command: r.command.clone(),
        timeout_seconds: (r.timeout_ms / 1000).max(0) as u32,
        cases: Some(case_counts(&r.cases)),
        retries: r.retries.max(0) as u32,
        rerun_of: r.rerun_of,
        ..pb::Testrun::default()
    }
}

/// Consecutive lines of one test as one wire event.
pub fn log_lines(test_name: &str, lines: &[LogLine]) -> pb::LogLines {
    pb::LogLines {
        test_id: lines.first().map_or(0, |l| l.test_id),
        test_name: test_name.to_owned(),
        attempt: lines.first().map_or(0, |l| l.attempt.max(0) as u32),
        first_line: lines.first().map_or(0, |l| l.line_no.max(0) as u64),
        lines: lines.iter().map(|l| l.text.clone()).collect(),
    }
}

/// Case counts on the wire.
pub fn case_counts(c: &CaseCounts) -> pb::CaseCounts {
    let n = |v: i64| v.clamp(0, u32::MAX as i64) as u32;
    pb::CaseCounts {
        total: n(c.total),
        passed: n(c.passed),
        failed: n(c.failed),
        errored: n(c.errored),
        skipped: n(c.skipped),
    }
}

/// The wire enum of a case status.
pub fn case_status(s: CaseStatus) -> pb::test_case::Status {
    use pb::test_case::Status as P;
    match s {
        CaseStatus::Passed => P::Passed,
        CaseStatus::Failed => P::Failed,
        CaseStatus::Error => P::Error,
        CaseStatus::Skipped => P::Skipped,
    }
}

/// The domain status of a wire case status, if it names one.
pub fn case_status_from(value: i32) -> Option<CaseStatus> {
    use pb::test_case::Status as P;
    match P::try_from(value).ok()? {
        P::Unspecified => None,
        P::Passed => Some(CaseStatus::Passed),
        P::Failed => Some(CaseStatus::Failed),
        P::Error => Some(CaseStatus::Error),
        P::Skipped => Some(CaseStatus::Skipped),
    }
}

/// A stored case on the wire.
pub fn test_case(c: &StoredCase) -> pb::TestCase {
    let case = &c.case;
    pb::TestCase {
        test_id: c.test_id,
        test_name: c.test_name.clone(),
        attempt: c.attempt.max(0) as u32,
        index: case.index.clamp(0, u32::MAX as i64) as u32,
        suite: case.suite.clone(),
        classname: case.classname.clone(),
        name: case.name.clone(),
        file: case.file.clone(),
        line: case.line.map(|l| l.max(0) as u32),
        status: case_status(case.status) as i32,
        duration: case.duration_ms.map(millis),
        message: case.message.clone(),
        details: case.details.clone(),
        system_out: case.system_out.clone(),
        system_err: case.system_err.clone(),
    }
}

/// A runner's case, checked and made storable; `index` is its position in
/// the report (the batch's `first_index` plus its place in the batch).
pub fn new_case(c: pb::TestCase, index: i64) -> crate::error::Result<NewCase> {
    let status = case_status_from(c.status).ok_or_else(|| {
        crate::error::Error::invalid(
            format!("cases.cases[{index}].status"),
            format!("{} is not a case status", c.status),
        )
    })?;
    let duration_ms = c
        .duration
        .and_then(|d| Duration::try_from(d).ok())
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64);
    Ok(NewCase {
        index,
        status,
        suite: storable(c.suite),
        classname: storable(c.classname),
        name: storable(c.name),
        file: storable(c.file),
        line: c.line.map(|l| l.min(i32::MAX as u32) as i32),
        duration_ms,
        message: storable(c.message),
        details: storable(c.details),
        system_out: storable(c.system_out),
        system_err: storable(c.system_err),
    })
}
/// Adds a Testrun's workspace, set-up, env and set-up steps (issue 14).
pub fn add_workspace(
    pb_run: &mut pb::Testrun,
    ws: &crate::domain::workspace::TestrunWorkspace,
    setups: &[crate::domain::workspace::Setup],
) {
    use crate::domain::workspace::parse_blob_key;
    pb_run.workspace = ws.workspace.as_ref().map(|w| {
        let (hash, size_bytes) = parse_blob_key(&w.digest);
        pb::Workspace {
            digest: Some(pb::Digest { hash, size_bytes }),
            files: w.files.max(0) as u64,
            bytes: w.bytes.max(0) as u64,
        }
    });
    pb_run.setup = ws.setup.clone();
    pb_run.env = ws.env.clone().into_iter().collect();
    pb_run.setup_timeout_seconds = if ws.setup.is_some() {
        (ws.setup_timeout_ms / 1000).max(0) as u32
    } else {
        0
    };
    pb_run.setups = setups.iter().map(setup).collect();
}

/// A runner's set-up step on the wire.
pub fn setup(s: &crate::domain::workspace::Setup) -> pb::Setup {
    use crate::domain::workspace::SetupStatus;
    pb::Setup {
        runner: s.runner_name.clone(),
        status: match s.status {
            SetupStatus::Running => pb::setup::Status::Running,
            SetupStatus::Passed => pb::setup::Status::Passed,
            SetupStatus::Failed => pb::setup::Status::Failed,
        } as i32,
        exit_code: s.exit_code,
        duration: s.duration_ms.map(testrunner_proto::millis),
        error: s.error.clone(),
        output: s.output.clone(),
        reused: s.reused,
        started_at: Some(timestamp(s.started_at)),
        finished_at: s.finished_at.map(timestamp),
    }
}
