//! Retries, FLAKY and reruns (issue 16, parts 3 and 4) with real
//! coordinator and runner processes: the tests keep their state between
//! attempts in files of a `shared_dir()`, so "fails once, then passes" is
//! a property of the script, not of timing.

use std::path::Path;

use testkit::e2e::*;
use testrunner_proto::v1::{
    CreateTestrunRequest, ListTestrunsRequest, RerunTestrunRequest, WatchTestrunRequest, test,
    testrun, testrun_event,
};
use tonic::Code;

/// Fails (exit 1) on its first run and passes on every later one, by a
/// marker file in `dir`; each run appends a line to `dir/<name>.runs`
/// (writable by all: a root runner runs each slot as its own user).
fn fails_once(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "umask 0\necho run >> {d}/{name}.runs\n\
         if [ -e {d}/{name}.marker ]; then echo second; exit 0; fi\n\
         touch {d}/{name}.marker\necho first\nexit 1\n"
    )
}

/// Fails every time, counting its runs in `dir/<name>.runs`.
fn always_fails(dir: &Path, name: &str) -> String {
    format!(
        "umask 0\necho run >> {}/{name}.runs\necho nope\nexit 1\n",
        dir.display()
    )
}

fn runs_of(dir: &Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{name}.runs")))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

async fn create_with_retries(
    client: &mut Client,
    files: Vec<testrunner_proto::v1::TestFile>,
    retries: u32,
) -> testrunner_proto::v1::Testrun {
    client
        .create_testrun(CreateTestrunRequest {
            username: "e2e".into(),
            tests: files,
            retries,
            ..CreateTestrunRequest::default()
        })
        .await
        .expect("create")
        .into_inner()
}

fn statuses(t: &testrunner_proto::v1::Test) -> Vec<test::Status> {
    t.attempts
        .iter()
        .map(|a| test::Status::try_from(a.status).expect("known status"))
        .collect()
}

on_both_stores! {
    a_test_that_fails_then_passes_on_a_retry_ends_flaky(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 2);
        let mut client = coord.client().await;
        let dir = shared_dir();
        let run = create_with_retries(&mut client, vec![
            file("flaky.sh", &fails_once(dir.path(), "flaky")),
            file("ok.sh", "echo fine\n"),
        ], 2).await;
        assert_eq!(run.retries, 2);
        let run = wait_done(&mut client, run.id).await;

        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        let counts = run.counts.unwrap();
        assert_eq!((counts.passed, counts.flaky, counts.failed), (2, 1, 0), "{counts:?}");
        let t = test_named(&run, "flaky.sh");
        assert_eq!(status_of(&run, "flaky.sh"), test::Status::Flaky, "{t:#?}");
        assert_eq!(t.attempt, 2);
        assert_eq!(t.exit_code, Some(0));
        assert_eq!(statuses(t), [test::Status::Failed, test::Status::Passed], "{t:#?}");
        assert_eq!(t.attempts[0].exit_code, Some(1));
        assert_eq!((t.attempts[0].attempt, t.attempts[1].attempt), (1, 2));
        assert!(t.attempts.iter().all(|a| a.runner == "r1" && a.finished_at.is_some()));
        assert_eq!(runs_of(dir.path(), "flaky"), 2);
        // Both attempts' lines, in order, numbered on from the first.
        assert_eq!(log_of(&mut client, run.id, "flaky.sh").await, ["first", "second"]);
        assert_eq!(statuses(test_named(&run, "ok.sh")), [test::Status::Passed]);

        // The list and a watch's snapshot say the same.
        let list = client
            .list_testruns(ListTestrunsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.testruns[0].counts.unwrap().flaky, 1);
        let mut watch = client
            .watch_testrun(WatchTestrunRequest { id: run.id, after: 0, from_end: false })
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().expect("a snapshot");
        let Some(testrun_event::Event::Snapshot(snapshot)) = first.event else {
            panic!("first event is not a snapshot: {first:?}");
        };
        assert_eq!(snapshot.counts.unwrap().flaky, 1);
        assert_eq!(statuses(test_named(&snapshot, "flaky.sh")).len(), 2);

        let m = coord.metrics().await;
        assert_eq!(m.value("testrunner_tests_finished_total{outcome=\"FLAKY\"}"), 1.0);
        assert_eq!(m.value("testrunner_tests_finished_total{outcome=\"FAILED\"}"), 0.0);
        assert_eq!(m.value("testrunner_test_retries_total"), 1.0);
    }

    the_cases_of_every_attempt_are_kept_and_the_test_counts_the_latest(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let dir = shared_dir();
        let d = dir.path().display();
        // Its JUnit report says the case failed the first time only.
        let script = format!(
            "umask 0\nif [ -e {d}/marker ]; then verdict='<testcase name=\"c\"/>'; code=0; \
             else touch {d}/marker; verdict='<testcase name=\"c\"><failure message=\"no\"/></testcase>'; code=1; fi\n\
             echo \"<testsuite>$verdict</testsuite>\" > \"$TESTRUNNER_JUNIT_XML\"\nexit $code\n"
        );
        let run = create_with_retries(&mut client, vec![file("j.sh", &script)], 1).await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(status_of(&run, "j.sh"), test::Status::Flaky);
        let counts = test_named(&run, "j.sh").cases.unwrap();
        assert_eq!((counts.total, counts.passed, counts.failed), (1, 1, 0), "{counts:?}");
        let cases = client
            .list_test_cases(testrunner_proto::v1::ListTestCasesRequest {
                testrun_id: run.id,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .cases;
        let mut seen: Vec<(u32, i32)> = cases.iter().map(|c| (c.attempt, c.status)).collect();
        seen.sort_unstable();
        use testrunner_proto::v1::test_case::Status as Case;
        assert_eq!(seen, [(1, Case::Failed as i32), (2, Case::Passed as i32)], "{cases:#?}");
    }

    a_test_that_always_fails_runs_exactly_retries_plus_one_times(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 2);
        let mut client = coord.client().await;
        let dir = shared_dir();
        let run = create_with_retries(
            &mut client,
            vec![file("bad.sh", &always_fails(dir.path(), "bad"))],
            2,
        ).await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Failed as i32);
        let t = test_named(&run, "bad.sh");
        assert_eq!(status_of(&run, "bad.sh"), test::Status::Failed);
        assert_eq!((t.attempt, t.exit_code), (3, Some(1)), "{t:#?}");
        assert_eq!(statuses(t), [test::Status::Failed; 3]);
        assert_eq!(runs_of(dir.path(), "bad"), 3);
        assert_eq!(log_of(&mut client, run.id, "bad.sh").await, ["nope", "nope", "nope"]);
        assert_eq!(run.counts.unwrap().flaky, 0);

        // Without retries a failure is final at once.
        let once = create_with_retries(
            &mut client,
            vec![file("once.sh", &always_fails(dir.path(), "once"))],
            0,
        ).await;
        let once = wait_done(&mut client, once.id).await;
        assert_eq!(status_of(&once, "once.sh"), test::Status::Failed);
        assert_eq!(test_named(&once, "once.sh").attempts.len(), 1);
        assert_eq!(runs_of(dir.path(), "once"), 1);

        // Out of range: INVALID_ARGUMENT naming the field.
        let err = client
            .create_testrun(CreateTestrunRequest {
                username: "e2e".into(),
                tests: vec![file("x.sh", "true\n")],
                retries: 6,
                ..CreateTestrunRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("retries"), "{err:?}");
    }

    a_retry_goes_to_another_runner_than_the_one_it_failed_on(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _a = Runner::start(&coord, "ra", 1);
        let _b = Runner::start(&coord, "rb", 1);
        let mut client = coord.client().await;
        // Both runners attached: otherwise a retry rightly goes to the
        // only one there is.
        coord.metric_reaches("testrunner_runners_connected", 2.0).await;
        let dir = shared_dir();
        let run = create_with_retries(
            &mut client,
            vec![file("bad.sh", &always_fails(dir.path(), "bad"))],
            2,
        ).await;
        let run = wait_done(&mut client, run.id).await;
        let t = test_named(&run, "bad.sh");
        let runners: Vec<&str> = t.attempts.iter().map(|a| a.runner.as_str()).collect();
        assert_eq!(runners.len(), 3, "{t:#?}");
        assert_ne!(runners[0], runners[1], "{t:#?}");
        assert_ne!(runners[1], runners[2], "{t:#?}");
    }

    a_finished_testrun_is_rerun_whole_or_only_its_failures(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 2);
        let mut client = coord.client().await;
        let dir = shared_dir();
        let original = client
            .create_testrun(CreateTestrunRequest {
                username: "alice".into(),
                tests: vec![
                    file("ok.txt", "echo fine\n"),
                    file("bad.txt", &always_fails(dir.path(), "bad")),
                ],
                command: Some("sh {file}".into()),
                timeout_seconds: Some(42),
                retries: 1,
                ..CreateTestrunRequest::default()
            })
            .await
            .unwrap()
            .into_inner();

        // Not while it runs.
        let err = client
            .rerun_testrun(RerunTestrunRequest { id: original.id, only_failed: false, username: None })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().starts_with("id"), "{err:?}");
        let original = wait_done(&mut client, original.id).await;
        assert_eq!(original.status, testrun::Status::Failed as i32);
        assert_eq!(runs_of(dir.path(), "bad"), 2, "{original:#?}");

        let failed = client
            .rerun_testrun(RerunTestrunRequest { id: original.id, only_failed: true, username: None })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(failed.rerun_of, Some(original.id));
        assert_eq!(failed.username, "alice");
        assert_eq!((failed.retries, failed.timeout_seconds), (1, 42));
        assert_eq!(failed.command.as_deref(), Some("sh {file}"));
        let names: Vec<&str> = failed.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["bad.txt"]);
        let failed = wait_done(&mut client, failed.id).await;
        assert_eq!(status_of(&failed, "bad.txt"), test::Status::Failed);
        assert_eq!(runs_of(dir.path(), "bad"), 4);

        let all = client
            .rerun_testrun(RerunTestrunRequest {
                id: original.id,
                only_failed: false,
                username: Some("bob".into()),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.username, "bob");
        let names: Vec<&str> = all.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ok.txt", "bad.txt"]);
        let all = wait_done(&mut client, all.id).await;
        assert_eq!(status_of(&all, "ok.txt"), test::Status::Passed);

        // Only the failures of a Testrun where everything passed: nothing.
        let good = create(&mut client, vec![file("ok.sh", "true\n")], None, None).await;
        wait_done(&mut client, good.id).await;
        let err = client
            .rerun_testrun(RerunTestrunRequest { id: good.id, only_failed: true, username: None })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().starts_with("only_failed"), "{err:?}");
        let err = client
            .rerun_testrun(RerunTestrunRequest { id: 999_999, only_failed: false, username: None })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_runs_with_retries_names_flaky_tests_and_reruns_failures() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let _r = Runner::start(&coord, "r1", 2);
    let dir = shared_dir();
    let files = tempfile::tempdir().unwrap();
    let flaky = files.path().join("flaky.sh");
    std::fs::write(&flaky, fails_once(dir.path(), "flaky")).unwrap();
    let bad = files.path().join("bad.sh");
    std::fs::write(&bad, always_fails(dir.path(), "bad")).unwrap();

    let out = testrunner(
        &coord,
        &[
            "run",
            "--retries",
            "1",
            flaky.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("1 flaky: flaky.sh"), "{stderr}");
    assert!(stderr.contains("RETRY"), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("FLAKY") && l.contains("flaky.sh")),
        "{stderr}"
    );
    let id: i64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("testrun ")?.split(' ').next()?.parse().ok())
        .expect("the id is printed");

    let out = testrunner(&coord, &["list"]);
    let (listing, _) = text(&out);
    assert!(listing.contains("(1 flaky)"), "{listing}");

    let out = testrunner(&coord, &["rerun", &id.to_string(), "--failed"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("(rerun of {id})")), "{stderr}");
    assert!(
        stderr.contains("bad.sh") && !stderr.contains("flaky.sh"),
        "{stderr}"
    );
    // bad.sh: twice in the run, twice in the rerun (retries are kept).
    assert_eq!(runs_of(dir.path(), "bad"), 4);
}

