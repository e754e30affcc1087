//! Storage of Testruns, tests, log lines and runner leases.
//!
//! One trait, two implementations chosen by the URL scheme: Postgres for a
//! fleet (several coordinators may share it), SQLite for zero set-up. Both
//! pass the same integration suite. Times are Unix milliseconds (`BIGINT`) in
//! both, so the two schemas stay alike.
//!
//! The tests table is the dispatch queue: a claim moves QUEUED rows to
//! RUNNING in one transaction and stamps them with an assignment id; every
//! later write about that test names the assignment id, so a result from a
//! runner whose test was moved elsewhere changes nothing.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    Assignment, Bucket, Counts, ListFilter, LogLine, Millis, NewTestrun, RunnerInfo, Test,
    TestResult, TestStatus, Testrun, TestrunStatus,
};
use crate::error::{Error, Result};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// What a cancel did.
#[derive(Debug, Clone)]
pub struct CancelOutcome {
    pub testrun: Testrun,
    /// Assignments still running: their runners must be told to kill them.
    pub running: Vec<RunningAssignment>,
}

/// A test currently held by a runner.
#[derive(Debug, Clone)]
pub struct RunningAssignment {
    pub assignment_id: String,
    pub runner_id: String,
}

/// What storing a batch of log lines did.
#[derive(Debug, Clone)]
pub enum AppendOutcome {
    /// Stored; `lines` are the ones that were new (a resend may overlap).
    Stored { last_seq: i64, lines: Vec<LogLine> },
    /// The assignment is no longer current; nothing was stored.
    Refused,
}

/// What storing a batch of results did.
#[derive(Debug, Clone, Default)]
pub struct FinishOutcome {
    /// Per result, in order: its test, or `None` if the assignment is no
    /// longer current (the result is refused).
    pub tests: Vec<Option<Test>>,
    /// The Testruns the results changed, after them (without tests).
    pub testruns: Vec<Testrun>,
}

/// Finished tests of one Testrun in a batch, by bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FinishedTally {
    finished: i64,
    passed: i64,
    failed: i64,
    cancelled: i64,
}

/// Counts finished tests per Testrun, in Testrun id order (the order
/// Testrun rows are locked in everywhere, after the tests by id).
fn tally_finished(tests: &[Option<Test>]) -> Vec<(i64, FinishedTally)> {
    let mut tallies: Vec<(i64, FinishedTally)> = Vec::new();
    for test in tests.iter().flatten() {
        let i = match tallies.iter().position(|(id, _)| *id == test.testrun_id) {
            Some(i) => i,
            None => {
                tallies.push((test.testrun_id, FinishedTally::default()));
                tallies.len() - 1
            }
        };
        let t = &mut tallies[i].1;
        t.finished += 1;
        match test.status.bucket() {
            Bucket::Passed => t.passed += 1,
            Bucket::Failed => t.failed += 1,
            Bucket::Cancelled => t.cancelled += 1,
            Bucket::Open => {}
        }
    }
    tallies.sort_unstable_by_key(|(id, _)| *id);
    tallies
}

/// What registering a runner (a new stream) did.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The stream's epoch: claims for it must present it.
    pub epoch: i64,
    /// Assignments the runner listed that are still its own.
    pub resumed: Vec<Resumed>,
    /// Testruns whose tests the runner held without knowing (their Assign
    /// was lost) and that were handed back.
    pub requeued: Vec<i64>,
}

/// Why running tests are taken back from their runner.
#[derive(Debug, Clone, Copy)]
pub enum TakeBack {
    /// Handed back, or never delivered: requeue without using an attempt.
    Release,
    /// The runner was lost: the attempt counts; past the last, ERROR.
    Lost { max_attempts: i32 },
}

impl TakeBack {
    /// (whether the attempt counts, the most attempts) for the SQL.
    fn attempts(self) -> (bool, i32) {
        match self {
            Self::Release => (false, i32::MAX),
            Self::Lost { max_attempts } => (true, max_attempts),
        }
    }
}

/// A resumable assignment as both databases return it.
#[derive(Debug, sqlx::FromRow)]
struct ResumeRow {
    assignment_id: String,
    testrun_id: i64,
    name: String,
    cancelled: bool,
}

