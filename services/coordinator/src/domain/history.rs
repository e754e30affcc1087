//! Test history (issue 16): each test's recorded outcomes under its suite,
//! the durations the dispatcher orders a new Testrun by, and flips (the
//! same test passing and failing on the same workspace).

use crate::error::{Error, Result};

use super::{Millis, Testrun};

/// Longest suite name, in characters.
pub const MAX_SUITE_CHARS: usize = 128;
/// Longest test name asked about, in bytes (a workspace path's limit).
pub const MAX_TEST_NAME_BYTES: usize = 4096;
/// Outcomes kept per (suite, test name); older ones are deleted by the
/// transaction that adds one.
pub const KEPT_OUTCOMES: i64 = 50;
/// Outcomes shown per test in a suite's lists.
pub const LAST_OUTCOMES: usize = 10;
/// Recent Testruns shown with a suite.
pub const SUITE_TESTRUNS: i64 = 20;
/// Default and largest `limit` of GetTestHistory and GetSuite.
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// Checks a suite name: 1 to 128 characters, no control characters.
pub fn check_suite(suite: &str) -> Result<String> {
    let chars = suite.chars().count();
    if chars == 0 || chars > MAX_SUITE_CHARS {
        return Err(Error::invalid(
            "suite",
            format!("must be 1 to {MAX_SUITE_CHARS} characters (got {chars})"),
        ));
    }
    if suite.chars().any(char::is_control) {
        return Err(Error::invalid(
            "suite",
            "must not contain control characters",
        ));
    }
    Ok(suite.to_owned())
}

/// Checks a test name asked about: not empty, not too long.
pub fn check_test_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    if name.len() > MAX_TEST_NAME_BYTES {
        return Err(Error::invalid(
            "name",
            format!("must be at most {MAX_TEST_NAME_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A list's `limit`: the default for 0, refused above the most.
pub fn check_limit(limit: u32) -> Result<i64> {
    match limit {
        0 => Ok(i64::from(DEFAULT_LIMIT)),
        n if n > MAX_LIMIT => Err(Error::invalid(
            "limit",
            format!("must be at most {MAX_LIMIT}"),
        )),
        n => Ok(i64::from(n)),
    }
}

/// One recorded outcome: a test's final result in one Testrun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub testrun_id: i64,
    pub test_id: i64,
    /// The test status as stored (PASSED, FAILED, TIMED_OUT, ERROR, FLAKY):
    /// kept as text so a status added later reads back without a change.
    pub status: String,
    pub attempts: i32,
    /// Of its last attempt.
    pub duration_ms: Option<i64>,
    pub runner_name: Option<String>,
    /// The Testrun's workspace digest key, if it had one.
    pub workspace: Option<String>,
    pub finished_at: Millis,
    /// It ended FLAKY, or its verdict differed from an earlier outcome on
    /// the same workspace.
    pub flipped: bool,
}

/// The summary of one test of a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestStats {
    pub name: String,
    /// Median duration of its kept PASSED/FAILED/FLAKY outcomes.
    pub median_ms: Option<i64>,
    pub samples: i64,
    /// Kept outcomes that flipped.
    pub flips: i64,
    pub last_at: Millis,
}

/// A test's history: its summary, recent outcomes and where it flipped.
#[derive(Debug, Clone)]
pub struct TestHistory {
    pub suite: String,
    pub stats: TestStats,
    /// Newest first.
    pub outcomes: Vec<Outcome>,
    /// Testruns where it flipped, newest first.
    pub flipped_in: Vec<i64>,
}

/// One suite in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteSummary {
    pub name: String,
    pub tests: i64,
    pub testruns: i64,
    pub last_run_at: Millis,
    pub flaky_tests: i64,
}

/// One test of a suite's page.
#[derive(Debug, Clone)]
pub struct SuiteTest {
    pub stats: TestStats,
    pub flipped_in: Vec<i64>,
    /// Newest first, at most `LAST_OUTCOMES`.
    pub last: Vec<Outcome>,
}

/// A suite's page.
#[derive(Debug, Clone)]
pub struct Suite {
    pub summary: SuiteSummary,
    pub slowest: Vec<SuiteTest>,
    pub flakiest: Vec<SuiteTest>,
    pub testruns: Vec<Testrun>,
}

/// The median of durations (the mean of the middle two for an even
/// count), as the stores compute it for one test: used for the suite's
/// median of its tests' medians.
pub fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    Some((sorted[(n - 1) / 2] + sorted[n / 2]) / 2)
}

/// Testruns where a test flipped, newest first, from its outcomes newest
/// first.
pub fn flipped_in(outcomes: &[Outcome]) -> Vec<i64> {
    outcomes
        .iter()
        .filter(|o| o.flipped)
        .map(|o| o.testrun_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_checked_by_length_and_characters() {
        assert_eq!(check_suite("web").unwrap(), "web");
        assert!(
            check_suite("")
                .unwrap_err()
                .to_string()
                .starts_with("suite: ")
        );
        assert!(check_suite(&"x".repeat(129)).is_err());
        assert!(check_suite(&"é".repeat(128)).is_ok());
        assert!(check_suite("a\nb").is_err());
    }

    #[test]
    fn the_median_is_the_middle_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[1, 3, 100]), Some(3));
        assert_eq!(median(&[1, 3, 5, 100]), Some(4));
    }
}