/// Two coordinators on one Postgres, a runner on each: a retry queued by
/// the coordinator of the runner it failed on is taken by the runner of the
/// other coordinator, and a test that then passes is FLAKY through either.
#[tokio::test(flavor = "multi_thread")]
async fn two_coordinators_agree_on_retries_and_flaky() {
    let a = Coordinator::start(Backend::Postgres, &[]).await;
    let b = Coordinator::start_sharing(&a, &[]);
    let _on_a = Runner::start(&a, "on-a", 1);
    let _on_b = Runner::start(&b, "on-b", 1);
    a.metric_reaches("testrunner_runners_connected", 1.0).await;
    b.metric_reaches("testrunner_runners_connected", 1.0).await;
    let dir = shared_dir();
    let mut via_a = a.client().await;
    let mut via_b = b.client().await;
    // One test at a time, so the other runner is always idle when a retry
    // is queued.
    let run = create_with_retries(
        &mut via_a,
        vec![file("bad.sh", &always_fails(dir.path(), "bad"))],
        2,
    )
    .await;
    let run = wait_done(&mut via_b, run.id).await;
    let t = test_named(&run, "bad.sh");
    let runners: Vec<&str> = t.attempts.iter().map(|x| x.runner.as_str()).collect();
    assert_eq!(runners.len(), 3, "{t:#?}");
    assert!(runners.windows(2).all(|w| w[0] != w[1]), "{runners:?}");
    assert_eq!(runs_of(dir.path(), "bad"), 3);

    let run = create_with_retries(
        &mut via_b,
        vec![file("flaky.sh", &fails_once(dir.path(), "flaky"))],
        2,
    )
    .await;
    let run = wait_done(&mut via_a, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32);
    assert_eq!(status_of(&run, "flaky.sh"), test::Status::Flaky);
    let t = test_named(&run, "flaky.sh");
    assert_ne!(t.attempts[0].runner, t.attempts[1].runner, "{t:#?}");
    assert_eq!(get(&mut via_b, run.id).await.counts.unwrap().flaky, 1);
}
