//! Test cases from JUnit reports in a terminal: the failed-case summary at
//! the end of `run` and `watch`, `testrunner cases`, and `testrunner junit`,
//! which writes a whole Testrun as one JUnit XML document (with quick-junit,
//! nextest's writer) for GitLab, Jenkins or any CI to ingest.

use std::time::Duration;

use testrunner_proto::v1::testrun_service_client::TestrunServiceClient;
use testrunner_proto::v1::{ListTestCasesRequest, Test, TestCase, Testrun, test, test_case};
use tonic::transport::Channel;

/// Failed cases listed at the end of `run` and `watch`.
const SUMMARY_LINES: usize = 30;

/// The cases of a Testrun matching the filters, every page of them; stops
/// early once `stop` says so about a case.
pub async fn fetch(
    client: &mut TestrunServiceClient<Channel>,
    mut request: ListTestCasesRequest,
    stop: impl Fn(&TestCase, usize) -> bool,
) -> Result<Vec<TestCase>, tonic::Status> {
    let mut cases = Vec::new();
    loop {
        let page = client.list_test_cases(request.clone()).await?.into_inner();
        for case in page.cases {
            if stop(&case, cases.len()) {
                return Ok(cases);
            }
            cases.push(case);
        }
        if page.next_page_token.is_empty() {
            return Ok(cases);
        }
        request.page_token = page.next_page_token;
    }
}

fn failed(case: &TestCase) -> bool {
    case.status == test_case::Status::Failed as i32
        || case.status == test_case::Status::Error as i32
}

/// The status word of a case.
pub fn status_word(status: i32) -> &'static str {
    test_case::Status::try_from(status).map_or("UNKNOWN", |s| s.as_str_name())
}

/// A case's id as pytest prints it: `file::Class::name`, with the module
/// part of the classname left out where it repeats the test's file name.
pub fn case_id(case: &TestCase) -> String {
    let stem = case
        .test_name
        .rsplit_once('.')
        .map_or(case.test_name.as_str(), |(stem, _)| stem);
    let class = if case.classname == stem {
        ""
    } else {
        case.classname
            .strip_prefix(stem)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(&case.classname)
    };
    [case.test_name.as_str(), class, case.name.as_str()]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("::")
}

/// The first line of a case's message (or details), for one-line output.
fn headline(case: &TestCase) -> &str {
    let text = if case.message.trim().is_empty() {
        &case.details
    } else {
        &case.message
    };
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// `FAILED test_x.py::TestA::test_b: AssertionError: ...`
pub fn failed_line(case: &TestCase) -> String {
    let word = if case.status == test_case::Status::Error as i32 {
        "ERROR"
    } else {
        "FAILED"
    };
    let head = headline(case);
    if head.is_empty() {
        format!("{word} {}", case_id(case))
    } else {
        format!("{word} {}: {head}", case_id(case))
    }
}

/// The summary printed after a Testrun: its failed and errored cases (at
/// most `SUMMARY_LINES`, then how many more), and every test's note.
pub async fn summary(
    client: &mut TestrunServiceClient<Channel>,
    run: &Testrun,
) -> Result<String, tonic::Status> {
    let mut out = String::new();
    for t in run.tests.iter().filter(|t| !t.note.is_empty()) {
        out.push_str(&format!("NOTE {}: {}\n", t.name, t.note));
    }
    let counts = run.cases.unwrap_or_default();
    let failing = u64::from(counts.failed) + u64::from(counts.errored);
    if failing == 0 {
        return Ok(out);
    }
    let request = ListTestCasesRequest {
        testrun_id: run.id,
        page_size: SUMMARY_LINES as u32,
        ..Default::default()
    };
    // Failed and errored cases come first: stop at the first other one.
    // Earlier attempts' cases are kept too (a retried or FLAKY test's
    // failure): only each test's latest attempt is summarised, as counted.
    let latest = |c: &TestCase| {
        run.tests
            .iter()
            .find(|t| t.id == c.test_id)
            .is_none_or(|t| c.attempt >= t.attempt)
    };
    let cases: Vec<TestCase> = fetch(client, request, |c, n| {
        !failed(c) || n >= SUMMARY_LINES * (1 + run.retries as usize)
    })
    .await?
    .into_iter()
    .filter(latest)
    .take(SUMMARY_LINES)
    .collect();
    out.push_str(&format!(
        "{} failed, {} errored of {} cases\n",
        counts.failed, counts.errored, counts.total
    ));
    for case in &cases {
        out.push_str(&failed_line(case));
        out.push('\n');
    }
    if failing > cases.len() as u64 {
        out.push_str(&format!(
            "... and {} more (testrunner cases {} --status failed)\n",
            failing - cases.len() as u64,
            run.id
        ));
    }
    Ok(out)
}

/// One case per line for `testrunner cases`, with the message of a failed
/// one indented below it.
pub fn case_lines(case: &TestCase) -> String {
    let duration = case.duration.map_or_else(String::new, |d| {
        format!("{:.3}s", d.seconds as f64 + f64::from(d.nanos) / 1e9)
    });
    let mut out = format!(
        "{:<8} {} {}\n",
        status_word(case.status),
        case_id(case),
        duration
    );
    if failed(case) || case.status == test_case::Status::Skipped as i32 {
        for line in case.message.lines().take(5) {
            out.push_str(&format!("         {line}\n"));
        }
    }
    out
}

fn duration(d: Option<prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(d).ok())
}

