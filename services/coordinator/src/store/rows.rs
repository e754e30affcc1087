//! Rows as both databases return them, the column lists every query reads
//! them with, and the pure bookkeeping the stores share (tallies of what a
//! statement moved, a claim's assignments).

use const_format::concatcp;

use crate::domain::cases::CaseCounts;
use crate::domain::{
    Assignment, Bucket, Counts, LogLine, Test, TestLimits, TestStatus, Testrun, TestrunStatus,
};
use crate::error::{Error, Result};

use super::contract::{CancelOutcome, Claim, Resumed, RunningAssignment};

/// Columns of `TestrunRow`, in one place for every query that reads it.
pub const TESTRUN_COLUMNS: &str = "id, username, suite, status, command, timeout_ms, created_at, \
     started_at, finished_at, tests_total, tests_running, tests_passed, tests_failed, \
     tests_cancelled, log_seq, cases_total, cases_passed, cases_failed, cases_errored, \
     cases_skipped, test_memory_bytes, test_pids, selector, waiting";

/// Columns of `TestRow`.
pub const TEST_COLUMNS: &str = "id, testrun_id, name, status, attempt, runner_name, exit_code, \
     error, started_at, finished_at, duration_ms, log_lines, size_bytes, cases_total, \
     cases_passed, cases_failed, cases_errored, cases_skipped, case_note, expected_ms";

/// Columns of `AssignmentRow`, as a claim's `RETURNING` names them.
pub const ASSIGNMENT_COLUMNS: &str = "assignment_id, testrun_id, id AS test_id, name, content, \
     attempt, queued_at, log_lines, size_bytes, expected_ms";

// The statuses the stores' statements name, as SQL literals.
pub const CREATED: &str = TestrunStatus::Created.sql();
pub const RUNNING_RUN: &str = TestrunStatus::Running.sql();
pub const CANCELLED_RUN: &str = TestrunStatus::Cancelled.sql();
pub const QUEUED: &str = TestStatus::Queued.sql();
pub const RUNNING: &str = TestStatus::Running.sql();
pub const CANCELLED: &str = TestStatus::Cancelled.sql();
pub const ERROR: &str = TestStatus::Error.sql();

/// What every claim sets on the tests it takes, besides a fresh
/// assignment id (each store makes its own): they run on runner `$1`
/// (named `$2`) from time `$3`, one attempt more.
/// Claims skip the tests of Testruns this runner ($1) failed to set up
/// (runner contract rule 12).
pub const SKIP_FAILED_SETUP: &str = " AND NOT EXISTS (SELECT 1 FROM setups s \
     WHERE s.testrun_id = tests.testrun_id AND s.runner_id = $1 AND s.status = 'FAILED')";

/// The order a claim takes queued tests in: Testrun by Testrun (oldest
/// first), and within one the longest expected first, then submission
/// order (ids follow positions), so a long test never starts last and
/// holds its Testrun up (longest-processing-time-first, done as runners
/// pull). Exactly the `tests_queue` index (migration 0040): the claim stays
/// an index seek. A Testrun without history has no expected durations at
/// all, so its order is submission order. Any filter a claim adds (e.g. by
/// runner labels) goes in its WHERE, before this.
pub const QUEUE_ORDER: &str = " ORDER BY testrun_id, expected_ms DESC, id";
/// Claims skip the tests of Testruns whose selector has a label the
/// claiming runner lacks (issue 16): `$labels` is the runner's labels as
/// `key=value` texts, bound as each store binds a list. The two halves
/// wrap that store's list-membership fragment.
///
/// A scalar subquery, not `NOT EXISTS`: Postgres turns `NOT EXISTS` into
/// a hash anti join that reads the labels of every Testrun ever stored
/// (63 ms per claim with 100,000 of them); this stays an index probe per
/// candidate test (0.08 ms).
pub const SELECTOR_OPEN: &str = " AND (SELECT 1 FROM testrun_labels s \
     WHERE s.testrun_id = tests.testrun_id AND NOT (s.label ";