impl From<ResumeRow> for Resumed {
    fn from(r: ResumeRow) -> Self {
        Resumed {
            assignment_id: r.assignment_id,
            testrun_id: r.testrun_id,
            name: r.name,
            cancelled: r.cancelled,
        }
    }
}

/// Per-Testrun counter changes of tests taken back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    all: i64,
    cancelled: i64,
    errored: i64,
}

/// Groups `(testrun_id, new status)` of tests taken back by Testrun, in id
/// order (the order Testrun rows are locked in).
fn tally_moved(moved: &[(i64, String)]) -> Vec<(i64, Tally)> {
    let mut out: Vec<(i64, Tally)> = Vec::new();
    for (id, status) in moved {
        let i = match out.iter().position(|(r, _)| r == id) {
            Some(i) => i,
            None => {
                out.push((*id, Tally::default()));
                out.len() - 1
            }
        };
        let t = &mut out[i].1;
        t.all += 1;
        t.cancelled += i64::from(status == "CANCELLED");
        t.errored += i64::from(status == "ERROR");
    }
    out.sort_unstable_by_key(|(id, _)| *id);
    out
}

/// Claimed tests per Testrun, in Testrun id order.
fn per_testrun(rows: &[AssignmentRow]) -> Vec<(i64, i64)> {
    let mut per_run: Vec<(i64, i64)> = Vec::new();
    for r in rows {
        match per_run.iter_mut().find(|(id, _)| *id == r.testrun_id) {
            Some((_, count)) => *count += 1,
            None => per_run.push((r.testrun_id, 1)),
        }
    }
    per_run.sort_unstable();
    per_run
}

/// An assignment a reconnecting runner may keep.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub assignment_id: String,
    pub testrun_id: i64,
    /// The test's file name (named in live log events).
    pub name: String,
    /// Its Testrun was cancelled while the runner was away.
    pub cancelled: bool,
}

/// Queue figures for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    pub queued: i64,
    pub running: i64,
    pub oldest_queued_at: Option<Millis>,
}

/// Storage operations the coordinator needs.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a Testrun and all its tests in one transaction.
    async fn create_testrun(&self, run: &NewTestrun, now: Millis) -> Result<Testrun>;
    /// One Testrun, with its tests when asked.
    async fn get_testrun(&self, id: i64, with_tests: bool) -> Result<Option<Testrun>>;
    /// Testruns newest first, with `id < before` when given, and the total
    /// number matching the filter.
    async fn list_testruns(
        &self,
        filter: &ListFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<Testrun>, i64)>;
    /// Cancels a CREATED or RUNNING Testrun and its queued tests.
    async fn cancel_testrun(&self, id: i64, now: Millis) -> Result<CancelOutcome>;
    /// Deletes a Testrun with its tests and logs. The caller cancels first.
    async fn delete_testrun(&self, id: i64) -> Result<()>;

    /// Claims up to `n` queued tests for the runner's stream of `epoch`.
    async fn claim_tests(
        &self,
        runner: &RunnerInfo,
        epoch: i64,
        n: i64,
        now: Millis,
    ) -> Result<Claim>;
    /// Puts an assignment back in the queue without using up an attempt.
    async fn release_assignment(&self, assignment_id: &str, now: Millis) -> Result<Option<i64>>;
    /// Stores a batch of log lines of an assignment, ignoring lines it has.
    async fn append_logs(
        &self,
        assignment_id: &str,
        first_seq: i64,
        lines: &[String],
    ) -> Result<AppendOutcome>;
    /// Stores results (assignment id, result) in one transaction.
    async fn finish_tests(
        &self,
        results: &[(String, TestResult)],
        now: Millis,
    ) -> Result<FinishOutcome>;
    /// Records a runner's new stream (a new epoch) and its lease, keeps the
    /// assignments in `resume` that are still its own, and hands back the
    /// ones it holds without knowing.
    async fn register_runner(
        &self,
        runner: &RunnerInfo,
        lease_until: Millis,
        resume: &[String],
        now: Millis,
    ) -> Result<Registration>;
    /// Extends a runner's lease.
    async fn renew_lease(&self, runner_id: &str, lease_until: Millis) -> Result<()>;
    /// Moves tests of runners whose lease ran out back to the queue (attempt
    /// allowing), to ERROR (attempts used up) or to CANCELLED (their Testrun
    /// was cancelled). Returns the ids of the Testruns touched.
    async fn expire_leases(&self, now: Millis, max_attempts: i32) -> Result<Vec<i64>>;

    /// One test by id, with its Testrun id.
    async fn get_test(&self, test_id: i64) -> Result<Option<Test>>;
    /// One test by its Testrun and name.
    async fn find_test(&self, testrun_id: i64, name: &str) -> Result<Option<Test>>;
    /// Lines of a Testrun's log stream after `after` (a run_seq), in order.
    async fn read_run_log(&self, testrun_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>>;
    /// Lines `offset..offset+limit` of one test's log.
    async fn read_test_log(&self, test_id: i64, offset: i64, limit: i64) -> Result<Vec<String>>;
    /// Queue figures for `/metrics`.
    async fn queue_stats(&self) -> Result<QueueStats>;

    /// The Postgres pool, when other coordinators may share the database.
    fn shared_pool(&self) -> Option<sqlx::PgPool> {
        None
    }
}