/// The case that stands for a test whose report shows no failure although
/// the test did not pass (or that wrote no report): never a false green in
/// the CI that ingests the document.
fn file_case(t: &Test, cases: &[&TestCase]) -> Option<quick_junit::TestCase> {
    use quick_junit::{NonSuccessKind, TestCaseStatus};
    let passed = t.status == test::Status::Passed as i32;
    let any_failed = cases.iter().any(|c| failed(c));
    if !cases.is_empty() && (passed || any_failed) {
        return None;
    }
    let status = match test::Status::try_from(t.status) {
        Ok(test::Status::Passed) => TestCaseStatus::success(),
        Ok(test::Status::Cancelled | test::Status::Queued | test::Status::Running) => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(test::Status::try_from(t.status).map_or("", |s| s.as_str_name()));
            s
        }
        _ => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let why = match (&t.exit_code, t.error.as_str()) {
                (_, e) if !e.is_empty() => e.to_owned(),
                (Some(code), _) => format!("exit code {code}"),
                (None, _) => "failed".to_owned(),
            };
            s.set_message(format!(
                "{} {why}",
                test::Status::try_from(t.status).map_or("FAILED", |s| s.as_str_name())
            ));
            s
        }
    };
    let mut case = quick_junit::TestCase::new(t.name.clone(), status);
    case.set_classname(t.name.clone());
    if let Some(d) = duration(t.duration) {
        case.set_time(d);
    }
    Some(case)
}

/// A Testrun and its cases as one JUnit XML document: one `<testsuite>`
/// per test (file), its cases inside, plus a case for the file itself when
/// its exit code failed it but no case says so.
pub fn junit_document(
    run: &Testrun,
    cases: &[TestCase],
) -> Result<String, quick_junit::SerializeError> {
    use quick_junit::{NonSuccessKind, Report, TestCaseStatus, TestSuite};
    let mut report = Report::new(format!("testrun {}", run.id));
    for t in &run.tests {
        // The latest attempt that has cases (earlier attempts' are kept by
        // the coordinator: a FLAKY test's first failure must not read red).
        let last = cases
            .iter()
            .filter(|c| c.test_id == t.id)
            .map(|c| c.attempt)
            .max();
        let mine: Vec<&TestCase> = cases
            .iter()
            .filter(|c| c.test_id == t.id && Some(c.attempt) == last)
            .collect();
        let mut suite = TestSuite::new(t.name.clone());
        if let Some(d) = duration(t.duration) {
            suite.set_time(d);
        }
        if !t.note.is_empty() {
            suite.set_system_err(format!("testrunner: {}", t.note));
        }
        suite.add_test_cases(file_case(t, &mine));
        for c in &mine {
            let status = match test_case::Status::try_from(c.status) {
                Ok(test_case::Status::Failed | test_case::Status::Error) => {
                    let kind = if c.status == test_case::Status::Error as i32 {
                        NonSuccessKind::Error
                    } else {
                        NonSuccessKind::Failure
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    s.set_message(c.message.clone());
                    if !c.details.is_empty() {
                        s.set_description(c.details.clone());
                    }
                    s
                }
                Ok(test_case::Status::Skipped) => {
                    let mut s = TestCaseStatus::skipped();
                    if !c.message.is_empty() {
                        s.set_message(c.message.clone());
                    }
                    s
                }
                _ => TestCaseStatus::success(),
            };
            let mut case = quick_junit::TestCase::new(c.name.clone(), status);
            case.set_classname(c.classname.clone());
            if let Some(d) = duration(c.duration) {
                case.set_time(d);
            }
            if !c.system_out.is_empty() {
                case.set_system_out(c.system_out.clone());
            }
            if !c.system_err.is_empty() {
                case.set_system_err(c.system_err.clone());
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(
        test_name: &str,
        classname: &str,
        name: &str,
        status: test_case::Status,
        message: &str,
    ) -> TestCase {
        TestCase {
            test_id: 1,
            test_name: test_name.into(),
            classname: classname.into(),
            name: name.into(),
            status: status as i32,
            message: message.into(),
            ..Default::default()
        }
    }

    #[test]
    fn failed_lines_read_like_pytests() {
        let c = case(
            "test_x.py",
            "test_x.TestA",
            "test_b",
            test_case::Status::Failed,
            "AssertionError: assert 1 == 2\nmore",
        );
        assert_eq!(
            failed_line(&c),
            "FAILED test_x.py::TestA::test_b: AssertionError: assert 1 == 2"
        );
        let e = case(
            "test_x.py",
            "test_x",
            "test_e",
            test_case::Status::Error,
            "",
        );
        assert_eq!(failed_line(&e), "ERROR test_x.py::test_e");
        let n = case(
            "math.test.js",
            "test",
            "adds",
            test_case::Status::Failed,
            "x",
        );
        assert_eq!(case_id(&n), "math.test.js::test::adds");
    }

    #[test]
    fn a_failed_test_without_failed_cases_gets_a_case_of_its_own() {
        let t = Test {
            id: 1,
            name: "t.sh".into(),
            status: test::Status::TimedOut as i32,
            error: "timed out after 1s".into(),
            ..Default::default()
        };
        let run = Testrun {
            id: 7,
            tests: vec![t],
            ..Default::default()
        };
        let ok = case("t.sh", "c", "fine", test_case::Status::Passed, "");
        let xml = junit_document(&run, &[ok]).unwrap();
        assert!(
            xml.contains(r#"<failure message="TIMED_OUT timed out after 1s""#),
            "{xml}"
        );
        assert!(xml.contains(r#"name="fine""#), "{xml}");
    }
}
