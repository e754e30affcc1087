//! JUnit cases through the `testrunner` command: the failed-case summary
//! of `run` and `watch`, `testrunner cases`, and `testrunner junit`, whose
//! output an independent JUnit parser (the junit-parser crate) reads back.

use testkit::e2e::*;

const PYTEST_FILE: &str = r#"
class TestA:
    def test_b(self):
        assert 1 == 2

    def test_ok(self):
        pass

def test_ok_too():
    pass
"#;

#[tokio::test(flavor = "multi_thread")]
async fn run_summarises_failed_cases_and_junit_writes_a_document_a_parser_reads() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let _r = Runner::start(&coord, "r1", 2);
    let dir = tempfile::tempdir().unwrap();
    let py = dir.path().join("test_x.py");
    let sh = dir.path().join("crash.sh");
    std::fs::write(&py, PYTEST_FILE).unwrap();
    // No report and a failing exit code: the document must not call it green.
    std::fs::write(&sh, "exit 3\n").unwrap();
    let template = "python3 -m pytest -q -p no:cacheprovider {file} --junitxml={junit}";
    let out = testrunner(
        &coord,
        &[
            "run",
            "--user",
            "ci",
            "--command",
            template,
            py.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("FAILED test_x.py::TestA::test_b: assert 1 == 2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 failed, 0 errored of 3 cases"),
        "{stderr}"
    );

    let (watched, watch_err) = text(&testrunner(&coord, &["watch", "1"]));
    assert!(
        watch_err.contains("FAILED test_x.py::TestA::test_b"),
        "{watched}\n{watch_err}"
    );

    let (listed, _) = text(&testrunner(&coord, &["cases", "1", "--status", "failed"]));
    assert_eq!(
        listed
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>(),
        ["FAILED", "test_x.py::TestA::test_b"],
        "{listed}"
    );
    let (all, _) = text(&testrunner(&coord, &["cases", "1", "--test", "test_x.py"]));
    assert_eq!(
        all.lines().filter(|l| !l.starts_with(' ')).count(),
        3,
        "{all}"
    );
    let out = testrunner(&coord, &["cases", "1", "--status", "weird"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--status weird"), "{:?}", text(&out));

    // A second Testrun with a test that wrote no report and failed.
    let out = testrunner(&coord, &["run", "--user", "ci", sh.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));

    let out = testrunner(&coord, &["junit", "1"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let parsed =
        junit_parser::from_reader(std::io::Cursor::new(&out.stdout)).expect("valid JUnit XML");
    assert_eq!(
        (parsed.tests, parsed.failures, parsed.errors),
        (3, 1, 0),
        "{}",
        text(&out).0
    );
    let suite = &parsed.suites[0];
    assert_eq!(suite.name, "test_x.py");
    let b = suite
        .cases
        .iter()
        .find(|c| c.original_name == "test_b")
        .unwrap_or_else(|| panic!("{suite:#?}"));
    assert!(b.status.is_failure());
    assert_eq!(b.classname.as_deref(), Some("test_x.TestA"));

    let out = testrunner(&coord, &["junit", "2"]);
    let parsed =
        junit_parser::from_reader(std::io::Cursor::new(&out.stdout)).expect("valid JUnit XML");
    assert_eq!(
        (parsed.tests, parsed.failures),
        (1, 1),
        "never a false green: {}",
        text(&out).0
    );
}