/// Opens the store the URL names, creating and migrating it as needed.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, anyhow::Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        anyhow::bail!(
            "database url {url:?}: expected postgres://... or sqlite://path (see --database-url)"
        )
    }
}

/// A Testrun row as both databases return it.
#[derive(Debug, sqlx::FromRow)]
struct TestrunRow {
    id: i64,
    username: String,
    status: String,
    command: Option<String>,
    timeout_ms: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    tests_total: i64,
    tests_running: i64,
    tests_passed: i64,
    tests_failed: i64,
    tests_cancelled: i64,
    log_seq: i64,
}

impl TestrunRow {
    fn into_domain(self) -> Result<Testrun> {
        Ok(Testrun {
            id: self.id,
            username: self.username,
            status: TestrunStatus::parse(&self.status)
                .ok_or_else(|| corrupt("testruns.status", &self.status))?,
            command: self.command,
            timeout_ms: self.timeout_ms,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            counts: Counts {
                total: self.tests_total,
                running: self.tests_running,
                passed: self.tests_passed,
                failed: self.tests_failed,
                cancelled: self.tests_cancelled,
            },
            log_seq: self.log_seq,
            tests: Vec::new(),
        })
    }
}

/// Columns of `TestrunRow`, in one place for every query that reads it (a
/// macro so queries stay `&'static str` for `concat!`).
macro_rules! testrun_columns {
    () => {
        "id, username, status, command, timeout_ms, created_at, started_at, finished_at, \
         tests_total, tests_running, tests_passed, tests_failed, tests_cancelled, log_seq"
    };
}

/// A test row (without content) as both databases return it.
#[derive(Debug, sqlx::FromRow)]
struct TestRow {
    id: i64,
    testrun_id: i64,
    name: String,
    status: String,
    attempt: i32,
    runner_name: Option<String>,
    exit_code: Option<i32>,
    error: String,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    duration_ms: Option<i64>,
    log_lines: i64,
    size_bytes: i64,
}

impl TestRow {
    fn into_domain(self) -> Result<Test> {
        Ok(Test {
            id: self.id,
            testrun_id: self.testrun_id,
            status: TestStatus::parse(&self.status)
                .ok_or_else(|| corrupt("tests.status", &self.status))?,
            name: self.name,
            attempt: self.attempt,
            runner_name: self.runner_name,
            exit_code: self.exit_code,
            error: self.error,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_ms: self.duration_ms,
            log_lines: self.log_lines,
            size_bytes: self.size_bytes,
        })
    }
}

/// Columns of `TestRow`.
macro_rules! test_columns {
    () => {
        "id, testrun_id, name, status, attempt, runner_name, exit_code, error, started_at, \
         finished_at, duration_ms, log_lines, size_bytes"
    };
}

/// An assignment as a claim returns it.
#[derive(Debug, sqlx::FromRow)]
struct AssignmentRow {
    assignment_id: String,
    testrun_id: i64,
    test_id: i64,
    name: String,
    content: String,
    attempt: i32,
    queued_at: i64,
    log_lines: i64,
    size_bytes: i64,
}

