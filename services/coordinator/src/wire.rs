//! Domain types to wire types (the public API's messages). A leaf above
//! the domain: the engine's watch and the adapters both build messages.

use std::time::{Duration, UNIX_EPOCH};
use testrunner_proto::v1 as pb;

use testrunner_proto::millis;

use crate::domain::cases::{CaseCounts, CaseStatus, NewCase, StoredCase, storable};
use crate::domain::{Counts, LogLine, Millis, Test, TestStatus, Testrun, TestrunStatus};

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
        // Filled once retries land (FLAKY tests).
        flaky: 0,
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
        // Filled once per-attempt records land.
        attempts: Vec::new(),
        expected_duration: t.expected_ms.map(millis),
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
        test_memory_bytes: r.limits.memory_bytes.map(|n| n.max(0) as u64),
        test_pids: r.limits.pids.map(|n| n.clamp(0, u32::MAX.into()) as u32),
        suite: r.suite.clone(),
        selector: r.selector.clone().into_iter().collect(),
        waiting: r.waiting.clone(),
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

/// A listed runner on the wire.
pub fn runner_info(v: &crate::domain::fleet::RunnerView) -> pb::RunnerInfo {
    pb::RunnerInfo {
        id: v.info.id.clone(),
        name: v.info.name.clone(),
        labels: v.info.labels.clone().into_iter().collect(),
        slots: v.info.slots.max(0) as u32,
        version: v.info.version.clone(),
        running: v
            .running
            .iter()
            .map(|t| pb::RunnerTest {
                testrun_id: t.testrun_id,
                test_id: t.test_id,
                name: t.name.clone(),
                started_at: t.started_at.map(timestamp),
            })
            .collect(),
        draining: v.draining,
        registered_at: Some(timestamp(v.registered_at)),
        lease_until: Some(timestamp(v.lease_until)),
        token_name: v.info.token_name.clone(),
    }
}

/// An issued runner token on the wire (never its secret).
pub fn runner_token(t: &crate::domain::fleet::RunnerToken) -> pb::RunnerToken {
    pb::RunnerToken {
        name: t.name.clone(),
        created_at: Some(timestamp(t.created_at)),
        revoked_at: t.revoked_at.map(timestamp),
        last_used_at: t.last_used_at.map(timestamp),
    }
}

/// A recorded outcome on the wire. Its status is stored as the wire
/// enum's name, so any status reads back (FLAKY included).
pub fn outcome(o: &crate::domain::history::Outcome) -> pb::TestOutcome {
    use crate::domain::workspace::parse_blob_key;
    pb::TestOutcome {
        testrun_id: o.testrun_id,
        test_id: o.test_id,
        status: pb::test::Status::from_str_name(&o.status).unwrap_or(pb::test::Status::Unspecified)
            as i32,
        attempts: o.attempts.max(0) as u32,
        duration: o.duration_ms.map(millis),
        runner: o.runner_name.clone().unwrap_or_default(),
        workspace: o.workspace.as_deref().map(|w| {
            let (hash, size_bytes) = parse_blob_key(w);
            pb::Digest { hash, size_bytes }
        }),
        finished_at: Some(timestamp(o.finished_at)),
    }
}

/// A test's history on the wire.
pub fn test_history(h: &crate::domain::history::TestHistory) -> pb::GetTestHistoryResponse {
    pb::GetTestHistoryResponse {
        suite: h.suite.clone(),
        name: h.stats.name.clone(),
        outcomes: h.outcomes.iter().map(outcome).collect(),
        median: h.stats.median_ms.map(millis),
        samples: h.stats.samples.max(0) as u32,
        flaky: !h.flipped_in.is_empty(),
        flipped_in: h.flipped_in.clone(),
    }
}

/// A suite in the list on the wire.
pub fn suite_summary(s: &crate::domain::history::SuiteSummary) -> pb::SuiteSummary {
    let n = |v: i64| v.clamp(0, u32::MAX as i64) as u32;
    pb::SuiteSummary {
        name: s.name.clone(),
        tests: n(s.tests),
        testruns: n(s.testruns),
        last_run_at: Some(timestamp(s.last_run_at)),
        flaky_tests: n(s.flaky_tests),
    }
}

fn suite_test(t: &crate::domain::history::SuiteTest) -> pb::SuiteTest {
    pb::SuiteTest {
        name: t.stats.name.clone(),
        median: t.stats.median_ms.map(millis),
        samples: t.stats.samples.max(0) as u32,
        flips: t.stats.flips.max(0) as u32,
        flipped_in: t.flipped_in.clone(),
        last: t.last.iter().map(outcome).collect(),
    }
}

/// A suite's page on the wire (its Testruns without tests).
pub fn suite(s: &crate::domain::history::Suite) -> pb::Suite {
    pb::Suite {
        summary: Some(suite_summary(&s.summary)),
        slowest: s.slowest.iter().map(suite_test).collect(),
        flakiest: s.flakiest.iter().map(suite_test).collect(),
        testruns: s.testruns.iter().map(testrun).collect(),
    }
}
