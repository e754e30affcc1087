//! Failures the system survives, each with real processes: lost runners,
//! a crashed coordinator, cancellation, drains and misbehaving runners.
//!
//! Longer than 500 lines on purpose: one scenario per test, each readable
//! top to bottom with its own processes; they share only the test kit.

use std::time::Duration;

use nix::sys::signal::Signal;
use testkit::e2e::*;
use testrunner_proto::v1::{
    CancelTestrunRequest, DeleteTestrunRequest, GetTestrunRequest, test, testrun,
};

/// A script that records its pid and a background child's pid in `dir`,
/// says it started, and sleeps.
fn sleeper(dir: &std::path::Path, tag: &str, secs: u32) -> String {
    format!(
        "sleep {secs} &\necho $! > {dir}/{tag}.child\necho $$ > {dir}/{tag}.pid\necho started\nwait\necho finished\n",
        dir = dir.display()
    )
}

fn pids(dir: &std::path::Path, tag: &str) -> Vec<i32> {
    ["pid", "child"]
        .iter()
        .filter_map(|ext| std::fs::read_to_string(dir.join(format!("{tag}.{ext}"))).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

async fn wait_running(client: &mut Client, id: i64, name: &str) -> testrunner_proto::v1::Testrun {
    wait_until(
        client,
        id,
        Duration::from_secs(30),
        "the test to run",
        |r| {
            r.tests.iter().any(|t| {
                t.name == name && t.status == test::Status::Running as i32 && t.log_lines > 0
            })
        },
    )
    .await
}

on_both_stores! {
    a_test_of_a_killed_runner_runs_again_elsewhere(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut doomed = Runner::start(&coord, "doomed", 1);
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("t.sh", "echo attempt $TESTRUNNER_ATTEMPT\nsleep 1\necho ok\n")], None, None).await;
        wait_running(&mut client, run.id, "t.sh").await;
        doomed.signal(Signal::SIGKILL);
        doomed.wait_exit(Duration::from_secs(5)).await;
        let _rescuer = Runner::start(&coord, "rescuer", 1);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        let t = test_named(&run, "t.sh");
        assert_eq!((t.attempt, t.runner.as_str()), (2, "rescuer"));
        let log = log_of(&mut client, run.id, "t.sh").await;
        assert_eq!(log.first().map(String::as_str), Some("attempt 1"), "the lost attempt's lines stay: {log:?}");
        assert!(log.ends_with(&["attempt 2".to_owned(), "ok".to_owned()]), "{log:?}");
    }

    a_test_whose_runners_keep_dying_ends_in_error(backend) {
        let coord = Coordinator::start(backend, &["--max-attempts", "1"]).await;
        let doomed = Runner::start(&coord, "doomed", 1);
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("t.sh", "echo hi\nsleep 30\n")], None, None).await;
        wait_running(&mut client, run.id, "t.sh").await;
        doomed.signal(Signal::SIGKILL);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Failed as i32);
        assert_eq!(status_of(&run, "t.sh"), test::Status::Error);
        assert!(test_named(&run, "t.sh").error.contains("runner lost"), "{run:#?}");
    }

    a_late_result_from_a_lost_runner_is_refused(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let frozen = Runner::start(&coord, "frozen", 1);
        let mut client = coord.client().await;
        // Attempt 1 would fail (exit 1); attempt 2 passes (exit 0).
        let run = create(&mut client, vec![file("t.sh", "echo attempt $TESTRUNNER_ATTEMPT\nsleep 3\nexit $((2 - TESTRUNNER_ATTEMPT))\n")], None, None).await;
        wait_running(&mut client, run.id, "t.sh").await;
        // Frozen past its lease: the coordinator gives the test to another
        // runner, where attempt 2 runs.
        frozen.signal(Signal::SIGSTOP);
        let _other = Runner::start(&coord, "other", 1);
        let done = wait_done(&mut client, run.id).await;
        assert_eq!(done.status, testrun::Status::Success as i32, "{done:#?}");
        // Thawed, the first runner reports attempt 1 (exit 1) on a new
        // stream. The coordinator refuses that late result, and it changes
        // nothing.
        frozen.signal(Signal::SIGCONT);
        coord.metric_reaches("testrunner_results_refused_total", 1.0).await;
        let after = get(&mut client, run.id).await;
        let t = test_named(&after, "t.sh");
        assert_eq!((t.attempt, t.runner.as_str(), t.status), (2, "other", test::Status::Passed as i32), "{after:#?}");
        assert_eq!(after.counts, done.counts);
    }

    a_coordinator_crash_mid_testrun_loses_and_duplicates_no_line(backend) {
        let mut coord = Coordinator::start(backend, &[]).await;
        let r = Runner::start(&coord, "r1", 2);
        let mut client = coord.client().await;
        let script = "for i in $(seq 1 40); do echo line $i; sleep 0.05; done\n";
        let run = create(&mut client, vec![file("a.sh", script), file("b.sh", script)], None, None).await;
        wait_running(&mut client, run.id, "a.sh").await;
        coord.kill();
        // Back only once the runner knows it is gone: the tests' output
        // from then on waits in the runner for the next stream.
        r.metric_reaches("testrunner_runner_connected", 0.0).await;
        coord.restart();
        let mut client = coord.client().await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}\n{}", coord.log());
        let expected: Vec<String> = (1..=40).map(|i| format!("line {i}")).collect();
        for name in ["a.sh", "b.sh"] {
            assert_eq!(log_of(&mut client, run.id, name).await, expected, "{name}");
            assert_eq!(test_named(&run, name).attempt, 1, "resumed, not rerun");
        }
    }

    cancelling_a_running_testrun_kills_every_process_it_started(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 2);
        let mut client = coord.client().await;
        let dir = shared_dir();
        let run = create(&mut client, vec![
            file("long.sh", &sleeper(dir.path(), "long", 60)),
            file("queued1.sh", "sleep 60\n"),
            file("queued2.sh", "sleep 60\n"),
        ], None, None).await;
        wait_running(&mut client, run.id, "long.sh").await;
        let started = pids(dir.path(), "long");
        assert_eq!(started.len(), 2, "pid files written");
        client.cancel_testrun(CancelTestrunRequest { id: run.id }).await.unwrap();
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Cancelled as i32);
        assert!(run.tests.iter().all(|t| t.status == test::Status::Cancelled as i32), "{run:#?}");
        // They would sleep for a minute; killed, they are gone in moments.
        eventually("every process of the cancelled test to be gone", Duration::from_secs(10), async || {
            let left: Vec<i32> = started.iter().copied().filter(|p| alive(*p)).collect();
            if left.is_empty() { Ok(()) } else { Err(left) }
        })
        .await;
        assert!(!log_of(&mut client, run.id, "long.sh").await.contains(&"finished".to_owned()));
    }

    deleting_a_running_testrun_cancels_it_first(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let dir = shared_dir();
        let run = create(&mut client, vec![file("long.sh", &sleeper(dir.path(), "long", 60))], None, None).await;
        wait_running(&mut client, run.id, "long.sh").await;
        let started = pids(dir.path(), "long");
        client.delete_testrun(DeleteTestrunRequest { id: run.id }).await.unwrap();
        let gone = client.get_testrun(GetTestrunRequest { id: run.id }).await.unwrap_err();
        assert_eq!(gone.code(), tonic::Code::NotFound);
        eventually("every process of the deleted test to be gone", Duration::from_secs(10), async || {
            let left: Vec<i32> = started.iter().copied().filter(|p| alive(*p)).collect();
            if left.is_empty() { Ok(()) } else { Err(left) }
        })
        .await;
        // The runner is free again and takes new work.
        let next = create(&mut client, vec![file("n.sh", "echo next\n")], None, None).await;
        let next = wait_done(&mut client, next.id).await;
        assert_eq!(next.status, testrun::Status::Success as i32, "runner log: {}", r.log());
    }

    sigterm_drains_a_runner_it_finishes_its_test_takes_no_more_and_exits_0(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("a.sh", "echo started\nsleep 1.5\necho finished\n"), file("b.sh", "echo b\n")], None, None).await;
        wait_running(&mut client, run.id, "a.sh").await;
        r.signal(Signal::SIGTERM);
        assert_eq!(r.wait_exit(Duration::from_secs(20)).await, Some(0), "runner log: {}", r.log());
        let run = get(&mut client, run.id).await;
        assert_eq!(status_of(&run, "a.sh"), test::Status::Passed);
        assert_eq!(log_of(&mut client, run.id, "a.sh").await, ["started", "finished"]);
        assert_eq!(status_of(&run, "b.sh"), test::Status::Queued, "a draining runner takes no new work");
        let _next = Runner::start(&coord, "r2", 1);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32);
    }

    past_its_drain_deadline_a_runner_hands_its_test_back(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut r = Runner::start_with(&coord, "r1", 1, &["--drain-timeout", "500ms"]);
        let mut client = coord.client().await;
        // The first run sleeps long; the run after the hand-back does not.
        let dir = shared_dir();
        let script = format!(
            "echo attempt $TESTRUNNER_ATTEMPT\nif [ ! -e {m} ]; then touch {m}; sleep 60; fi\necho done\n",
            m = dir.path().join("ran-once").display()
        );
        let run = create(&mut client, vec![file("a.sh", &script)], None, None).await;
        wait_running(&mut client, run.id, "a.sh").await;
        r.signal(Signal::SIGTERM);
        assert_eq!(r.wait_exit(Duration::from_secs(20)).await, Some(0), "runner log: {}", r.log());
        let back = get(&mut client, run.id).await;
        assert_eq!(status_of(&back, "a.sh"), test::Status::Queued, "{back:#?}");
        assert_eq!(test_named(&back, "a.sh").attempt, 0, "a hand-back uses up no attempt");
        let _next = Runner::start(&coord, "r2", 1);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32);
        assert_eq!(test_named(&run, "a.sh").attempt, 1);
    }
}

