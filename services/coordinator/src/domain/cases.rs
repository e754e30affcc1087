//! Test cases from JUnit reports: their statuses, the counts kept on tests
//! and Testruns, and the checks a runner's batch passes before it is
//! stored. No gRPC, no SQL.

use crate::error::{Error, Result};

/// Most cases in one `Cases` batch (runner.proto rule 11).
pub const MAX_CASES_PER_BATCH: usize = 1_000;
/// Longest note stored with a test, in characters.
const MAX_NOTE_CHARS: usize = 4096;
/// Longest text of a case stored, in bytes; the runner caps its texts
/// (64 KiB by default): this only bounds a runner that does not.
const MAX_TEXT_BYTES: usize = 1 << 20;

/// How one case ended, as its report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseStatus {
    Passed,
    Failed,
    Error,
    Skipped,
}

impl CaseStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "PASSED",
            Self::Failed => "FAILED",
            Self::Error => "ERROR",
            Self::Skipped => "SKIPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PASSED" => Self::Passed,
            "FAILED" => Self::Failed,
            "ERROR" => Self::Error,
            "SKIPPED" => Self::Skipped,
            _ => return None,
        })
    }

    /// The listing's first key: failed and errored cases come first.
    pub const fn rank(self) -> i16 {
        match self {
            Self::Failed | Self::Error => 0,
            Self::Passed | Self::Skipped => 1,
        }
    }
}

/// Case counts of a test or a Testrun.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaseCounts {
    pub total: i64,
    pub passed: i64,
    pub failed: i64,
    pub errored: i64,
    pub skipped: i64,
}

impl CaseCounts {
    /// The counts of `statuses`.
    pub fn of(statuses: impl IntoIterator<Item = CaseStatus>) -> Self {
        let mut c = Self::default();
        for s in statuses {
            c.total += 1;
            match s {
                CaseStatus::Passed => c.passed += 1,
                CaseStatus::Failed => c.failed += 1,
                CaseStatus::Error => c.errored += 1,
                CaseStatus::Skipped => c.skipped += 1,
            }
        }
        c
    }
}

/// One case as a runner sent it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCase {
    pub index: i64,
    pub status: CaseStatus,
    pub suite: String,
    pub classname: String,
    pub name: String,
    pub file: String,
    pub line: Option<i32>,
    pub duration_ms: Option<i64>,
    pub message: String,
    pub details: String,
    pub system_out: String,
    pub system_err: String,
}

/// A stored case with its test.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCase {
    pub test_id: i64,
    pub test_name: String,
    pub attempt: i32,
    pub case: NewCase,
}

/// Filters of ListTestCases.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub test_id: Option<i64>,
    pub status: Option<CaseStatus>,
    pub name_contains: Option<String>,
}

/// Text a database takes: no NUL (Postgres refuses it), bounded.
pub fn storable(text: String) -> String {
    let mut text = if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    };
    if text.len() > MAX_TEXT_BYTES {
        let mut cut = MAX_TEXT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!(" … [truncated {dropped} bytes]"));
    }
    text
}

/// A runner's note, as stored.
pub fn storable_note(note: &str) -> String {
    note.chars()
        .take(MAX_NOTE_CHARS)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

/// Checks a batch's shape: size, and indexes that follow `first_index`
/// one by one.
pub fn check_batch(first_index: u32, len: usize, total: u32) -> Result<()> {
    if len > MAX_CASES_PER_BATCH {
        return Err(Error::invalid(
            "cases.cases",
            format!("{len} cases is more than the limit of {MAX_CASES_PER_BATCH} per batch"),
        ));
    }
    if u64::from(first_index) + len as u64 > u64::from(total) {
        return Err(Error::invalid(
            "cases.total",
            format!("{total} is less than first_index {first_index} plus {len} cases in the batch"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_by_status() {
        use CaseStatus::*;
        let c = CaseCounts::of([Passed, Failed, Failed, Error, Skipped]);
        assert_eq!(
            c,
            CaseCounts {
                total: 5,
                passed: 1,
                failed: 2,
                errored: 1,
                skipped: 1
            }
        );
    }

    #[test]
    fn stored_text_has_no_nul_and_is_bounded() {
        assert_eq!(storable("a\0b".into()), "a\u{FFFD}b");
        let long = storable("é".repeat(MAX_TEXT_BYTES));
        assert!(long.ends_with(&format!("[truncated {} bytes]", MAX_TEXT_BYTES)));
    }

    #[test]
    fn a_batch_over_the_limit_or_past_its_total_is_refused_naming_the_field() {
        assert!(check_batch(0, 1000, 1000).is_ok());
        let err = check_batch(0, 1001, 2000).unwrap_err();
        assert!(err.to_string().contains("cases.cases"), "{err}");
        let err = check_batch(5, 10, 10).unwrap_err();
        assert!(err.to_string().contains("cases.total"), "{err}");
    }
}
