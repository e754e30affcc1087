//! Workspaces end to end (protocol rule 12): the `testrunner` CLI uploads a
//! real checkout to a real coordinator, real runners fetch it into their
//! caches, run the Testrun's set-up once each, and run every test in a
//! private copy. Needs `python3` with `venv`, `pip`, `setuptools` and
//! `pytest` on the runners' test PATH (`/usr/bin/python3` here).

use std::path::Path;
use std::process::Command;

use testkit::e2e::*;
use testrunner_proto::v1::{setup, test, testrun};

/// A venv that sees the system's pytest and setuptools, with the package
/// installed editable: no network needed.
const SETUP: &str = "python3 -m venv --without-pip --system-site-packages .venv && \
    python3 -m pip --python .venv/bin/python install -q --no-build-isolation --no-deps --no-index -e .";
const PYTEST: &str = ".venv/bin/python -m pytest -q -p no:cacheprovider {file}";

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A package in a `src/` layout that its tests import: they pass only once
/// `pip install -e .` ran.
fn package(root: &Path) {
    write(
        root,
        "pyproject.toml",
        "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
         [project]\nname = \"greet\"\nversion = \"0.1.0\"\n\n\
         [tool.setuptools.packages.find]\nwhere = [\"src\"]\n",
    );
    write(
        root,
        "src/greet/__init__.py",
        "def hello(name):\n    return f'hello {name}'\n",
    );
    write(
        root,
        "tests/test_greet.py",
        "import greet\n\ndef test_hello():\n    assert greet.hello('x') == 'hello x'\n\n\
         class TestMore:\n    def test_upper(self):\n        assert greet.hello('X').endswith('X')\n",
    );
    // Each of these writes into its copy and fails if another test's
    // writes (or its own earlier attempt's) were visible.
    for n in 1..=4 {
        write(
            root,
            &format!("tests/test_private_{n}.py"),
            "import os, pathlib\n\n\
             def test_writes_stay_in_my_copy():\n\
             \x20   marker = pathlib.Path('src/greet/marker.txt')\n\
             \x20   assert not marker.exists(), 'another test wrote into my copy'\n\
             \x20   marker.write_text('mine')\n\
             \x20   pathlib.Path('src/greet/__init__.py').write_text('broken = (\\n')\n\
             \x20   assert os.environ['CI'] == 'true' and os.environ.get('TESTRUNNER_RUNNER_TOKEN') is None\n\
             \x20   assert os.stat('.').st_uid == os.geteuid(), 'my copy is not mine'\n\
             \x20   pathlib.Path(os.environ['HOME'], 'home.txt').write_text('mine')\n",
        );
    }
}

/// Uploads `dir` and creates a Testrun of `patterns` without following it.
fn submit(coord: &Coordinator, dir: &Path, setup: &str, patterns: &[&str]) -> i64 {
    let mut args = vec!["--setup", setup, "--command", PYTEST];
    args.extend_from_slice(patterns);
    submit_args(coord, dir, &args)
}