/// A hand-written runner: one authenticated stream of raw protocol messages.
mod raw {
    use super::*;
    pub use testrunner_proto::v1::coordinator_message::Message as In;
    pub use testrunner_proto::v1::runner_message::Message as Out;
    use testrunner_proto::v1::runner_service_client::RunnerServiceClient;
    use testrunner_proto::v1::{
        Assign, CoordinatorMessage, ProtocolVersion, Register, RunnerMessage,
    };
    use tokio::sync::mpsc;

    pub fn register(instance: &str, resume: Vec<String>) -> Register {
        Register {
            instance_id: instance.into(),
            name: "scripted".into(),
            slots: 1,
            protocol: ProtocolVersion::ProtocolVersion1 as i32,
            resume,
            ..Default::default()
        }
    }

    /// A fresh runner's Register.
    pub fn fresh() -> Out {
        Out::Register(register(&uuid::Uuid::new_v4().to_string(), vec![]))
    }

    pub struct Stream {
        tx: mpsc::Sender<RunnerMessage>,
        inbound: tonic::Streaming<CoordinatorMessage>,
    }

    impl Stream {
        /// Opens an authenticated stream that starts with `first`.
        pub async fn open(coord: &Coordinator, first: Vec<Out>) -> Self {
            let (tx, rx) = mpsc::channel(16);
            for m in first {
                tx.send(RunnerMessage { message: Some(m) }).await.unwrap();
            }
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
            let mut client = RunnerServiceClient::connect(coord.url()).await.unwrap();
            let inbound = client.attach(request).await.unwrap().into_inner();
            Self { tx, inbound }
        }

