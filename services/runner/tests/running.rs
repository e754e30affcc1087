//! Real coordinator and runner processes run real test files.

use std::time::Duration;

use testkit::e2e::*;
use testrunner_proto::v1::{test, testrun};

on_both_stores! {
    each_way_of_running_a_file_reports_its_result_and_output(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 4);
        let mut client = coord.client().await;
        let run = create(&mut client, vec![
            file("pass.sh", "echo hello from sh\n"),
            file("fail.sh", "echo oops >&2\nexit 3\n"),
            file("noext", "#!/bin/sh\necho via shebang\n"),
            file("t.py", "print('from python')\n"),
            file("t.bash", "echo \"$BASH_VERSION\" | grep -q . && echo from bash\n"),
            file("t.js", "console.log('from node')\n"),
            file("weird.xyz", "whatever\n"),
        ], None, None).await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Failed as i32, "{run:#?}");

        for (name, status, code, line) in [
            ("pass.sh", test::Status::Passed, Some(0), "hello from sh"),
            ("fail.sh", test::Status::Failed, Some(3), "oops"),
            ("noext", test::Status::Passed, Some(0), "via shebang"),
            ("t.py", test::Status::Passed, Some(0), "from python"),
            ("t.bash", test::Status::Passed, Some(0), "from bash"),
            ("t.js", test::Status::Passed, Some(0), "from node"),
        ] {
            let t = test_named(&run, name);
            assert_eq!(status_of(&run, name), status, "{name}: {t:#?}");
            assert_eq!(t.exit_code, code, "{name}");
            assert_eq!(t.runner, "r1");
            assert_eq!(t.attempt, 1);
            assert!(t.duration.is_some());
            assert_eq!(log_of(&mut client, run.id, name).await, [line], "{name}");
        }
        // A file nobody can run is a failed test with the reason in its log.
        assert_eq!(status_of(&run, "weird.xyz"), test::Status::Failed);
        let log = log_of(&mut client, run.id, "weird.xyz").await;
        assert!(log[0].contains("no interpreter for extension .xyz"), "{log:?}");
    }

    a_command_template_runs_every_file(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 2);
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("a.txt", "echo A\n"), file("b.txt", "echo B\n")], Some("sh -e {file}"), None).await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32);
        assert_eq!(log_of(&mut client, run.id, "a.txt").await, ["A"]);
        assert_eq!(log_of(&mut client, run.id, "b.txt").await, ["B"]);
    }

    a_test_past_its_timeout_is_killed_as_timed_out(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start_with(&coord, "r1", 1, &["--kill-grace", "500ms"]);
        let mut client = coord.client().await;
        // The test ignores SIGTERM, so only the SIGKILL after the grace ends it.
        let run = create(&mut client, vec![file("slow.sh", "trap '' TERM\necho started\nsleep 30\n")], None, Some(1)).await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Failed as i32);
        assert_eq!(status_of(&run, "slow.sh"), test::Status::TimedOut);
        let t = test_named(&run, "slow.sh");
        assert!(t.error.contains("timed out after 1s"), "{t:#?}");
        assert_eq!(t.exit_code, None);
        let log = log_of(&mut client, run.id, "slow.sh").await;
        assert_eq!(log[0], "started");
        assert!(log.last().unwrap().contains("timed out"), "{log:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_test_starts_in_an_empty_directory_and_an_escaped_process_dies_with_its_test() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    // One slot: the tests run one after another, in order (the next one
    // often from the runner's queue, at once).
    let _r = Runner::start(&coord, "r1", 1);
    let mut client = coord.client().await;
    let look = "pwd\nls -A\n";
    let run = create(
        &mut client,
        vec![
            file("a.sh", look),
            // Leaves the process group, keeping the output pipe open.
            file("b.sh", "pwd\nsetsid sleep 4 &\nsleep 0.5\n"),
            file(
                "c.sh",
                &format!("{look}touch left-behind\nmkdir -p sub/dir\n"),
            ),
            file("d.sh", look),
        ],
        None,
        None,
    )
    .await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
    let mut dirs = Vec::new();
    for name in ["a.sh", "b.sh", "c.sh", "d.sh"] {
        let log = log_of(&mut client, run.id, name).await;
        // `ls -A` shows only the test's own file: nothing left by the last,
        // also after c.sh left files (its directory is emptied off the
        // runner's thread, or d.sh gets another one meanwhile).
        if name != "b.sh" {
            assert_eq!(log[1..], [name.to_owned()], "{name}: {log:?}");
        }
        dirs.push(log[0].clone());
    }
    // a.sh left nothing: its directory was back before its result.
    assert_eq!(dirs[0], dirs[1], "a clean directory is reused at once");
    // The process that left b.sh's group was killed when b.sh ended, so
    // nothing can write into its directory any more: it is reused too.
    let b = log_of(&mut client, run.id, "b.sh").await;
    assert_eq!(
        b.last().map(String::as_str),
        Some("[testrunner] killed 1 leftover process"),
        "{b:?}"
    );
    assert_eq!(dirs[1], dirs[2], "the escaped process is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn tests_never_see_the_runners_environment_or_token() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let _r = Runner::start(&coord, "r1", 1);
    let mut client = coord.client().await;
    let run = create(&mut client, vec![file("env.sh", "env\n")], None, None).await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32);
    let log = log_of(&mut client, run.id, "env.sh").await.join("\n");
    assert!(!log.contains(TOKEN), "the token leaked: {log}");
    assert!(!log.contains("RUNNER_TOKEN"), "{log}");
    assert!(log.contains("TESTRUNNER_TEST_NAME=env.sh"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_long_lines_are_cut_with_a_marker_and_output_is_capped() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let _r = Runner::start_with(
        &coord,
        "r1",
        1,
        &["--max-line-bytes", "100", "--max-output-bytes", "5000"],
    );
    let mut client = coord.client().await;
    let script = "head -c 1000 /dev/zero | tr '\\0' x; echo\necho short\nseq 1 10000\n";
    let run = create(&mut client, vec![file("long.sh", script)], None, None).await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32);
    let log = log_of(&mut client, run.id, "long.sh").await;
    assert_eq!(
        log[0],
        format!("{} … [truncated 900 bytes]", "x".repeat(100))
    );
    assert_eq!(log[1], "short");
    let last = log.last().unwrap();
    assert!(
        last.contains("output limit of 5000 bytes reached"),
        "{last}"
    );
    assert!(
        log.len() < 2000,
        "output past the cap was dropped ({} lines)",
        log.len()
    );
}

on_both_stores! {
    two_runners_share_a_batch(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _a = Runner::start(&coord, "r1", 2);
        let _b = Runner::start(&coord, "r2", 2);
        let mut client = coord.client().await;
        let files = (0..12).map(|i| file(&format!("t{i}.sh"), "sleep 0.3\necho done\n")).collect();
        let run = create(&mut client, files, None, None).await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32);
        let by = |name: &str| run.tests.iter().filter(|t| t.runner == name).count();
        assert!(by("r1") > 0 && by("r2") > 0, "both runners get work: r1={} r2={}", by("r1"), by("r2"));
        assert_eq!(by("r1") + by("r2"), 12);
    }

    a_runner_with_a_wrong_token_never_gets_work(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut client = coord.client().await;
        let bad = Runner::start_with(&coord, "bad", 2, &["--token", "wrong"]);
        let run = create(&mut client, vec![file("a.sh", "echo a\n")], None, None).await;
        // The bad runner keeps trying while a test waits, and is refused
        // each time: it never attaches, and the test stays queued.
        let refused = wait_for_metric(&coord.addr, "testrunner_runners_refused_total", "to reach 3", Duration::from_secs(30), |n| n >= 3.0).await;
        assert_eq!(refused.value("testrunner_runners_connected"), 0.0);
        let still = get(&mut client, run.id).await;
        assert_eq!(still.status, testrun::Status::Created as i32, "{still:#?}");
        // It tells its operator why (logged before it tried again).
        assert!(bad.log().contains("refused"), "runner log: {}", bad.log());

        let _good = Runner::start(&coord, "good", 1);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32);
        assert_eq!(test_named(&run, "a.sh").runner, "good");
    }
}