fn submit_args(coord: &Coordinator, dir: &Path, extra: &[&str]) -> i64 {
    let mut args = vec![
        "run",
        "--detach",
        "--workspace",
        dir.to_str().unwrap(),
        "--env",
        "CI=true",
    ];
    args.extend_from_slice(extra);
    let out = testrunner(coord, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout.trim().parse().expect("the id on stdout")
}

fn setups_of(run: &testrunner_proto::v1::Testrun) -> Vec<(String, i32, bool)> {
    let mut s: Vec<_> = run
        .setups
        .iter()
        .map(|s| (s.runner.clone(), s.status, s.reused))
        .collect();
    s.sort();
    s
}

on_both_stores! {
    a_src_layout_package_runs_after_its_set_up_each_test_in_its_own_copy(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let cache = tempfile::tempdir().unwrap();
        let cache_dir = cache.path().to_str().unwrap();
        let r1 = Runner::start_with(&coord, "r1", 2, &["--cache-dir", cache_dir]);
        let _r2 = Runner::start(&coord, "r2", 1);
        let dir = tempfile::tempdir().unwrap();
        package(dir.path());
        let id = submit(&coord, dir.path(), SETUP, &[
            "tests/test_greet.py::test_hello",
            "tests/test_greet.py::TestMore",
            "tests/test_private_*.py",
        ]);
        let mut client = coord.client().await;
        let run = wait_done(&mut client, id).await;
        if run.status != testrun::Status::Success as i32 {
            let log = log_of(&mut client, id, &run.tests[0].name).await;
            panic!("{log:#?}\n{run:#?}\n{}", r1.log());
        }
        assert_eq!(run.tests.len(), 6);
        for t in &run.tests {
            assert_eq!(t.status, test::Status::Passed as i32, "{}: {t:#?}", t.name);
        }
        // One set-up per runner that ran tests, none reused the first time.
        let setups = setups_of(&run);
        assert!(!setups.is_empty(), "{run:#?}");
        for (runner, status, reused) in &setups {
            assert_eq!(*status, setup::Status::Passed as i32, "{runner}: {run:#?}");
            assert!(!reused, "{runner}");
        }
        // Nothing of what the tests wrote reached the checkout or the cache.
        assert!(!dir.path().join("src/greet/marker.txt").exists());

        // The same checkout and set-up again: reused, nothing run.
        let again = submit(&coord, dir.path(), SETUP, &["tests/test_greet.py"]);
        let run = wait_done(&mut client, again).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        let setups = setups_of(&run);
        assert_eq!(setups.len(), 1, "{run:#?}");
        assert!(setups[0].2, "reused: {run:#?}");
    }

    a_failed_set_up_is_reported_and_its_tests_end_error_naming_it(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let r1 = Runner::start(&coord, "r1", 2);
        let dir = tempfile::tempdir().unwrap();
        package(dir.path());
        let id = submit(&coord, dir.path(), "echo cannot install; exit 7", &["tests/test_greet.py"]);
        let mut client = coord.client().await;
        let run = wait_done(&mut client, id).await;
        let t = &run.tests[0];
        assert_eq!(t.status, test::Status::Error as i32, "{run:#?}\n{}", r1.log());
        let setup = &run.setups[0];
        assert_eq!(setup.status, setup::Status::Failed as i32, "{run:#?}");
        assert_eq!(setup.exit_code, Some(7));
        assert!(setup.output.contains("cannot install"), "{setup:#?}");
        assert!(format!("{run:?}").contains("exit 7"), "the tests' error names the set-up: {run:#?}");
    }

    a_corrupted_cache_entry_is_fetched_again(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let cache = tempfile::tempdir().unwrap();
        let cache_dir = cache.path().to_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        package(dir.path());
        let source = "def hello(name):\n    return f'hello {name}'\n";
        {
            let r1 = Runner::start_with(&coord, "r1", 1, &["--cache-dir", cache_dir]);
            let id = submit(&coord, dir.path(), SETUP, &["tests/test_greet.py"]);
            let mut client = coord.client().await;
            let run = wait_done(&mut client, id).await;
            assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}\n{}", r1.log());
        }
        // The package's source in the cache, changed on disk with its size
        // kept: only hashing finds it.
        let blobs = cache.path().join("blobs");
        let entry = std::fs::read_dir(&blobs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| std::fs::read(p).is_ok_and(|b| b == source.as_bytes()))
            .expect("the source is cached");
        std::fs::write(&entry, source.replace("hello", "HELLO")).unwrap();

        // A new runner process on the same cache (prepared directories are
        // not kept across restarts, cached blobs are).
        let r2 = Runner::start_with(&coord, "r2", 1, &["--cache-dir", cache_dir]);
        let id = submit(&coord, dir.path(), SETUP, &["tests/test_greet.py"]);
        let mut client = coord.client().await;
        let run = wait_done(&mut client, id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}\n{}", r2.log());
        assert!(r2.log().contains("cache entry corrupted"), "{}", r2.log());
        assert_eq!(std::fs::read_to_string(&entry).unwrap(), source, "fetched again");
    }

    a_fetch_cut_by_a_coordinator_restart_resumes_where_it_was(backend) {
        let mut coord = Coordinator::start(backend, &[]).await;
        let cache = tempfile::tempdir().unwrap();
        let cache_dir = cache.path().to_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        // 96 MiB that compress and dedupe to nothing useful.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let big: Vec<u8> = (0..96 << 20)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        std::fs::write(dir.path().join("big.bin"), &big).unwrap();
        let sum = Command::new("sha256sum").arg(dir.path().join("big.bin")).output().unwrap();
        let sum = String::from_utf8_lossy(&sum.stdout).split(' ').next().unwrap().to_owned();
        write(dir.path(), "tests/check.sh", &format!(
            "echo \"{sum}  big.bin\" | sha256sum -c -\n"
        ));
        let r1 = Runner::start_with(&coord, "r1", 1, &["--cache-dir", cache_dir]);
        let id = submit_args(&coord, dir.path(), &["tests/check.sh"]);

        // Part of the blob is in the runner's cache: cut the coordinator.
        let partial = cache.path().join("tmp");
        let started = std::time::Instant::now();
        loop {
            let written = std::fs::read_dir(&partial)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.metadata().is_ok_and(|m| m.len() > 0 && m.len() < big.len() as u64));
            if written {
                break;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(120), "the fetch never started: {}", r1.log());
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        coord.kill();
        eventually("the runner to see its read cut", std::time::Duration::from_secs(60), async || {
            if r1.log().contains("blob read interrupted; resuming") { Ok(()) } else { Err("not yet") }
        })
        .await;
        coord.restart();
        let mut client = coord.client().await;
        let run = wait_done(&mut client, id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}\n{}", r1.log());
        let log = r1.log();
        let resumed_past_zero = log
            .lines()
            .filter(|l| l.contains("blob read interrupted; resuming"))
            .any(|l| !l.contains("offset=0 "));
        assert!(resumed_past_zero, "resumed from the offset reached: {log}");
    }
}