        pub async fn send(&self, m: Out) {
            self.tx
                .send(RunnerMessage { message: Some(m) })
                .await
                .unwrap();
        }

        /// The next message from the coordinator (bounded wait).
        pub async fn next(&mut self) -> In {
            let m = tokio::time::timeout(Duration::from_secs(20), self.inbound.message())
                .await
                .expect("a message in time")
                .expect("stream healthy")
                .expect("stream open");
            m.message.expect("non-empty message")
        }

        /// Skips to the next Assign.
        pub async fn next_assign(&mut self) -> Assign {
            loop {
                if let In::Assign(a) = self.next().await {
                    return a;
                }
            }
        }

        /// Reads until the stream ends (bounded wait); the status it ended
        /// with.
        pub async fn end(mut self) -> tonic::Status {
            let end = async {
                loop {
                    match self.inbound.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => return tonic::Status::ok("stream ended"),
                        Err(status) => return status,
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(20), end)
                .await
                .expect("the coordinator ends the stream in time")
        }
    }
}

/// Runners that break the protocol's rules.
mod misbehaving_runners {
    use super::raw::{Out, Stream, fresh, register};
    use super::*;
    use testrunner_proto::v1::{Finished, Heartbeat, Logs};

    async fn ends_with(coord: &Coordinator, messages: Vec<Out>) -> tonic::Status {
        Stream::open(coord, messages).await.end().await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn protocol_violations_end_the_stream_with_a_clear_error_and_harm_nothing() {
        let coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let mut client = coord.client().await;

        let s = ends_with(&coord, vec![Out::Heartbeat(Heartbeat {})]).await;
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(
            s.message().contains("first message must be Register"),
            "{s:?}"
        );

        let s = ends_with(&coord, vec![fresh(), fresh()]).await;
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().starts_with("register"), "{s:?}");

        let not_mine = Finished {
            assignment_id: "not-mine".into(),
            outcome: 1,
            ..Default::default()
        };
        let s = ends_with(&coord, vec![fresh(), Out::Finished(not_mine)]).await;
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().starts_with("finished.assignment_id"), "{s:?}");

