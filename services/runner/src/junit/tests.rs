//! `collect` on the fixture files of every bad report (issue 15) and on
//! what a test can leave at its report path.

use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/junit")
        .join(name)
}

/// A work directory and the report path beside it, as the runner lays
/// them out.
fn layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("w0");
    fs::create_dir(&work).unwrap();
    let report = root.path().join("w0.junit.xml");
    (root, work, report)
}

fn collect_fixture(name: &str, outcome: Outcome) -> Collected {
    let (_root, work, report) = layout();
    fs::copy(fixture(name), &report).unwrap();
    let collected = collect(&report, &work, true, outcome, Limits::default());
    assert!(!report.exists(), "the report is removed once read");
    collected
}

#[test]
fn a_report_that_was_not_asked_for_and_not_written_is_no_report() {
    let (_root, work, report) = layout();
    let c = collect(&report, &work, false, Outcome::Passed, Limits::default());
    assert!(c.is_empty());
}

#[test]
fn a_report_asked_for_but_missing_is_a_note_never_zero_cases() {
    let (_root, work, report) = layout();
    let c = collect(&report, &work, true, Outcome::Passed, Limits::default());
    assert!(c.cases.is_empty());
    assert!(c.note.starts_with("JUnit report missing"), "{}", c.note);
}

#[test]
fn an_empty_report_is_a_note() {
    let (_root, work, report) = layout();
    fs::write(&report, "\n").unwrap();
    let c = collect(&report, &work, false, Outcome::Failed, Limits::default());
    assert_eq!(c.note, "JUnit report empty: the test wrote no XML to it");
}

#[test]
fn malformed_xml_keeps_the_cases_before_the_fault_and_says_where() {
    let c = collect_fixture("malformed.xml", Outcome::Failed);
    assert_eq!(c.cases.len(), 1);
    assert!(
        c.note
            .starts_with("JUnit report unreadable: line 4, column "),
        "{}",
        c.note
    );
    assert!(
        c.note.ends_with("(kept the 1 cases read before it)"),
        "{}",
        c.note
    );
}

#[test]
fn a_billion_laughs_document_is_read_without_expanding_anything() {
    let c = collect_fixture("billion-laughs.xml", Outcome::Failed);
    assert_eq!(c.note, "");
    assert_eq!(c.cases[0].message, "&lol9;");
    assert_eq!(c.cases[0].details, "&lol9; &xxe;");
}

#[test]
fn suites_nested_ten_thousand_deep_are_read() {
    let c = collect_fixture("nested-10000.xml", Outcome::Passed);
    assert_eq!(c.note, "");
    assert_eq!(c.cases.len(), 1);
    assert!(c.cases[0].suite.starts_with("s0 / s1 / "));
}

#[test]
fn duplicate_names_are_kept_as_distinct_cases() {
    let c = collect_fixture("duplicates.xml", Outcome::Failed);
    let statuses: Vec<Status> = c.cases.iter().map(TestCase::status).collect();
    assert_eq!(statuses, [Status::Passed, Status::Failed, Status::Skipped]);
}

#[test]
fn the_partial_report_of_a_killed_test_keeps_what_it_finished() {
    let c = collect_fixture("partial-killed.xml", Outcome::TimedOut);
    assert_eq!(c.cases.len(), 1);
    assert_eq!(c.cases[0].name, "done");
    assert!(
        c.note.starts_with("JUnit report unreadable: line 4"),
        "{}",
        c.note
    );
}

#[test]
fn control_characters_and_invalid_utf8_do_not_make_a_report_unreadable() {
    let c = collect_fixture("control-chars.xml", Outcome::Failed);
    assert_eq!(c.note, "");
    assert_eq!(c.cases[0].name, "ansi\u{FFFD}");
    assert!(c.cases[0].message.starts_with("\x1b[31mAssertionError"));
    assert!(!c.cases[0].details.contains('\0'));
}

#[test]
fn failed_cases_of_a_test_that_exited_0_are_pointed_out() {
    let c = collect_fixture("duplicates.xml", Outcome::Passed);
    assert_eq!(c.note, "exit 0, but the report lists 1 failed case");
}

#[test]
fn a_report_of_a_gibibyte_is_refused_unread() {
    let (_root, work, report) = layout();
    // Sparse: a gibibyte that takes no disk.
    let file = fs::File::create(&report).unwrap();
    file.set_len(1 << 30).unwrap();
    let c = collect(&report, &work, true, Outcome::Passed, Limits::default());
    assert!(c.cases.is_empty());
    assert_eq!(
        c.note,
        "JUnit report too large: 1073741824 bytes (limit 33554432 bytes); not read"
    );
}

#[test]
fn a_directory_at_the_report_path_is_a_note_and_is_removed() {
    let (_root, work, report) = layout();
    fs::create_dir_all(report.join("sub")).unwrap();
    let c = collect(&report, &work, true, Outcome::Passed, Limits::default());
    assert_eq!(
        c.note,
        "JUnit report unreadable: the report path is a directory"
    );
    assert!(!report.exists());
}

#[test]
fn a_symlink_out_of_the_work_directory_is_refused_and_one_inside_is_followed() {
    let (root, work, report) = layout();
    let outside = root.path().join("secret.xml");
    fs::write(&outside, "<testsuite><testcase name=\"leak\"/></testsuite>").unwrap();
    std::os::unix::fs::symlink(&outside, &report).unwrap();
    let c = collect(&report, &work, true, Outcome::Passed, Limits::default());
    assert!(c.cases.is_empty());
    assert!(c.note.starts_with("JUnit report refused"), "{}", c.note);
    assert!(outside.exists(), "the link is removed, not its target");

    let inside = work.join("out/report.xml");
    fs::create_dir_all(inside.parent().unwrap()).unwrap();
    fs::write(&inside, "<testsuite><testcase name=\"mine\"/></testsuite>").unwrap();
    std::os::unix::fs::symlink(&inside, &report).unwrap();
    let c = collect(&report, &work, true, Outcome::Passed, Limits::default());
    assert_eq!(c.cases[0].name, "mine");
}

#[test]
fn a_fifo_at_the_report_path_does_not_hang_the_runner() {
    let (_root, work, report) = layout();
    let made = std::process::Command::new("mkfifo")
        .arg(&report)
        .status()
        .unwrap();
    assert!(made.success());
    let c = collect(&report, &work, true, Outcome::Passed, Limits::default());
    assert_eq!(
        c.note,
        "JUnit report unreadable: the report path is not a regular file"
    );
}

#[test]
fn the_template_placeholder_becomes_one_word_even_with_spaces() {
    let filled = fill_template(
        "python3 -m pytest -q {file} --junitxml={junit}",
        Path::new("/tmp/a b/w0.junit.xml"),
    );
    assert_eq!(
        shell_words::split(&filled).unwrap(),
        [
            "python3",
            "-m",
            "pytest",
            "-q",
            "{file}",
            "--junitxml=/tmp/a b/w0.junit.xml"
        ]
    );
    assert_eq!(fill_template("sh {file}", Path::new("/x")), "sh {file}");
}