/// What a claim took: the assignments, and the Testruns they belong to as
/// they are after the claim (status RUNNING, counts updated).
#[derive(Debug, Clone, Default)]
pub struct Claim {
    pub assignments: Vec<Assignment>,
    pub testruns: Vec<Testrun>,
    /// Assignment ids taken from Testruns cancelled meanwhile: the store
    /// cancels them instead of handing them out.
    pub cancelled: Vec<String>,
    /// The stream the claim was for has been replaced (a newer epoch).
    pub stale: bool,
}

impl Claim {
    fn stale() -> Self {
        Self {
            stale: true,
            ..Self::default()
        }
    }
}

fn claimed(rows: Vec<AssignmentRow>, runs: Vec<TestrunRow>) -> Result<Claim> {
    let testruns: Vec<Testrun> = runs
        .into_iter()
        .map(TestrunRow::into_domain)
        .collect::<Result<_>>()?;
    let is_cancelled = |id: i64| {
        testruns
            .iter()
            .any(|r| r.id == id && r.status == TestrunStatus::Cancelled)
    };
    let (mut rows, dropped): (Vec<AssignmentRow>, Vec<AssignmentRow>) =
        rows.into_iter().partition(|r| !is_cancelled(r.testrun_id));
    // In queue order: `UPDATE … RETURNING` returns rows in no particular
    // order, and a runner starts what waits in its queue in the order it
    // came.
    rows.sort_unstable_by_key(|r| (r.testrun_id, r.test_id));
    let cancelled = dropped.into_iter().map(|r| r.assignment_id).collect();
    let assignments = rows
        .into_iter()
        .map(|r| {
            let s = testruns.iter().find(|s| s.id == r.testrun_id);
            Assignment {
                assignment_id: r.assignment_id,
                testrun_id: r.testrun_id,
                test_id: r.test_id,
                name: r.name,
                content: r.content,
                command: s.and_then(|s| s.command.clone()),
                timeout_ms: s.map_or(0, |s| s.timeout_ms),
                attempt: r.attempt,
                queued_at: r.queued_at,
                log_lines: r.log_lines,
                size_bytes: r.size_bytes,
            }
        })
        .collect();
    Ok(Claim {
        assignments,
        testruns,
        cancelled,
        stale: false,
    })
}

/// A stored log line as both databases return it.
#[derive(Debug, sqlx::FromRow)]
struct LogLineRow {
    test_id: i64,
    attempt: i32,
    line_no: i64,
    run_seq: i64,
    line: String,
}

impl From<LogLineRow> for LogLine {
    fn from(r: LogLineRow) -> Self {
        LogLine {
            test_id: r.test_id,
            attempt: r.attempt,
            line_no: r.line_no,
            run_seq: r.run_seq,
            text: r.line,
        }
    }
}

/// The lines a batch stored, numbered as they were stored.
fn stored_lines(cursor: &LogCursorRow, run_start: i64, texts: Vec<String>) -> Vec<LogLine> {
    texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| LogLine {
            test_id: cursor.id,
            attempt: cursor.attempt,
            line_no: cursor.log_lines + i as i64,
            run_seq: run_start + i as i64,
            text,
        })
        .collect()
}

/// A cancel's outcome from the Testrun and its `(assignment, runner)` pairs
/// still running.
fn cancel_outcome(testrun: Testrun, running: Vec<(String, String)>) -> CancelOutcome {
    CancelOutcome {
        testrun,
        running: running
            .into_iter()
            .map(|(assignment_id, runner_id)| RunningAssignment {
                assignment_id,
                runner_id,
            })
            .collect(),
    }
}

/// The state of an assignment's test, read before storing its log lines.
#[derive(Debug, sqlx::FromRow)]
struct LogCursorRow {
    id: i64,
    testrun_id: i64,
    attempt: i32,
    log_seq: i64,
    log_lines: i64,
}