        let lines = Logs {
            assignment_id: "not-mine".into(),
            first_seq: 1,
            lines: vec!["x".into()],
        };
        let s = ends_with(&coord, vec![fresh(), Out::Logs(lines)]).await;
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);

        let mut bad = register("r", vec![]);
        bad.slots = 0;
        let s = ends_with(&coord, vec![Out::Register(bad)]).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().starts_with("register.slots"), "{s:?}");

        let mut greedy = register("r", vec![]);
        greedy.queue = 1025;
        let s = ends_with(&coord, vec![Out::Register(greedy)]).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(
            s.message().starts_with("register.queue: must be 0 to 1024"),
            "{s:?}"
        );

        let mut old = register("r", vec![]);
        old.protocol = 99;
        let s = ends_with(&coord, vec![Out::Register(old)]).await;
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);

        // Runners that take a test, then send a gap, or too many lines.
        let mut refused = Vec::new();
        for (name, first_seq, count, field) in [
            ("gap.sh", 5, 1, "logs.first_seq"),
            // One over the default --max-lines-per-batch (50,000).
            ("flood.sh", 1, 50_001, "logs.lines"),
        ] {
            let mut s = Stream::open(&coord, vec![fresh()]).await;
            let run = create(&mut client, vec![file(name, "echo ok\n")], None, None).await;
            let a = s.next_assign().await;
            s.send(Out::Logs(Logs {
                assignment_id: a.assignment_id,
                first_seq,
                lines: vec!["x".into(); count],
            }))
            .await;
            let status = s.end().await;
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{name}");
            assert!(status.message().starts_with(field), "{status:?}");
            refused.push((run.id, name));
        }

        // Nothing was corrupted: a real runner completes both Testruns after
        // the rogues' leases run out, and the coordinator still serves.
        let _r = Runner::start(&coord, "honest", 1);
        for (id, name) in refused {
            let run = wait_done(&mut client, id).await;
            assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
            assert_eq!(log_of(&mut client, id, name).await, ["ok"]);
        }
    }
}

/// The protocol's recovery rules, driven by a hand-written runner.
mod recovery {
    use super::raw::{In, Out, Stream, register};
    use super::*;
    use testrunner_proto::v1::{Finished, Outcome, Register, Release};

