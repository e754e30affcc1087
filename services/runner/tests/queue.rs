//! A runner's queue (protocol rule 3): while its tests are short, a runner
//! holds more tests than it has slots, and starts the next as soon as a slot
//! frees up. These tests check what the queue must never cost: a test kept
//! from a free runner, a cancelled test that runs anyway, a test that runs
//! twice, or a test a draining runner keeps. Each first makes sure the tests
//! are in the queue (held by a runner with one slot, every one RUNNING), so
//! that it tests the queue, not tests handed out one at a time.

use std::time::Duration;

use nix::sys::signal::Signal;
use testkit::e2e::*;
use testrunner_proto::v1::{CancelTestrunRequest, test, testrun};

/// Tests the coordinator handed out, counting a test again each time it
/// was handed back and out again.
const DISPATCHED: &str = "testrunner_dispatch_latency_seconds_count";
/// Test processes a runner started.
const STARTED: &str = "testrunner_runner_tests_started_total";

/// Runs short tests, so the coordinator learns that this runner's tests
/// are short and starts filling its queue.
async fn warm_up(client: &mut Client) {
    let files = (0..5)
        .map(|i| file(&format!("w{i}.sh"), "exit 0\n"))
        .collect();
    let run = create(client, files, None, None).await;
    let run = wait_done(client, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
}

/// A runner of one slot whose tests start as cheaply as they can: as the
/// runner's user and without a cgroup (so by `posix_spawn`, not `fork`).
/// These tests are about the coordinator's queue, which is only given to
/// runners whose recent tests were short (about 50 ms of work per slot);
/// on a loaded two-core machine the per-test cost of switching users and
/// joining a cgroup pushed the warm-up tests past that more often.
fn quick_runner(coord: &Coordinator, name: &str, extra: &[&str]) -> Runner {
    let args = [&["--test-user", "runner", "--test-cgroups", "off"], extra].concat();
    Runner::start_with(coord, name, 1, &args)
}

/// Waits until every test of the Testrun is held by a runner (running, or
/// waiting in a runner's queue) and `first` has printed a line. With one
/// runner of one slot, every test but `first` is then in its queue.
async fn wait_all_held(client: &mut Client, id: i64, first: &str) -> testrunner_proto::v1::Testrun {
    wait_until(
        client,
        id,
        Duration::from_secs(30),
        "every test to be held by the runner",
        |r| {
            r.tests
                .iter()
                .all(|t| t.status == test::Status::Running as i32)
                && r.tests.iter().any(|t| t.name == first && t.log_lines > 0)
        },
    )
    .await
}

on_both_stores! {
    a_long_test_does_not_wait_in_a_queue_while_a_runner_is_free(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let a = quick_runner(&coord, "a", &[]);
        let mut client = coord.client().await;
        warm_up(&mut client).await;
        // Runner a's tests were short, and no other runner is there: it
        // takes all three (one slot, two in its queue) before anyone knows
        // they are long.
        let files = (0..3).map(|i| file(&format!("long{i}.sh"), "echo started\nsleep 4\n")).collect();
        let run = create(&mut client, files, None, None).await;
        wait_all_held(&mut client, run.id, "long0.sh").await;
        let _b = quick_runner(&coord, "b", &[]);
        let _c = quick_runner(&coord, "c", &[]);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        // The two that waited were handed back (and so handed out twice),
        // without using up an attempt, and ran on the runners that were
        // free, not after long0: runner a started its five warm-up tests
        // and long0 only.
        let dispatched = coord.metrics().await.value(DISPATCHED);
        assert_eq!(dispatched, 5.0 + 3.0 + 2.0, "runner a's log: {}", a.log());
        assert_eq!(a.metrics().await.value(STARTED), 5.0 + 1.0, "runner a's log: {}", a.log());
        assert_eq!(test_named(&run, "long0.sh").runner, "a");
        let mut others: Vec<&str> = ["long1.sh", "long2.sh"].iter().map(|n| test_named(&run, n).runner.as_str()).collect();
        others.sort_unstable();
        assert_eq!(others, ["b", "c"], "{run:#?}");
        assert!(run.tests.iter().all(|t| t.attempt == 1), "{run:#?}");
    }

    a_runner_starts_the_tests_in_its_queue_in_queue_order(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let r = quick_runner(&coord, "r1", &["--queue-wait", "60s"]);
        let mut client = coord.client().await;
        warm_up(&mut client).await;
        let dir = shared_dir();
        let (order, gate) = (dir.path().join("order"), dir.path().join("gate"));
        // The first test holds the one slot until the gate opens, so the
        // others are all in the queue before any of them starts.
        let mut files = vec![file(
            "gate.sh",
            &format!("echo waiting\nwhile [ ! -e {} ]; do sleep 0.05; done\n", gate.display()),
        )];
        let names: Vec<String> = (0..4).map(|i| format!("t{i}.sh")).collect();
        files.extend(names.iter().map(|n| file(n, &format!("echo $TESTRUNNER_TEST_NAME >> {}\n", order.display()))));
        let run = create(&mut client, files, None, None).await;
        wait_all_held(&mut client, run.id, "gate.sh").await;
        assert!(!order.exists(), "a test started while the slot was busy");
        std::fs::write(&gate, "").unwrap();
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        let ran = std::fs::read_to_string(&order).unwrap();
        assert_eq!(ran.lines().collect::<Vec<_>>(), names, "one slot runs them in order");
        // All ran from the queue: none was handed back and out again.
        assert_eq!(coord.metrics().await.value(DISPATCHED), 5.0 + 5.0, "runner log: {}", r.log());
        assert_eq!(r.metrics().await.value(STARTED), 5.0 + 5.0);
        assert!(run.tests.iter().all(|t| t.attempt == 1 && t.runner == "r1"), "{run:#?}");
    }

    every_queued_test_of_a_cancelled_testrun_is_cancelled_without_running(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        // A long queue wait, so the tests are still queued when cancelled.
        let r = quick_runner(&coord, "r1", &["--queue-wait", "60s"]);
        let mut client = coord.client().await;
        warm_up(&mut client).await;
        let dir = shared_dir();
        let queued = ["q0.sh", "q1.sh", "q2.sh"];
        let mut files = vec![file("a.sh", "echo started\nsleep 30\n")];
        files.extend(queued.iter().map(|n| file(n, &format!("echo ran\ntouch {}/$TESTRUNNER_TEST_NAME\n", dir.path().display()))));
        let run = create(&mut client, files, None, None).await;
        // a.sh runs, the others wait in the queue. The coordinator sends a
        // Cancel for each, in any order: none of the queued tests may
        // start when a.sh's slot frees up before its own Cancel comes.
        wait_all_held(&mut client, run.id, "a.sh").await;
        client.cancel_testrun(CancelTestrunRequest { id: run.id }).await.unwrap();
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Cancelled as i32, "{run:#?}");
        // The runner is free again, and takes new work.
        let next = create(&mut client, vec![file("c.sh", "echo c\n")], None, None).await;
        let next = wait_done(&mut client, next.id).await;
        assert_eq!(next.status, testrun::Status::Success as i32, "runner log: {}", r.log());
        assert_eq!(status_of(&run, "a.sh"), test::Status::Cancelled);
        for name in queued {
            assert_eq!(status_of(&run, name), test::Status::Cancelled, "{name}");
            assert_eq!(test_named(&run, name).log_lines, 0, "{name}");
            assert!(log_of(&mut client, run.id, name).await.is_empty(), "{name}");
            assert!(!dir.path().join(name).exists(), "{name} ran");
        }
        // The runner started its five warm-up tests, a.sh and c.sh: no
        // queued test, not even for a moment before its Cancel.
        assert_eq!(r.metrics().await.value(STARTED), 5.0 + 2.0, "runner log: {}", r.log());
    }

    a_runner_without_a_coordinator_starts_nothing_from_its_queue(backend) {
        let mut coord = Coordinator::start(backend, &[]).await;
        // A long queue wait: only the disconnection may make the runner
        // hand its queued tests back.
        let r = quick_runner(&coord, "r1", &["--queue-wait", "60s"]);
        let mut client = coord.client().await;
        warm_up(&mut client).await;
        let dir = shared_dir();
        let ran = dir.path().join("ran");
        let queued = ["q0.sh", "q1.sh", "q2.sh"];
        let mut files = vec![file("a.sh", "echo started\nsleep 2\n")];
        files.extend(queued.iter().map(|n| file(n, &format!("echo $TESTRUNNER_TEST_NAME >> {}\n", ran.display()))));
        let run = create(&mut client, files, None, None).await;
        wait_all_held(&mut client, run.id, "a.sh").await;
        // While the coordinator is gone, a.sh ends and frees the slot. The
        // coordinator may give the queued tests to another runner once the
        // lease (2s) runs out: the runner must not start them meanwhile.
        coord.kill();
        // a.sh ends: the runner then runs nothing (it decides what to
        // start as it takes a test's end, and would start a queued test
        // in the same step), and started nothing but the warm-up and a.sh.
        r.metric_reaches("testrunner_runner_running_tests", 0.0).await;
        assert_eq!(r.metrics().await.value(STARTED), 5.0 + 1.0, "started while disconnected; runner log: {}", r.log());
        assert!(!ran.exists());
        // Back, the runner hands them back (they waited for longer than
        // half a lease) and each runs once, none is lost.
        coord.restart();
        let mut client = coord.client().await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}\nrunner log: {}", r.log());
        let ran = std::fs::read_to_string(&ran).unwrap();
        let mut ran: Vec<&str> = ran.lines().collect();
        ran.sort_unstable();
        assert_eq!(ran, queued, "each queued test ran once");
    }

    a_draining_runner_hands_back_the_tests_in_its_queue(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut r = quick_runner(&coord, "r1", &["--queue-wait", "60s"]);
        let mut client = coord.client().await;
        warm_up(&mut client).await;
        let run = create(
            &mut client,
            vec![
                file("a.sh", "echo started\nsleep 2\necho finished\n"),
                file("b.sh", "echo b\n"),
            ],
            None,
            None,
        )
        .await;
        wait_all_held(&mut client, run.id, "a.sh").await;
        r.signal(Signal::SIGTERM);
        // The queued test goes back at once; the running one finishes.
        let back = wait_until(&mut client, run.id, Duration::from_secs(10), "b.sh to be handed back", |r| {
            status_of(r, "b.sh") == test::Status::Queued
        })
        .await;
        assert_eq!(test_named(&back, "b.sh").attempt, 0, "a hand-back uses up no attempt");
        assert_eq!(r.wait_exit(Duration::from_secs(20)).await, Some(0), "runner log: {}", r.log());
        let _next = quick_runner(&coord, "r2", &[]);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        assert_eq!(log_of(&mut client, run.id, "a.sh").await, ["started", "finished"]);
        assert_eq!((test_named(&run, "a.sh").runner.as_str(), test_named(&run, "b.sh").runner.as_str()), ("r1", "r2"));
        // b.sh ran once, on r2: r1 never started it.
        assert_eq!(test_named(&run, "b.sh").attempt, 1);
        assert_eq!(log_of(&mut client, run.id, "b.sh").await, ["b"]);
    }
}
