//! The `testrunner` command against a real coordinator and runner.

use std::process::{Command, Output};

use testkit::e2e::*;

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

/// End to end with real runners (runner contract rule 12): a package in a
/// src/ layout that only imports after its set-up step.
mod workspace_e2e {
    use super::*;

    fn write(root: &std::path::Path, rel: &str, content: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_src_layout_package_runs_after_its_set_up_over_two_runners() {
        let coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let _r1 = Runner::start(&coord, "r1", 2);
        let _r2 = Runner::start(&coord, "r2", 2);
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "pyproject.toml",
            "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
             [project]\nname = \"mypkg\"\nversion = \"0.1.0\"\n\n[tool.setuptools.packages.find]\nwhere = [\"src\"]\n",
        );
        write(
            dir.path(),
            "src/mypkg/__init__.py",
            "def add(a, b):\n    return a + b\n",
        );
        for i in 0..6 {
            write(
                dir.path(),
                &format!("tests/test_{i}.py"),
                &format!(
                    "import os\nfrom mypkg import add\nassert add({i}, 1) == {}\n\
                     assert os.environ['CI'] == 'true'\nprint('ok {i}')\n",
                    i + 1
                ),
            );
        }
        let out = testrunner(
            &coord,
            &[
                "run",
                "--workspace",
                dir.path().to_str().unwrap(),
                "--setup",
                "python3 -m venv .venv && .venv/bin/python -m pip install -q -e .",
                "--env",
                "CI=true",
                "--command",
                ".venv/bin/python {file}",
                "tests/test_*.py",
            ],
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        for i in 0..6 {
            assert!(
                stdout.contains(&format!("[tests/test_{i}.py] ok {i}")),
                "{stdout}"
            );
        }
        assert!(stderr.contains("set-up on runner"), "{stderr}");

        // The same tree without its set-up: the package does not import.
        let out = testrunner(
            &coord,
            &[
                "run",
                "--workspace",
                dir.path().to_str().unwrap(),
                "--command",
                "python3 {file}",
                "tests/test_0.py",
            ],
        );
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(stdout.contains("ModuleNotFoundError"), "{stdout}");
        assert!(stderr.contains("sent 0 files"), "{stderr}");
    }

    /// pytest's counts (`198 passed`, `1 failed`, ...) in a summary line.
    fn counts(line: &str) -> Vec<String> {
        let words: Vec<&str> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .collect();
        words
            .windows(2)
            .filter(|w| {
                w[0].parse::<u32>().is_ok()
                    && matches!(
                        w[1],
                        "passed"
                            | "failed"
                            | "skipped"
                            | "error"
                            | "errors"
                            | "xfailed"
                            | "xpassed"
                    )
            })
            .map(|w| format!("{} {}", w[0], w[1]))
            .collect()
    }

    /// Runs `script` with the `PATH` runners give tests (their default
    /// `--test-path`), so both sides use the same `python3`.
    fn sh(dir: &std::path::Path, script: &str) -> Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .output()
            .expect("sh runs")
    }

    /// A real package's suite from its PyPI sdist, through TestRunner and
    /// with pytest directly in the same checkout: the same outcome and the
    /// same counts.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_pypi_sdists_suite_matches_pytest_run_directly() {
        let coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let _r1 = Runner::start(&coord, "r1", 2);
        let tmp = tempfile::tempdir().unwrap();
        let got = sh(
            tmp.path(),
            "python3 -m pip download -q --no-binary :all: --no-deps six==1.16.0 && \
             mkdir direct via && tar xzf six-1.16.0.tar.gz -C direct && tar xzf six-1.16.0.tar.gz -C via",
        );
        assert!(got.status.success(), "{:?}", text(&got));
        let setup = "python3 -m venv .venv && .venv/bin/python -m pip install -q -e . pytest";
        let command = ".venv/bin/python -m pytest -q {file}";

        let direct_dir = tmp.path().join("direct/six-1.16.0");
        let direct = sh(
            &direct_dir,
            &format!("{setup} && {}", command.replace("{file}", "test_six.py")),
        );
        let (direct_out, direct_err) = text(&direct);
        let direct_summary = direct_out
            .lines()
            .rev()
            .find(|l| l.contains(" passed"))
            .unwrap_or_else(|| panic!("pytest printed no summary: {direct_out}\n{direct_err}"))
            .to_owned();

