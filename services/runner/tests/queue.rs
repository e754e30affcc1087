//! A runner's queue (protocol rule 3): while its tests are short, a runner
//! holds more tests than it has slots, and starts the next as soon as a slot
//! frees up. These tests check what the queue must never cost: a test kept
//! from a free runner, a cancelled test that runs anyway, or a test a
//! draining runner keeps.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;
use testrunner_proto::v1::{CancelTestrunRequest, test, testrun};

type Client =
    testrunner_proto::v1::testrun_service_client::TestrunServiceClient<tonic::transport::Channel>;

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

/// Waits until every test of the Testrun is held by a runner (running, or
/// waiting in a runner's queue) and `first` has printed a line.
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
        let _a = Runner::start(&coord, "a", 1);
        let mut client = coord.client().await;
        warm_up(&mut client).await;
        // Runner a's tests were short, so it takes all three (one slot, two
        // in its queue) before anyone knows they are long.
        let _b = Runner::start(&coord, "b", 1);
        let _c = Runner::start(&coord, "c", 1);
        let files = (0..3).map(|i| file(&format!("long{i}.sh"), "echo started\nsleep 4\n")).collect();
        let run = create(&mut client, files, None, None).await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        // The two that waited were handed back, without using up an
        // attempt, and ran on the runners that were free.
        let mut runners: Vec<&str> = run.tests.iter().map(|t| t.runner.as_str()).collect();
        runners.sort_unstable();
        assert_eq!(runners, ["a", "b", "c"], "{run:#?}");
        assert!(run.tests.iter().all(|t| t.attempt == 1), "{run:#?}");
    }

    a_runner_starts_the_tests_in_its_queue_in_queue_order(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        warm_up(&mut client).await;
        let dir = tempfile::tempdir().unwrap();
        let order = dir.path().join("order");
        let names: Vec<String> = (0..8).map(|i| format!("t{i}.sh")).collect();
        let files = names
            .iter()
            .map(|n| file(n, &format!("echo $TESTRUNNER_TEST_NAME >> {}\n", order.display())))
            .collect();
        let run = create(&mut client, files, None, None).await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        let ran = std::fs::read_to_string(&order).unwrap();
        assert_eq!(ran.lines().collect::<Vec<_>>(), names, "one slot runs them in order");
    }

    a_test_cancelled_while_it_waits_in_a_queue_never_runs(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        // A long queue wait, so the test is still queued when it is cancelled.
        let r = Runner::start_with(&coord, "r1", 1, &["--queue-wait", "60s"]);
        let mut client = coord.client().await;
        warm_up(&mut client).await;
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("queued-one-ran");
        let run = create(
            &mut client,
            vec![
                file("a.sh", "echo started\nsleep 30\n"),
                file("b.sh", &format!("touch {}\n", mark.display())),
            ],
            None,
            None,
        )
        .await;
        wait_all_held(&mut client, run.id, "a.sh").await;
        client.cancel_testrun(CancelTestrunRequest { id: run.id }).await.unwrap();
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Cancelled as i32, "{run:#?}");
        assert_eq!(status_of(&run, "b.sh"), test::Status::Cancelled);
        // The runner is free again, and the cancelled test never ran.
        let next = create(&mut client, vec![file("c.sh", "echo c\n")], None, None).await;
        let next = wait_done(&mut client, next.id).await;
        assert_eq!(next.status, testrun::Status::Success as i32, "runner log: {}", r.log());
        assert!(!mark.exists(), "a test cancelled in the queue ran");
    }

    a_draining_runner_hands_back_the_tests_in_its_queue(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut r = Runner::start_with(&coord, "r1", 1, &["--queue-wait", "60s"]);
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
        assert_eq!(r.wait_exit(Duration::from_secs(20)), Some(0), "runner log: {}", r.log());
        let _next = Runner::start(&coord, "r2", 1);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        assert_eq!(log_of(&mut client, run.id, "a.sh").await, ["started", "finished"]);
        assert_eq!((test_named(&run, "a.sh").runner.as_str(), test_named(&run, "b.sh").runner.as_str()), ("r1", "r2"));
        assert_eq!(test_named(&run, "b.sh").attempt, 1);
    }
}