    /// Registers `instance` (listing `resume`) and expects the Welcome.
    async fn attach(coord: &Coordinator, instance: &str, resume: Vec<String>) -> Stream {
        let mut s = Stream::open(coord, vec![Out::Register(register(instance, resume))]).await;
        assert!(matches!(s.next().await, In::Welcome(_)));
        s
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_test_whose_assign_was_lost_comes_back_when_the_runner_reconnects() {
        let coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("t.sh", "echo ok\n")], None, None).await;
        let mut first = attach(&coord, "same-runner", vec![]).await;
        let lost = first.next_assign().await;
        // The runner never saw that Assign: it reconnects listing nothing.
        drop(first);
        let mut second = attach(&coord, "same-runner", vec![]).await;
        let again = second.next_assign().await;
        assert_eq!(again.test_id, lost.test_id);
        assert_ne!(again.assignment_id, lost.assignment_id);
        assert_eq!(again.attempt, 1, "a lost Assign uses up no attempt");
        second
            .send(Out::Finished(Finished {
                assignment_id: again.assignment_id.clone(),
                outcome: Outcome::Passed as i32,
                exit_code: Some(0),
                ..Default::default()
            }))
            .await;
        assert!(matches!(second.next().await, In::ResultAck(a) if a.accepted));
        let done = wait_done(&mut client, run.id).await;
        assert_eq!(done.status, testrun::Status::Success as i32);
        assert_eq!(done.counts.unwrap().passed, 1);
    }

    on_both_stores! {
        /// Results sent back to back are stored together (one transaction per
        /// batch); each is still acknowledged and counted exactly once.
        results_sent_together_are_each_stored_once(backend) {
            let coord = Coordinator::start(backend, &[]).await;
            let mut client = coord.client().await;
            let files = |n: usize| {
                (0..n)
                    .map(|i| file(&format!("t{i}.sh"), "exit 0\n"))
                    .collect()
            };
            let a = create(&mut client, files(5), None, None).await;
            let b = create(&mut client, files(3), None, None).await;
            let mut s = Stream::open(
                &coord,
                vec![Out::Register(Register {
                    slots: 8,
                    ..register("batch-runner", vec![])
                })],
            )
            .await;
            assert!(matches!(s.next().await, In::Welcome(_)));
            let mut assigned = Vec::new();
            while assigned.len() < 8 {
                assigned.push(s.next_assign().await);
            }
            // Two of run A's tests fail; everything else passes.
            let failing: Vec<String> = assigned
                .iter()
                .filter(|x| x.testrun_id == a.id)
                .take(2)
                .map(|x| x.assignment_id.clone())
                .collect();
            for x in &assigned {
                let passed = !failing.contains(&x.assignment_id);
                s.send(Out::Finished(Finished {
                    assignment_id: x.assignment_id.clone(),
                    outcome: if passed {
                        Outcome::Passed
                    } else {
                        Outcome::Failed
                    } as i32,
                    exit_code: Some(i32::from(!passed)),
                    // A NUL (Postgres refuses it in text) must lose neither this
                    // result nor the others stored with it.
                    error: if passed {
                        String::new()
                    } else {
                        "boom\0".into()
                    },
                    ..Default::default()
                }))
                .await;
            }
            let mut acked = std::collections::HashSet::new();
            while acked.len() < 8 {
                if let In::ResultAck(ack) = s.next().await {
                    assert!(ack.accepted, "{} refused", ack.assignment_id);
                    assert!(acked.insert(ack.assignment_id), "acknowledged twice");
                }
            }
            let (a, b) = (
                wait_done(&mut client, a.id).await,
                wait_done(&mut client, b.id).await,
            );
            assert_eq!(a.status, testrun::Status::Failed as i32);
            let counts = a.counts.unwrap();
            assert_eq!((counts.passed, counts.failed, counts.running), (3, 2, 0));
            let errors: Vec<&str> = a
                .tests
                .iter()
                .map(|t| t.error.as_str())
                .filter(|e| !e.is_empty())
                .collect();
            assert_eq!(errors, ["boom\u{FFFD}", "boom\u{FFFD}"]);
            assert_eq!(b.status, testrun::Status::Success as i32);
            assert_eq!(b.counts.unwrap().passed, 3);
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn assignments_the_coordinator_disowns_do_not_hold_slots() {
        let coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let mut client = coord.client().await;
        // One slot, and a resume listing an assignment nobody knows.
        let mut s = attach(&coord, "r", vec!["unknown-assignment".into()]).await;
        let In::Cancel(c) = s.next().await else {
            panic!("expected Cancel")
        };
        assert_eq!(c.assignment_id, "unknown-assignment");
        assert!(
            c.forget,
            "a disowned assignment is to be forgotten, not reported"
        );
        create(&mut client, vec![file("t.sh", "echo ok\n")], None, None).await;
        assert!(
            matches!(s.next().await, In::Assign(_)),
            "the slot is free for new work"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_hand_back_from_a_cancelled_testrun_cancels_the_test() {
        let coord = Coordinator::start(Backend::Postgres, &[]).await;
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("t.sh", "sleep 60\n")], None, None).await;
        let mut s = attach(&coord, "r", vec![]).await;
        let a = s.next_assign().await;
        client
            .cancel_testrun(CancelTestrunRequest { id: run.id })
            .await
            .unwrap();
        let In::Cancel(c) = s.next().await else {
            panic!("expected Cancel")
        };
        assert!(!c.forget);
        // A draining runner hands it back instead of reporting it.
        s.send(Out::Release(Release {
            assignment_id: a.assignment_id.clone(),
        }))
        .await;
        assert!(matches!(s.next().await, In::ResultAck(_)));
        let done = wait_done(&mut client, run.id).await;
        assert_eq!(
            status_of(&done, "t.sh"),
            test::Status::Cancelled,
            "not requeued: {done:#?}"
        );
        let c = done.counts.unwrap();
        assert_eq!((c.queued, c.running, c.cancelled), (0, 0, 1));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_draining_runner_whose_coordinator_is_gone_still_exits() {
        let mut coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let mut r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let run = create(
            &mut client,
            vec![file("t.sh", "echo started\nsleep 60\n")],
            None,
            None,
        )
        .await;
        wait_running(&mut client, run.id, "t.sh").await;
        coord.kill();
        r.signal(Signal::SIGTERM);
        // The lease is 2s: past it the runner stops waiting and exits.
        assert_eq!(
            r.wait_exit(Duration::from_secs(30)).await,
            Some(0),
            "runner log: {}",
            r.log()
        );
    }
}
