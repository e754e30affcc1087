//! Domain types of the coordinator: Testruns, tests, their state machines
//! (`status`), the rules of a log stream (`log`) and of client input
//! (`validate`). Nothing here knows about gRPC or SQL.

pub mod cases;
pub mod fleet;
pub mod history;
pub mod log;
pub mod pools;
pub mod status;
pub mod validate;
pub mod workspace;

pub use status::{Bucket, Counts, IllegalTransition, TestStatus, TestrunStatus};

/// Labels of a runner, or the selector of a Testrun (`gpu` -> `a100`),
/// sorted by key.
pub type Labels = std::collections::BTreeMap<String, String>;

/// Milliseconds since the Unix epoch; every stored time uses it so SQLite and
/// Postgres share one representation.
pub type Millis = i64;

/// Current wall-clock time in milliseconds.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the caller asked to store; already validated.
#[derive(Debug, Clone)]
pub struct NewTestrun {
    pub username: String,
    /// The suite whose history it reads and adds to (default: username).
    pub suite: String,
    pub command: Option<String>,
    pub timeout_ms: i64,
    pub tests: Vec<NewTest>,
    /// Workspace, set-up and env (issue 14); `None` for a plain Testrun.
    pub workspace: Option<workspace::NewWorkspace>,
    pub limits: TestLimits,
    /// Labels a runner must all have to take its tests (issue 16).
    pub selector: Labels,
}

/// Limits per test a Testrun asks for; `None`: the runner's own. A runner
/// applies the lower of these and its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestLimits {
    pub memory_bytes: Option<i64>,
    pub pids: Option<i64>,
}

/// One file of a new Testrun.
#[derive(Debug, Clone)]
pub struct NewTest {
    pub name: String,
    pub content: String,
}

/// A stored Testrun.
#[derive(Debug, Clone)]
pub struct Testrun {
    pub id: i64,
    pub username: String,
    /// The suite its outcomes are recorded under.
    pub suite: String,
    pub status: TestrunStatus,
    pub command: Option<String>,
    pub timeout_ms: i64,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub counts: Counts,
    /// Lines stored in the Testrun's log stream so far (the watch cursor).
    pub log_seq: i64,
    /// Empty unless loaded with its tests.
    pub tests: Vec<Test>,
    /// Sums of its tests' JUnit case counts.
    pub cases: cases::CaseCounts,
    pub limits: TestLimits,
    /// Labels a runner must all have to take its tests.
    pub selector: Labels,
    /// Why its queued tests are not running (`waiting for a runner with
    /// gpu=a100`), kept in the store by `engine::pools`; empty otherwise.
    pub waiting: String,
}

/// A stored test (without its content).
#[derive(Debug, Clone)]
pub struct Test {
    pub id: i64,
    pub testrun_id: i64,
    pub name: String,
    pub status: TestStatus,
    pub attempt: i32,
    pub runner_name: Option<String>,
    pub exit_code: Option<i32>,
    pub error: String,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub duration_ms: Option<i64>,
    pub log_lines: i64,
    pub size_bytes: i64,
    /// Counts of its JUnit cases (one attempt's).
    pub cases: cases::CaseCounts,
    /// What went wrong with its JUnit report; empty when all is well.
    pub note: String,
    /// The duration the dispatcher ordered it by (from its suite's
    /// history); `None` without history.
    pub expected_ms: Option<i64>,
}

/// A test handed to a runner: everything the runner needs to run it.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub assignment_id: String,
    pub testrun_id: i64,
    pub test_id: i64,
    pub name: String,
    pub content: String,
    pub command: Option<String>,
    pub timeout_ms: i64,
    pub attempt: i32,
    /// When the test entered the queue, for the dispatch latency metric.
    pub queued_at: Millis,
    /// Lines its log already holds from earlier attempts.
    pub log_lines: i64,
    pub size_bytes: i64,
    pub limits: TestLimits,
    /// The duration it was ordered by (see `Test::expected_ms`).
    pub expected_ms: Option<i64>,
}

/// What a runner reported about a finished assignment.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub status: TestStatus,
    pub exit_code: Option<i32>,
    pub duration_ms: i64,
    pub error: String,
}

/// Filters of the Testrun list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<TestrunStatus>,
    pub username: Option<String>,
}

impl ListFilter {
    /// True if the Testrun passes the filter.
    pub fn matches(&self, run: &Testrun) -> bool {
        self.status.is_none_or(|s| s == run.status)
            && self.username.as_deref().is_none_or(|u| u == run.username)
    }
}

/// One stored log line with both of its positions.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub test_id: i64,
    pub attempt: i32,
    /// Position in the test's log (0-based, all attempts).
    pub line_no: i64,
    /// Position in the Testrun's log stream (1-based); the watch cursor.
    pub run_seq: i64,
    pub text: String,
}

/// A registered runner as stored.
#[derive(Debug, Clone, Default)]
pub struct RunnerInfo {
    pub id: String,
    pub name: String,
    pub slots: i32,
    /// Assignments it accepts beyond `slots`, queued until a slot frees up.
    pub queue: i32,
    pub version: String,
    /// Its `--label`s: it takes tests of Testruns whose selector they cover.
    pub labels: Labels,
    /// The runner token it attached with; empty for the shared token.
    pub token_name: String,
}
