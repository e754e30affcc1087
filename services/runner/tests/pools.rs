//! Runner pools by label (issue 16): a Testrun with a selector runs only on
//! runners that have all of its labels, says what it waits for while none
//! is attached, never holds other Testruns up, and runs as soon as such a
//! runner attaches; on both stores and across coordinators.

use std::collections::HashMap;
use std::time::Duration;

use testkit::e2e::*;
use testrunner_proto::v1::testrun_event::Event;
use testrunner_proto::v1::{
    CreateTestrunRequest, ListTestrunsRequest, TestFile, Testrun, WatchTestrunRequest, testrun,
};
use tokio::task::JoinHandle;

const LIMIT: Duration = Duration::from_secs(30);

fn selector(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn create_with(
    client: &mut Client,
    files: Vec<TestFile>,
    selector: HashMap<String, String>,
) -> Testrun {
    client
        .create_testrun(CreateTestrunRequest {
            username: "e2e".into(),
            tests: files,
            selector,
            ..CreateTestrunRequest::default()
        })
        .await
        .expect("create")
        .into_inner()
}

/// Every `waiting` a watcher of the Testrun is told, in order (changes
/// only), until the watch ends with the Testrun.
fn watch_waiting(mut client: Client, id: i64) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut stream = client
            .watch_testrun(WatchTestrunRequest {
                id,
                after: 0,
                from_end: false,
            })
            .await
            .expect("watch")
            .into_inner();
        let mut seen: Vec<String> = Vec::new();
        while let Ok(Some(event)) = stream.message().await {
            let waiting = match event.event {
                Some(Event::Snapshot(r)) | Some(Event::Testrun(r)) => r.waiting,
                _ => continue,
            };
            if seen.last() != Some(&waiting) {
                seen.push(waiting);
            }
        }
        seen
    })
}

async fn waits_for(client: &mut Client, id: i64, reason: &str) -> Testrun {
    wait_until(client, id, LIMIT, reason, |r| r.waiting == reason).await
}