        let via_dir = tmp.path().join("via/six-1.16.0");
        let out = testrunner(
            &coord,
            &[
                "run",
                "--workspace",
                via_dir.to_str().unwrap(),
                "--setup",
                setup,
                "--command",
                command,
                "test_*.py",
            ],
        );
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.success(),
            direct.status.success(),
            "the file's outcome differs: {direct_summary}\n{stdout}\n{stderr}"
        );
        let via_summary = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("[test_six.py]") && l.contains(" passed"))
            .unwrap_or_else(|| panic!("no pytest summary through TestRunner: {stdout}\n{stderr}"));
        assert!(!counts(&direct_summary).is_empty(), "{direct_summary}");
        assert_eq!(
            counts(via_summary),
            counts(&direct_summary),
            "{via_summary} vs {direct_summary}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runners_and_their_tokens_are_managed_from_the_command_line() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let out = testrunner(
        &coord,
        &["runners", "token", "create", "--name", "pool-gpu"],
    );
    let (secret, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("not shown again"), "{stderr}");
    let secret = secret.trim().to_owned();
    assert!(secret.len() >= 40, "{secret}");
    let out = testrunner(
        &coord,
        &["runners", "token", "create", "--name", "pool-gpu"],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("AlreadyExists") && stderr.contains("name:"),
        "{stderr}"
    );

    let r = Runner::start_with(&coord, "gpu-1", 2, &["--token", &secret]);
    let line = eventually(
        "the runner to be listed",
        std::time::Duration::from_secs(20),
        async || {
            let (list, _) = text(&testrunner(&coord, &["runners", "list"]));
            match list.lines().find(|l| l.starts_with("gpu-1")) {
                Some(line) => Ok(line.to_owned()),
                None => Err(list),
            }
        },
    )
    .await;
    assert!(
        line.contains("token=pool-gpu") && line.contains("ACTIVE") && line.contains("0/2"),
        "{line}"
    );

    let (drained, _) = text(&testrunner(&coord, &["runners", "drain", "gpu-1"]));
    assert!(drained.contains("DRAINING"), "{drained}");
    let (tokens, _) = text(&testrunner(&coord, &["runners", "token", "list"]));
    assert!(
        tokens.starts_with("pool-gpu") && tokens.contains("ACTIVE"),
        "{tokens}"
    );
    let (revoked, _) = text(&testrunner(
        &coord,
        &["runners", "token", "revoke", "pool-gpu"],
    ));
    assert!(revoked.contains("REVOKED"), "{revoked}");
    eventually(
        "the runner to be cut off",
        std::time::Duration::from_secs(10),
        async || {
            if r.log().contains("was revoked") {
                Ok(())
            } else {
                Err(r.log())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_sets_limits_per_test_and_the_runner_applies_the_lower() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    // rlimits (no cgroups) show in /proc/self/limits; the runner's own
    // memory limit is 1 GiB and it has no process limit.
    let _r = Runner::start_with(
        &coord,
        "r",
        1,
        &[
            "--test-cgroups",
            "off",
            "--test-memory",
            "1GiB",
            "--test-uid-base",
            "230000",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("limits.sh");
    std::fs::write(
        &t,
        "grep -E 'Max (address space|processes)' /proc/self/limits\n",
    )
    .unwrap();
    let t = t.to_str().unwrap();

    let out = testrunner(
        &coord,
        &["run", "--test-memory", "512M", "--test-pids", "256", t],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = |what: &str| {
        stdout
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("Max address space").contains("536870912"),
        "the Testrun's, lower: {stdout}"
    );
    assert!(
        line("Max processes").contains(" 256 "),
        "the Testrun's, the runner has none: {stdout}"
    );

    let out = testrunner(&coord, &["run", "--test-memory", "4GiB", t]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = |what: &str| {
        stdout
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("Max address space").contains("1073741824"),
        "the runner's, lower: {stdout}"
    );

    let (get, _) = text(&testrunner(&coord, &["get", "1"]));
    assert!(get.contains("limits.sh"), "{get}");
    let out = testrunner(&coord, &["run", "--test-pids", "0", t]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("test_pids: must be above 0"), "{stderr}");
}