pub const SELECTOR_CLOSE: &str = ") LIMIT 1) IS NULL";

pub const CLAIM_SET: &str = concatcp!(
    "status = ",
    RUNNING,
    ", attempt = attempt + 1, runner_id = $1, runner_name = $2, started_at = $3, log_seq = 0"
);

/// How a claim of `c.n` tests of the Testrun `c.cid` at time `$2` changes
/// its row: the first claim starts it (CREATED -> RUNNING); tests of a
/// Testrun cancelled meanwhile count as cancelled, not running (`claimed`
/// sets them apart). Each store joins its own `c`.
pub const CLAIMED_COUNTS: &str = concatcp!(
    // A runner took some: whatever it waited for is here.
    "waiting = '', tests_running = tests_running + CASE WHEN status = ",
    CANCELLED_RUN,
    " THEN 0 ELSE c.n END, \
     tests_cancelled = tests_cancelled + CASE WHEN status = ",
    CANCELLED_RUN,
    " THEN c.n ELSE 0 END, \
     status = CASE WHEN status = ",
    CREATED,
    " THEN ",
    RUNNING_RUN,
    " ELSE status END, \
     started_at = CASE WHEN status = ",
    CANCELLED_RUN,
    " THEN started_at ELSE COALESCE(started_at, $2) END"
);

/// A Testrun row.
#[derive(Debug, sqlx::FromRow)]
pub struct TestrunRow {
    id: i64,
    username: String,
    suite: String,
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
    #[sqlx(flatten)]
    cases: CaseCountsRow,
    test_memory_bytes: Option<i64>,
    test_pids: Option<i64>,
    selector: String,
    waiting: String,
}

/// The case count columns of a test or Testrun row.
#[derive(Debug, sqlx::FromRow)]
pub struct CaseCountsRow {
    cases_total: i64,
    cases_passed: i64,
    cases_failed: i64,
    cases_errored: i64,
    cases_skipped: i64,
}

impl From<CaseCountsRow> for CaseCounts {
    fn from(r: CaseCountsRow) -> Self {
        CaseCounts {
            total: r.cases_total,
            passed: r.cases_passed,
            failed: r.cases_failed,
            errored: r.cases_errored,
            skipped: r.cases_skipped,
        }
    }
}

impl TestrunRow {
    pub fn into_domain(self) -> Result<Testrun> {
        Ok(Testrun {
            id: self.id,
            username: self.username,
            suite: self.suite,
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
            cases: self.cases.into(),
            limits: TestLimits {
                memory_bytes: self.test_memory_bytes,
                pids: self.test_pids,
            },
            selector: testrunner_content::label::from_canonical(&self.selector),
            waiting: self.waiting,
        })
    }
}

/// A test row (without content).
#[derive(Debug, sqlx::FromRow)]
pub struct TestRow {
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
    #[sqlx(flatten)]
    cases: CaseCountsRow,
    case_note: String,
    expected_ms: Option<i64>,
}

impl TestRow {
    pub fn into_domain(self) -> Result<Test> {
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
            cases: self.cases.into(),
            note: self.case_note,
            expected_ms: self.expected_ms,
        })
    }
}

/// An assignment as a claim returns it.
#[derive(Debug, sqlx::FromRow)]
pub struct AssignmentRow {
    assignment_id: String,
    pub testrun_id: i64,
    test_id: i64,
    name: String,
    content: String,
    attempt: i32,
    queued_at: i64,
    log_lines: i64,
    size_bytes: i64,
    expected_ms: Option<i64>,
}