on_both_stores! {
    a_selector_no_runner_matches_waits_and_runs_when_one_attaches(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _plain = Runner::start_with(&coord, "plain", 2, &["--label", "os=linux"]);
        let mut client = coord.client().await;
        let gpu = create_with(
            &mut client,
            vec![file("g1.sh", "echo on gpu\n"), file("g2.sh", "echo on gpu\n")],
            selector(&[("gpu", "a100"), ("zone", "b")]),
        )
        .await;
        let watcher = watch_waiting(coord.client().await, gpu.id);
        let reason = "waiting for a runner with gpu=a100,zone=b";

        // A Testrun without a selector runs to the end meanwhile, although
        // the waiting one is older (first in the queue).
        let other = create(&mut client, vec![file("a.sh", "echo a\n"), file("b.sh", "echo b\n")], None, None).await;
        let other = wait_done(&mut client, other.id).await;
        assert_eq!(other.status, testrun::Status::Success as i32);
        assert!(other.waiting.is_empty());

        let run = waits_for(&mut client, gpu.id, reason).await;
        assert_eq!(run.status, testrun::Status::Created as i32);
        assert_eq!(run.counts.unwrap().queued, 2);
        let listed = client
            .list_testruns(ListTestrunsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let row = listed.testruns.iter().find(|r| r.id == gpu.id).expect("listed");
        assert_eq!(row.waiting, reason);
        assert_eq!(row.selector, selector(&[("gpu", "a100"), ("zone", "b")]));
        // Its queue is its own series, for its own pool's autoscaler.
        coord.metric_reaches("testrunner_tests_queued{selector=\"gpu=a100,zone=b\"}", 2.0).await;

        // A runner with only part of the selector does not take them: a
        // Testrun created after it attached runs on it, while the older
        // one, first in the queue, still waits.
        let _partial = Runner::start_with(&coord, "partial", 2, &["--label", "gpu=a100"]);
        coord.metric_reaches("testrunner_runners_connected", 2.0).await;
        let later = create(
            &mut client,
            (0..6).map(|i| file(&format!("l{i}.sh"), "echo later\n")).collect(),
            None,
            None,
        )
        .await;
        let later = wait_done(&mut client, later.id).await;
        assert_eq!(later.status, testrun::Status::Success as i32);
        let run = waits_for(&mut client, gpu.id, reason).await;
        assert_eq!(run.counts.unwrap().queued, 2, "{run:?}");

        // A runner with every label, and more, takes them.
        let _gpu = Runner::start_with(
            &coord,
            "gpu",
            1,
            &["--label", "zone=b", "--label", "gpu=a100", "--label", "os=linux"],
        );
        let run = wait_done(&mut client, gpu.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32);
        assert!(run.waiting.is_empty(), "{run:?}");
        assert_eq!(test_named(&run, "g1.sh").runner, "gpu");
        assert_eq!(test_named(&run, "g2.sh").runner, "gpu");
        assert_eq!(log_of(&mut client, gpu.id, "g1.sh").await, ["on gpu"]);

        // Watchers were told when it started and stopped waiting.
        let seen = tokio::time::timeout(LIMIT, watcher).await.expect("the watch ends").unwrap();
        assert!(seen.iter().any(|w| w == reason), "{seen:?}");
        assert_eq!(seen.last().map(String::as_str), Some(""), "{seen:?}");
        // A selector with nothing queued or running has no series left
        // (the deploy/ queries read a missing one as 0).
        eventually("the pool's series to go", LIMIT, async || {
            let m = coord.metrics().await;
            match m.get("testrunner_tests_queued{selector=\"gpu=a100,zone=b\"}") {
                None | Some(0.0) => Ok(()),
                Some(v) => Err(v),
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_coordinators_agree_on_which_testruns_wait() {
    let a = Coordinator::start(Backend::Postgres, &[]).await;
    let b = Coordinator::start_sharing(&a, &[]);
    let _plain = Runner::start_with(&a, "plain-on-a", 2, &["--label", "os=linux"]);
    let mut via_b = b.client().await;
    let mut via_a = a.client().await;
    let gpu = create_with(
        &mut via_b,
        vec![file("g.sh", "echo gpu\n")],
        selector(&[("pool", "gpu")]),
    )
    .await;
    let watcher = watch_waiting(b.client().await, gpu.id);
    let reason = "waiting for a runner with pool=gpu";

    // Created through B, run by A's runner.
    let plain = create(&mut via_b, vec![file("p.sh", "echo p\n")], None, None).await;
    let plain = wait_done(&mut via_b, plain.id).await;
    assert_eq!(plain.status, testrun::Status::Success as i32);
    assert_eq!(test_named(&plain, "p.sh").runner, "plain-on-a");

    // B knows of A's runner (from the database) and says it does not fit;
    // so does A.
    waits_for(&mut via_b, gpu.id, reason).await;
    waits_for(&mut via_a, gpu.id, reason).await;

    // A fitting runner attaches to A: the Testrun created through B runs,
    // and B (its watchers too) sees it stop waiting.
    let _gpu = Runner::start_with(&a, "gpu-on-a", 1, &["--label", "pool=gpu"]);
    let run = wait_done(&mut via_b, gpu.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32);
    assert!(run.waiting.is_empty(), "{run:?}");
    assert_eq!(test_named(&run, "g.sh").runner, "gpu-on-a");
    let seen = tokio::time::timeout(LIMIT, watcher)
        .await
        .expect("the watch ends")
        .unwrap();
    assert!(seen.iter().any(|w| w == reason), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some(""), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_refuses_a_label_the_coordinator_would_refuse() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let mut runner = Runner::start_with(&coord, "bad", 1, &["--label", "gpu=a 100"]);
    let code = runner.wait_exit(LIMIT).await;
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}");
    assert!(runner.log().contains("--label"), "{}", runner.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_sends_a_selector_and_says_what_the_run_waits_for() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("t.sh");
    std::fs::write(&test, "echo from the pool\n").unwrap();
    let bad = testrunner(
        &coord,
        &["run", "--selector", "pool", test.to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(2), "{:?}", text(&bad));
    assert!(text(&bad).1.contains("--selector"), "{:?}", text(&bad));

    // Follows in the background while no runner fits, then one attaches.
    let coord_url = coord.url();
    let path = test.to_str().unwrap().to_owned();
    let cli = tokio::task::spawn_blocking(move || {
        std::process::Command::new(testkit::bin("testrunner"))
            .args([
                "--coordinator",
                &coord_url,
                "run",
                "--selector",
                "pool=gpu",
                &path,
            ])
            .env_remove("TESTRUNNER_API_TOKEN")
            .output()
            .expect("testrunner runs")
    });
    let mut client = coord.client().await;
    eventually("the CLI's Testrun to wait", LIMIT, async || {
        let runs = client
            .list_testruns(ListTestrunsRequest::default())
            .await
            .unwrap()
            .into_inner();
        match runs.testruns.first() {
            Some(r) if r.waiting == "waiting for a runner with pool=gpu" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let _gpu = Runner::start_with(&coord, "gpu", 1, &["--label", "pool=gpu"]);
    let out = tokio::time::timeout(LIMIT, cli)
        .await
        .expect("the CLI ends")
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("[t.sh] from the pool"), "{stdout}");
    assert!(
        stderr.contains("testrunner: waiting for a runner with pool=gpu"),
        "{stderr}"
    );
}
