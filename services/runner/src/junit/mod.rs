//! Test-case results from the JUnit XML report a test may write.
//!
//! Every test is given a report path ([`crate::workdir::WorkDir::report_path`]),
//! as the command template's `{junit}` placeholder and as the environment
//! variable `TESTRUNNER_JUNIT_XML` (as Bazel gives tests `XML_OUTPUT_FILE`).
//! After the test's process ends, whatever its outcome, [`collect`] reads
//! the report there (`parse`), within limits, and says in a note what was
//! wrong with it. The exit code stays the test's verdict: a report that was
//! asked for but is missing, empty or unreadable is never "0 cases" but a
//! note, and failed cases of a test that exited 0 are pointed out in one.
//! The cases then travel to the coordinator in batches (`outbox`).

pub mod outbox;
pub mod parse;

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use testrunner_proto::v1::{Outcome, TestCase, test_case::Status};

pub use parse::Limits;

/// The command template's placeholder for the report path.
pub const PLACEHOLDER: &str = "{junit}";
/// The environment variable holding the report path.
pub const ENV: &str = "TESTRUNNER_JUNIT_XML";

/// The cases of one test's report and what to say about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    pub cases: Vec<TestCase>,
    /// Empty when all is well (see `Test.note` in testrun.proto).
    pub note: String,
}

impl Collected {
    /// Whether there is anything to send (cases or a note).
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty() && self.note.is_empty()
    }
}

/// Whether the test's command asks for a report (uses `{junit}`).
pub fn asked_for(command: &str) -> bool {
    command.contains(PLACEHOLDER)
}

/// The command template with `{junit}` replaced by `report` in each word
/// (quoted again, so a path with spaces stays one word).
pub fn fill_template(command: &str, report: &Path) -> String {
    if !asked_for(command) {
        return command.to_owned();
    }
    let path = report.to_string_lossy();
    match shell_words::split(command) {
        Ok(words) => shell_words::join(words.iter().map(|w| w.replace(PLACEHOLDER, &path))),
        // Unsplittable: the caller reports the template's own error.
        Err(_) => command.to_owned(),
    }
}

/// Removes whatever is at the report path (a previous test's report, or a
/// directory a test made there), so nothing stale is ever read.
pub fn clear(report: &Path) {
    match fs::symlink_metadata(report) {
        Ok(meta) if meta.is_dir() => {
            let _ = fs::remove_dir_all(report);
        }
        Ok(_) => {
            let _ = fs::remove_file(report);
        }
        Err(_) => {}
    }
}

/// Reads the report at `report` after the test ended with `outcome`, then
/// removes it. `asked`: the command template used `{junit}`; otherwise a
/// missing report is simply no report. `work_dir`: a symbolic link at the
/// report path may only lead into it.
pub fn collect(
    report: &Path,
    work_dir: &Path,
    asked: bool,
    outcome: Outcome,
    limits: Limits,
) -> Collected {
    let mut collected = read(report, work_dir, asked, limits);
    clear(report);
    let failed = collected
        .cases
        .iter()
        .filter(|c| matches!(c.status(), Status::Failed | Status::Error))
        .count();
    if outcome == Outcome::Passed && failed > 0 {
        let plural = if failed == 1 { "case" } else { "cases" };
        push_note(
            &mut collected.note,
            format!("exit 0, but the report lists {failed} failed {plural}"),
        );
    }
    collected
}

fn push_note(note: &mut String, more: String) {
    if !note.is_empty() {
        note.push_str("; ");
    }
    note.push_str(&more);
}

fn read(report: &Path, work_dir: &Path, asked: bool, limits: Limits) -> Collected {
    let noted = |note: String| Collected {
        cases: Vec::new(),
        note,
    };
    let meta = match fs::symlink_metadata(report) {
        Ok(meta) => meta,
        Err(_) if !asked => return Collected::default(),
        Err(_) => {
            return noted(format!(
                "JUnit report missing: the command has {PLACEHOLDER} but the test wrote no report"
            ));
        }
    };
    if meta.file_type().is_symlink() {
        let inside = fs::canonicalize(report)
            .ok()
            .zip(fs::canonicalize(work_dir).ok());
        if !inside.is_some_and(|(target, dir)| target.starts_with(dir)) {
            return noted(
                "JUnit report refused: the report path is a symbolic link leading out of the \
                 test's work directory"
                    .into(),
            );
        }
    }
    // O_NONBLOCK: a FIFO there must not hang the runner.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(report);
    let file = match file {
        Ok(file) => file,
        Err(e) => return noted(format!("JUnit report unreadable: {e}")),
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(e) => return noted(format!("JUnit report unreadable: {e}")),
    };
    if meta.is_dir() {
        return noted("JUnit report unreadable: the report path is a directory".into());
    }
    if !meta.is_file() {
        return noted("JUnit report unreadable: the report path is not a regular file".into());
    }
    if meta.len() > limits.max_bytes {
        return noted(format!(
            "JUnit report too large: {} bytes (limit {} bytes); not read",
            meta.len(),
            limits.max_bytes
        ));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    // The file may still grow (a process left behind): read at most the
    // limit plus one byte, to tell.
    if let Err(e) = file.take(limits.max_bytes + 1).read_to_end(&mut data) {
        return noted(format!("JUnit report unreadable: {e}"));
    }
    if data.len() as u64 > limits.max_bytes {
        return noted(format!(
            "JUnit report too large: over {} bytes; not read",
            limits.max_bytes
        ));
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        return noted("JUnit report empty: the test wrote no XML to it".into());
    }
    let parsed = parse::parse(&data, limits);
    let mut note = String::new();
    if let Some(error) = parsed.error {
        let kept = parsed.cases.len();
        push_note(
            &mut note,
            format!("JUnit report unreadable: {error} (kept the {kept} cases read before it)"),
        );
    }
    if parsed.dropped > 0 {
        push_note(
            &mut note,
            format!(
                "JUnit report has {} cases; only the first {} are kept",
                parsed.cases.len() + parsed.dropped,
                limits.max_cases
            ),
        );
    }
    Collected {
        cases: parsed.cases,
        note,
    }
}

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod tests;