/// Works out which lines of a batch are new, given the last stored `seq`.
/// A batch that starts past `last_seq + 1` would leave a gap: a protocol
/// violation.
fn new_lines(last_seq: i64, first_seq: i64, lines: &[String]) -> Result<&[String]> {
    if first_seq < 1 {
        return Err(Error::invalid("logs.first_seq", "must be at least 1"));
    }
    if first_seq > last_seq + 1 {
        return Err(Error::invalid(
            "logs.first_seq",
            format!("{first_seq} leaves a gap: the last line stored is {last_seq}"),
        ));
    }
    let skip = ((last_seq + 1 - first_seq) as usize).min(lines.len());
    Ok(&lines[skip..])
}

/// The Testrun status once every test has a result, if it is now decided.
fn decided_status(current: TestrunStatus, counts: &Counts) -> Option<TestrunStatus> {
    if current != TestrunStatus::Running || counts.done() < counts.total {
        return None;
    }
    Some(if counts.passed == counts.total {
        TestrunStatus::Success
    } else {
        TestrunStatus::Failed
    })
}

fn corrupt(column: &str, value: &str) -> Error {
    Error::Internal(anyhow::anyhow!("unexpected value {value:?} in {column}"))
}

/// Postgres text cannot hold NUL; neither store keeps it, so they agree.
fn sanitize_line(line: &str) -> String {
    if line.contains('\0') {
        line.replace('\0', "\u{FFFD}")
    } else {
        line.to_owned()
    }
}

mod postgres;
mod sqlite;

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("l{i}")).collect()
    }

    #[test]
    fn a_resend_that_overlaps_stored_lines_keeps_only_the_new_ones() {
        let batch = lines(5);
        assert_eq!(new_lines(3, 2, &batch).unwrap(), &batch[2..]);
        assert_eq!(new_lines(0, 1, &batch).unwrap(), &batch[..]);
        assert!(new_lines(10, 1, &batch).unwrap().is_empty());
    }

    #[test]
    fn a_batch_past_the_next_line_is_a_gap() {
        assert!(new_lines(3, 5, &lines(1)).is_err());
        assert!(new_lines(0, 0, &lines(1)).is_err());
    }

    #[test]
    fn tests_taken_back_are_tallied_per_testrun_in_id_order() {
        let moved = [
            (7, "QUEUED".to_owned()),
            (3, "ERROR".to_owned()),
            (7, "CANCELLED".to_owned()),
        ];
        let t = tally_moved(&moved);
        assert_eq!(t.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [3, 7]);
        assert_eq!(
            t[0].1,
            Tally {
                all: 1,
                cancelled: 0,
                errored: 1
            }
        );
        assert_eq!(
            t[1].1,
            Tally {
                all: 2,
                cancelled: 1,
                errored: 0
            }
        );
    }

    #[test]
    fn results_are_tallied_per_testrun_in_id_order_and_refused_ones_skipped() {
        let test = |testrun_id, status| {
            Some(Test {
                id: 1,
                testrun_id,
                name: "t".into(),
                status,
                attempt: 1,
                runner_name: None,
                exit_code: None,
                error: String::new(),
                started_at: None,
                finished_at: None,
                duration_ms: None,
                log_lines: 0,
                size_bytes: 0,
            })
        };
        let tests = [
            test(9, TestStatus::Passed),
            None,
            test(4, TestStatus::TimedOut),
            test(9, TestStatus::Cancelled),
            test(9, TestStatus::Passed),
        ];
        let t = tally_finished(&tests);
        assert_eq!(
            t,
            [
                (
                    4,
                    FinishedTally {
                        finished: 1,
                        passed: 0,
                        failed: 1,
                        cancelled: 0
                    }
                ),
                (
                    9,
                    FinishedTally {
                        finished: 3,
                        passed: 2,
                        failed: 0,
                        cancelled: 1
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_testrun_is_decided_only_when_every_test_has_a_result() {
        let mut c = Counts {
            total: 2,
            running: 1,
            passed: 1,
            ..Counts::default()
        };
        assert_eq!(decided_status(TestrunStatus::Running, &c), None);
        c.running = 0;
        c.passed = 2;
        assert_eq!(
            decided_status(TestrunStatus::Running, &c),
            Some(TestrunStatus::Success)
        );
        c.passed = 1;
        c.failed = 1;
        assert_eq!(
            decided_status(TestrunStatus::Running, &c),
            Some(TestrunStatus::Failed)
        );
        assert_eq!(decided_status(TestrunStatus::Cancelled, &c), None);
    }
}