/// A resumable assignment.
#[derive(Debug, sqlx::FromRow)]
pub struct ResumeRow {
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

/// A stored log line.
#[derive(Debug, sqlx::FromRow)]
pub struct LogLineRow {
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

/// The state of an assignment's test, read before storing its log lines.
#[derive(Debug, sqlx::FromRow)]
pub struct LogCursorRow {
    pub id: i64,
    pub testrun_id: i64,
    pub attempt: i32,
    pub log_seq: i64,
    pub log_lines: i64,
}

/// The lines a batch stored, numbered as they were stored.
pub fn stored_lines(cursor: &LogCursorRow, run_start: i64, texts: Vec<String>) -> Vec<LogLine> {
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
pub fn cancel_outcome(testrun: Testrun, running: Vec<(String, String)>) -> CancelOutcome {
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

/// How a statement changed one Testrun's counters: tests that stopped
/// running, and the counter each went to (a test requeued goes to none:
/// queued is what the others leave).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub left_running: i64,
    pub passed: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// Adds `value` to the tally of `id`, keeping first-seen order.
fn tally_of<T: Default>(tallies: &mut Vec<(i64, T)>, id: i64) -> &mut T {
    let i = match tallies.iter().position(|(t, _)| *t == id) {
        Some(i) => i,
        None => {
            tallies.push((id, T::default()));
            tallies.len() - 1
        }
    };
    &mut tallies[i].1
}

/// Counts finished tests per Testrun, in Testrun id order (the order
/// Testrun rows are locked in everywhere, after the tests by id).
pub fn tally_finished(tests: &[Option<Test>]) -> Vec<(i64, Tally)> {
    let mut tallies: Vec<(i64, Tally)> = Vec::new();
    for test in tests.iter().flatten() {
        let t = tally_of(&mut tallies, test.testrun_id);
        t.left_running += 1;
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

/// Groups `(testrun_id, new status)` of tests taken back by Testrun, in id
/// order (the order Testrun rows are locked in).
pub fn tally_moved(moved: &[(i64, String)]) -> Vec<(i64, Tally)> {
    let mut tallies: Vec<(i64, Tally)> = Vec::new();
    for (id, status) in moved {
        let t = tally_of(&mut tallies, *id);
        t.left_running += 1;
        t.cancelled += i64::from(status == TestStatus::Cancelled.as_str());
        t.failed += i64::from(status == TestStatus::Error.as_str());
    }
    tallies.sort_unstable_by_key(|(id, _)| *id);
    tallies
}

/// Claimed tests per Testrun, in Testrun id order.
pub fn per_testrun(rows: &[AssignmentRow]) -> Vec<(i64, i64)> {
    let mut per_run: Vec<(i64, i64)> = Vec::new();
    for r in rows {
        *tally_of(&mut per_run, r.testrun_id) += 1;
    }
    per_run.sort_unstable();
    per_run
}

/// The claim made of what a claim statement returned: assignments of
/// Testruns cancelled meanwhile are set apart to be cancelled, not handed
/// out.
pub fn claimed(rows: Vec<AssignmentRow>, runs: Vec<TestrunRow>) -> Result<Claim> {
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
    // In queue order (the claim's: Testrun, longest expected first, then
    // submission): `UPDATE … RETURNING` returns rows in no particular
    // order, and a runner starts what waits in its queue in the order it
    // came.
    rows.sort_unstable_by_key(|r| (r.testrun_id, std::cmp::Reverse(r.expected_ms), r.test_id));
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
                limits: s.map(|s| s.limits).unwrap_or_default(),
                expected_ms: r.expected_ms,
            }
        })
        .collect();
    Ok(Claim {
        assignments,
        testruns,
        cancelled,
        ..Claim::default()
    })
}

fn corrupt(column: &str, value: &str) -> Error {
    Error::Internal(anyhow::anyhow!("unexpected value {value:?} in {column}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
                left_running: 1,
                failed: 1,
                ..Tally::default()
            }
        );
        assert_eq!(
            t[1].1,
            Tally {
                left_running: 2,
                cancelled: 1,
                ..Tally::default()
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
                cases: CaseCounts::default(),
                note: String::new(),
                expected_ms: None,
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
                    Tally {
                        left_running: 1,
                        passed: 0,
                        failed: 1,
                        cancelled: 0
                    }
                ),
                (
                    9,
                    Tally {
                        left_running: 3,
                        passed: 2,
                        failed: 0,
                        cancelled: 1
                    }
                ),
            ]
        );
    }
}
