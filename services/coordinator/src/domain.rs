//! Domain types of the coordinator: Testruns, tests and their state machines.
//! Nothing here knows about gRPC or SQL.

use std::fmt;

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

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The spelling stored in the database and shown to users.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Parses the stored spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Lifecycle of a Testrun: CREATED -> RUNNING -> SUCCESS | FAILED, and
    /// CREATED or RUNNING -> CANCELLED. Terminal states never change.
    TestrunStatus {
        Created => "CREATED",
        Running => "RUNNING",
        Failed => "FAILED",
        Success => "SUCCESS",
        Cancelled => "CANCELLED",
    }
}

impl TestrunStatus {
    /// True once the status can never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Success | Self::Cancelled)
    }
}

string_enum! {
    /// Lifecycle of one test: QUEUED -> RUNNING -> a result; RUNNING goes
    /// back to QUEUED when its runner is lost or hands it back.
    TestStatus {
        Queued => "QUEUED",
        Running => "RUNNING",
        Passed => "PASSED",
        Failed => "FAILED",
        TimedOut => "TIMED_OUT",
        Cancelled => "CANCELLED",
        Error => "ERROR",
    }
}

impl TestStatus {
    /// True once the test has its final result.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// Which Testrun counter a test in this (terminal) status adds to.
    pub fn bucket(self) -> Bucket {
        match self {
            Self::Passed => Bucket::Passed,
            Self::Cancelled => Bucket::Cancelled,
            Self::Queued | Self::Running => Bucket::Open,
            Self::Failed | Self::TimedOut | Self::Error => Bucket::Failed,
        }
    }
}

/// The Testrun counter a test's status counts towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Open,
    Passed,
    Failed,
    Cancelled,
}

/// What the caller asked to store; already validated.
#[derive(Debug, Clone)]
pub struct NewTestrun {
    pub username: String,
    pub command: Option<String>,
    pub timeout_ms: i64,
    pub tests: Vec<NewTest>,
}

/// One file of a new Testrun.
#[derive(Debug, Clone)]
pub struct NewTest {
    pub name: String,
    pub content: String,
}

/// Per-status test counts, kept on the Testrun row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub running: i64,
    pub passed: i64,
    pub failed: i64,
    pub cancelled: i64,
}

impl Counts {
    /// Tests still waiting for a runner.
    pub fn queued(&self) -> i64 {
        (self.total - self.running - self.passed - self.failed - self.cancelled).max(0)
    }

    /// Tests that have their final result.
    pub fn done(&self) -> i64 {
        self.passed + self.failed + self.cancelled
    }
}

/// A stored Testrun.
#[derive(Debug, Clone)]
pub struct Testrun {
    pub id: i64,
    pub username: String,
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
#[derive(Debug, Clone)]
pub struct RunnerInfo {
    pub id: String,
    pub name: String,
    pub slots: i32,
    /// Assignments it accepts beyond `slots`, queued until a slot frees up.
    pub queue: i32,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_stored_spelling() {
        for s in [
            TestrunStatus::Created,
            TestrunStatus::Running,
            TestrunStatus::Failed,
            TestrunStatus::Success,
            TestrunStatus::Cancelled,
        ] {
            assert_eq!(TestrunStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TestStatus::parse("TIMED_OUT"), Some(TestStatus::TimedOut));
        assert_eq!(TestStatus::parse("nope"), None);
    }

    #[test]
    fn only_final_results_are_terminal() {
        assert!(!TestStatus::Queued.is_terminal());
        assert!(!TestStatus::Running.is_terminal());
        assert!(TestStatus::TimedOut.is_terminal());
        assert!(TestrunStatus::Cancelled.is_terminal());
        assert!(!TestrunStatus::Running.is_terminal());
    }

    #[test]
    fn queued_count_is_what_is_not_accounted_elsewhere() {
        let c = Counts {
            total: 10,
            running: 2,
            passed: 3,
            failed: 1,
            cancelled: 1,
        };
        assert_eq!(c.queued(), 3);
        assert_eq!(c.done(), 5);
    }
}
