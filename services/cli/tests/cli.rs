//! The `testrunner` command against a real coordinator and runner.

use std::process::{Command, Output};

use testkit::bin;
use testkit::e2e::*;

fn testrunner(coord: &Coordinator, args: &[&str]) -> Output {
    Command::new(bin("testrunner"))
        .arg("--coordinator")
        .arg(coord.url())
        .args(args)
        .env_remove("TESTRUNNER_API_TOKEN")
        .output()
        .expect("testrunner runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn run_follows_a_testrun_and_exits_with_its_verdict() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let _r = Runner::start(&coord, "r1", 2);
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.sh");
    let bad = dir.path().join("bad.sh");
    std::fs::write(&ok, "echo hello from ok\n").unwrap();
    std::fs::write(&bad, "echo about to fail\nexit 4\n").unwrap();

    let out = testrunner(&coord, &["run", "--user", "ci", ok.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[ok.sh] hello from ok"), "{stdout}");
    assert!(stderr.contains("SUCCESS"), "{stderr}");

    let out = testrunner(
        &coord,
        &[
            "run",
            "--user",
            "ci",
            ok.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("[bad.sh] about to fail"), "{stdout}");
    assert!(
        stderr.contains("FAILED") && stderr.contains("exit 4"),
        "{stderr}"
    );

    let (list, _) = text(&testrunner(&coord, &["list", "--user", "ci"]));
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.lines().next().unwrap().contains("FAILED"),
        "newest first: {list}"
    );
    let (log, _) = text(&testrunner(&coord, &["logs", "2", "bad.sh"]));
    assert_eq!(log, "about to fail\n");
    let (get, _) = text(&testrunner(&coord, &["get", "1"]));
    assert!(get.contains("ok.sh") && get.contains("PASSED"), "{get}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_and_unknown_ids_are_explained_with_exit_code_2() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.sh");
    std::fs::write(&f, "true\n").unwrap();

    let out = testrunner(&coord, &["run", "--user", "", f.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("username"),
        "{stderr}"
    );

    let out = testrunner(&coord, &["get", "42"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("NotFound"), "{:?}", text(&out));

    let out = testrunner(&coord, &["run", "/nonexistent/file.sh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("reading /nonexistent/file.sh"));
}

/// `run --workspace`: patterns over the checkout, only missing blobs sent.
mod workspace {
    use super::*;

    fn write(root: &std::path::Path, rel: &str, content: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn run_detached(coord: &Coordinator, dir: &std::path::Path, patterns: &[&str]) -> Output {
        let mut args = vec![
            "run",
            "--detach",
            "--workspace",
            dir.to_str().unwrap(),
            "--setup",
            "pip install -e .",
            "--env",
            "PYTHONPATH=src",
        ];
        args.extend_from_slice(patterns);
        testrunner(coord, &args)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_rerun_of_an_unchanged_checkout_sends_no_file_and_a_change_sends_one() {
        let coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/pkg/__init__.py", "VALUE = 1\n");
        write(dir.path(), "tests/test_a.py", "def test_a(): pass\n");
        write(dir.path(), "tests/unit/test_b.py", "def test_b(): pass\n");
        write(dir.path(), ".gitignore", "build/\n");
        write(dir.path(), "build/huge.bin", "ignored\n");
        write(dir.path(), ".git/config", "never uploaded\n");

        let out = run_detached(&coord, dir.path(), &["tests/**/test_*.py"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stderr.contains(": 4 files,"), "{stderr}");
        assert!(stderr.contains("sent 4 files"), "{stderr}");
        let id: i64 = stdout.trim().parse().expect("the id on stdout");
        let mut client = coord.client().await;
        let run = get(&mut client, id).await;
        let names: Vec<&str> = run.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["tests/test_a.py", "tests/unit/test_b.py"]);
        assert_eq!(run.workspace.as_ref().map(|w| w.files), Some(4));
        assert_eq!(run.setup.as_deref(), Some("pip install -e ."));
        assert_eq!(run.env.get("PYTHONPATH").map(String::as_str), Some("src"));

        let out = run_detached(&coord, dir.path(), &["tests/test_a.py::test_a"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stderr.contains("sent 0 files (0 bytes), 4 already there"),
            "{stderr}"
        );

        write(
            dir.path(),
            "tests/unit/test_b.py",
            "def test_b(): assert True\n",
        );
        let out = run_detached(&coord, dir.path(), &["tests/**/test_*.py"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stderr.contains("sent 1 files"), "{stderr}");
        assert!(stderr.contains("3 already there"), "{stderr}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_pattern_matching_nothing_is_exit_2_naming_it() {
        let coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "tests/test_a.py", "def test_a(): pass\n");
        let out = run_detached(&coord, dir.path(), &["tests/test_a.py", "spec/**/*.py"]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
        assert!(stderr.contains("\"spec/**/*.py\""), "{stderr}");
    }
}