/// The set-up is untrusted code too: with per-slot users (a root runner)
/// it runs as a test uid, not the runner's; what it makes is readable by
/// every slot's uid afterwards and writable by none, and a test still
/// cannot read another slot's work directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_set_up_runs_as_a_test_user_and_its_products_serve_every_slot() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: per-slot users need a root runner");
        return;
    }
    let coord = Coordinator::start(testkit::Backend::Sqlite, &[]).await;
    let r = Runner::start_with(&coord, "r", 2, &["--test-uid-base", "240000"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("t")).unwrap();
    for i in 0..2 {
        std::fs::write(
            dir.path().join(format!("t/t{i}.sh")),
            // Its copy is its own; the base the set-up ran in (where
            // `pip install -e .` points) is shared, so read-only.
            "echo me=$(id -u) setup=$(cat setup-uid)\n\
             base=$(cat setup-dir)\n\
             cat $base/product\n\
             (echo changed > $base/product) 2>/dev/null && echo product: writable || echo product: read-only\n\
             sleep 1\n",
        )
        .unwrap();
    }
    // umask 077: what the set-up makes is private to its uid until the
    // runner hands it back (readable by all, writable by none).
    let setup = "umask 077; id -u > setup-uid; pwd > setup-dir; echo built > product";
    let id = submit_args(
        &coord,
        dir.path(),
        &[
            "--setup",
            setup,
            "--command",
            "sh {file}",
            "t/t0.sh",
            "t/t1.sh",
        ],
    );
    let mut client = coord.client().await;
    let run = wait_done(&mut client, id).await;
    assert_eq!(
        run.status,
        testrun::Status::Success as i32,
        "{run:#?}\n{}",
        r.log()
    );
    let mut uids = Vec::new();
    for t in &run.tests {
        let log = log_of(&mut client, id, &t.name).await;
        let first = log
            .iter()
            .find(|l| l.starts_with("me="))
            .unwrap_or_else(|| panic!("{log:?}"));
        let (me, setup_uid) = first
            .strip_prefix("me=")
            .and_then(|rest| rest.split_once(" setup="))
            .unwrap_or_else(|| panic!("{log:?}"));
        let setup_uid: u32 = setup_uid
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{log:?}"));
        assert!(
            (240_000..240_002).contains(&setup_uid),
            "the set-up ran as a test uid: {log:?}"
        );
        uids.push(me.to_owned());
        assert!(
            log.contains(&"built".to_owned()),
            "the product is readable: {log:?}"
        );
        assert!(log.contains(&"product: read-only".to_owned()), "{log:?}");
    }
    uids.sort();
    uids.dedup();
    assert_eq!(
        uids.len(),
        2,
        "the two slots ran as different uids: {uids:?}"
    );
}
