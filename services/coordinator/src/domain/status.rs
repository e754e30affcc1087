//! The two state machines: a Testrun's status and a test's status, with
//! their transitions named, and the counters that decide a Testrun.
//!
//! The stores bind these spellings into their SQL (`as_str`) rather than
//! writing literals, and every transition the code makes goes through a
//! method here, so an illegal one is an error with a name, not a silent
//! overwrite.

use std::fmt;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every status, in declaration order.
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The spelling stored in the database and shown to users.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// The spelling as an SQL string literal, for statements that
            /// must name it (a partial index matches only a literal).
            pub const fn sql(self) -> &'static str {
                match self { $(Self::$variant => concat!("'", $text, "'")),+ }
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

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("already ended with status {from}")]
pub struct IllegalTransition {
    pub from: TestrunStatus,
    pub to: TestrunStatus,
}

impl TestrunStatus {
    /// True once the status can never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Success | Self::Cancelled)
    }

    /// The statuses a cancel may start from.
    pub const CANCELLABLE: [Self; 2] = [Self::Created, Self::Running];

    /// CREATED or RUNNING -> CANCELLED.
    pub fn cancel(self) -> Result<Self, IllegalTransition> {
        if Self::CANCELLABLE.contains(&self) {
            Ok(Self::Cancelled)
        } else {
            Err(IllegalTransition {
                from: self,
                to: Self::Cancelled,
            })
        }
    }

    /// The status once every test has a result, if that decides it now:
    /// RUNNING -> SUCCESS when every test passed, else FAILED.
    pub fn decided(self, counts: &Counts) -> Option<Self> {
        if self != Self::Running || counts.done() < counts.total {
            return None;
        }
        Some(if counts.passed == counts.total {
            Self::Success
        } else {
            Self::Failed
        })
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
        Flaky => "FLAKY",
    }
}

impl TestStatus {
    /// True once the test has its final result.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// A failure another attempt may turn around (a retry's reason).
    /// ERROR (a set-up failure, a lost runner, the runner's own failure) is
    /// never one: retrying it would hide a broken runner, not a flaky test.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Failed | Self::TimedOut)
    }

    /// Which Testrun counter a test in this (terminal) status adds to. A
    /// FLAKY test passed (it also counts in `Counts::flaky`).
    pub fn bucket(self) -> Bucket {
        match self {
            Self::Passed | Self::Flaky => Bucket::Passed,
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

/// Per-status test counts, kept on the Testrun row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub running: i64,
    pub passed: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// FLAKY tests, a subset of `passed`.
    pub flaky: i64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_stored_spelling() {
        for s in TestrunStatus::ALL {
            assert_eq!(TestrunStatus::parse(s.as_str()), Some(*s));
        }
        for s in TestStatus::ALL {
            assert_eq!(TestStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(TestStatus::parse("TIMED_OUT"), Some(TestStatus::TimedOut));
        assert_eq!(TestStatus::TimedOut.sql(), "'TIMED_OUT'");
        assert_eq!(TestStatus::parse("nope"), None);
    }

    #[test]
    fn a_flaky_test_counts_as_passed_and_only_failures_are_retried() {
        assert_eq!(TestStatus::Flaky.bucket(), Bucket::Passed);
        assert!(TestStatus::Flaky.is_terminal());
        assert!(TestStatus::Failed.is_retryable());
        assert!(TestStatus::TimedOut.is_retryable());
        for s in [TestStatus::Error, TestStatus::Cancelled, TestStatus::Passed] {
            assert!(!s.is_retryable(), "{s}");
        }
        // Every passed test, flaky ones included, makes a SUCCESS.
        let c = Counts {
            total: 2,
            passed: 2,
            flaky: 1,
            ..Counts::default()
        };
        assert_eq!(
            TestrunStatus::Running.decided(&c),
            Some(TestrunStatus::Success)
        );
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
    fn only_an_open_testrun_can_be_cancelled() {
        assert_eq!(
            TestrunStatus::Created.cancel(),
            Ok(TestrunStatus::Cancelled)
        );
        assert_eq!(
            TestrunStatus::Running.cancel(),
            Ok(TestrunStatus::Cancelled)
        );
        for from in [
            TestrunStatus::Success,
            TestrunStatus::Failed,
            TestrunStatus::Cancelled,
        ] {
            let err = from.cancel().unwrap_err();
            assert_eq!((err.from, err.to), (from, TestrunStatus::Cancelled));
            assert_eq!(err.to_string(), format!("already ended with status {from}"));
        }
    }

    #[test]
    fn queued_count_is_what_is_not_accounted_elsewhere() {
        let c = Counts {
            total: 10,
            running: 2,
            passed: 3,
            failed: 1,
            cancelled: 1,
            flaky: 0,
        };
        assert_eq!(c.queued(), 3);
        assert_eq!(c.done(), 5);
    }

    #[test]
    fn a_testrun_is_decided_only_when_every_test_has_a_result() {
        let mut c = Counts {
            total: 2,
            running: 1,
            passed: 1,
            ..Counts::default()
        };
        assert_eq!(TestrunStatus::Running.decided(&c), None);
        c.running = 0;
        c.passed = 2;
        assert_eq!(
            TestrunStatus::Running.decided(&c),
            Some(TestrunStatus::Success)
        );
        c.passed = 1;
        c.failed = 1;
        assert_eq!(
            TestrunStatus::Running.decided(&c),
            Some(TestrunStatus::Failed)
        );
        assert_eq!(TestrunStatus::Cancelled.decided(&c), None);
    }
}
