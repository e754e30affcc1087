//! Failures the system survives, each with real processes: lost runners,
//! a crashed coordinator, cancellation, drains and misbehaving runners.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::*;
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

type Client =
    testrunner_proto::v1::testrun_service_client::TestrunServiceClient<tonic::transport::Channel>;

on_both_stores! {
    a_test_of_a_killed_runner_runs_again_elsewhere(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut doomed = Runner::start(&coord, "doomed", 1);
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("t.sh", "echo attempt $TESTRUNNER_ATTEMPT\nsleep 1\necho ok\n")], None, None).await;
        wait_running(&mut client, run.id, "t.sh").await;
        doomed.signal(Signal::SIGKILL);
        doomed.wait_exit(Duration::from_secs(5));
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
        // Thawed, the first runner finishes attempt 1 (exit 1) and reports;
        // that late result must change nothing.
        frozen.signal(Signal::SIGCONT);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = get(&mut client, run.id).await;
        let t = test_named(&after, "t.sh");
        assert_eq!((t.attempt, t.runner.as_str(), t.status), (2, "other", test::Status::Passed as i32), "{after:#?}");
        assert_eq!(after.counts, done.counts);
    }

    a_coordinator_crash_mid_testrun_loses_and_duplicates_no_line(backend) {
        let mut coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 2);
        let mut client = coord.client().await;
        let script = "for i in $(seq 1 40); do echo line $i; sleep 0.05; done\n";
        let run = create(&mut client, vec![file("a.sh", script), file("b.sh", script)], None, None).await;
        wait_running(&mut client, run.id, "a.sh").await;
        coord.kill();
        tokio::time::sleep(Duration::from_millis(700)).await;
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
        let dir = tempfile::tempdir().unwrap();
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
        tokio::time::sleep(Duration::from_millis(300)).await;
        for pid in started {
            assert!(!alive(pid), "process {pid} survived the cancel");
        }
        assert!(!log_of(&mut client, run.id, "long.sh").await.contains(&"finished".to_owned()));
    }

    deleting_a_running_testrun_cancels_it_first(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let dir = tempfile::tempdir().unwrap();
        let run = create(&mut client, vec![file("long.sh", &sleeper(dir.path(), "long", 60))], None, None).await;
        wait_running(&mut client, run.id, "long.sh").await;
        let started = pids(dir.path(), "long");
        client.delete_testrun(DeleteTestrunRequest { id: run.id }).await.unwrap();
        let gone = client.get_testrun(GetTestrunRequest { id: run.id }).await.unwrap_err();
        assert_eq!(gone.code(), tonic::Code::NotFound);
        let mut waited = 0;
        while started.iter().any(|p| alive(*p)) && waited < 50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        for pid in started {
            assert!(!alive(pid), "process {pid} survived the delete");
        }
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
        assert_eq!(r.wait_exit(Duration::from_secs(20)), Some(0), "runner log: {}", r.log());
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
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "echo attempt $TESTRUNNER_ATTEMPT\nif [ ! -e {m} ]; then touch {m}; sleep 60; fi\necho done\n",
            m = dir.path().join("ran-once").display()
        );
        let run = create(&mut client, vec![file("a.sh", &script)], None, None).await;
        wait_running(&mut client, run.id, "a.sh").await;
        r.signal(Signal::SIGTERM);
        assert_eq!(r.wait_exit(Duration::from_secs(20)), Some(0), "runner log: {}", r.log());
        let back = get(&mut client, run.id).await;
        assert_eq!(status_of(&back, "a.sh"), test::Status::Queued, "{back:#?}");
        assert_eq!(test_named(&back, "a.sh").attempt, 0, "a hand-back uses up no attempt");
        let _next = Runner::start(&coord, "r2", 1);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32);
        assert_eq!(test_named(&run, "a.sh").attempt, 1);
    }
}

/// A hand-written client of the runner protocol that breaks its rules.
mod misbehaving_runners {
    use super::*;
    use testrunner_proto::v1::runner_message::Message as Out;
    use testrunner_proto::v1::runner_service_client::RunnerServiceClient;
    use testrunner_proto::v1::{
        Finished, Heartbeat, Logs, ProtocolVersion, Register, RunnerMessage,
    };
    use tokio::sync::mpsc;

    /// Sends `messages` on an authenticated stream; the status it ends with.
    async fn session(coord: &Coordinator, messages: Vec<Out>) -> tonic::Status {
        let (tx, rx) = mpsc::channel(16);
        for m in messages {
            tx.send(RunnerMessage { message: Some(m) }).await.unwrap();
        }
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let mut client = RunnerServiceClient::connect(coord.url()).await.unwrap();
        let mut inbound = client.attach(request).await.unwrap().into_inner();
        let status = loop {
            match inbound.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => break tonic::Status::ok("stream ended"),
                Err(status) => break status,
            }
        };
        drop(tx);
        status
    }

    fn register() -> Out {
        Out::Register(Register {
            instance_id: uuid::Uuid::new_v4().to_string(),
            name: "rogue".into(),
            slots: 1,
            protocol: ProtocolVersion::ProtocolVersion1 as i32,
            ..Default::default()
        })
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn protocol_violations_end_the_stream_with_a_clear_error_and_harm_nothing() {
        let coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let mut client = coord.client().await;

        let s = session(&coord, vec![Out::Heartbeat(Heartbeat {})]).await;
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(
            s.message().contains("first message must be Register"),
            "{s:?}"
        );

        let s = session(&coord, vec![register(), register()]).await;
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().starts_with("register"), "{s:?}");

        let s = session(
            &coord,
            vec![
                register(),
                Out::Finished(Finished {
                    assignment_id: "not-mine".into(),
                    outcome: 1,
                    ..Default::default()
                }),
            ],
        )
        .await;
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().starts_with("finished.assignment_id"), "{s:?}");

        let s = session(
            &coord,
            vec![
                register(),
                Out::Logs(Logs {
                    assignment_id: "not-mine".into(),
                    first_seq: 1,
                    lines: vec!["x".into()],
                }),
            ],
        )
        .await;
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);

        let mut bad = match register() {
            Out::Register(r) => r,
            _ => unreachable!(),
        };
        bad.slots = 0;
        let s = session(&coord, vec![Out::Register(bad)]).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().starts_with("register.slots"), "{s:?}");

        let mut old = match register() {
            Out::Register(r) => r,
            _ => unreachable!(),
        };
        old.protocol = 99;
        let s = session(&coord, vec![Out::Register(old)]).await;
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);

        // A runner that takes a test, then sends a gap and an oversized batch.
        let run = create(&mut client, vec![file("t.sh", "echo ok\n")], None, None).await;
        let (tx, rx) = mpsc::channel(16);
        tx.send(RunnerMessage {
            message: Some(register()),
        })
        .await
        .unwrap();
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let mut rc = RunnerServiceClient::connect(coord.url()).await.unwrap();
        let mut inbound = rc.attach(request).await.unwrap().into_inner();
        let assignment = loop {
            let m = inbound.message().await.unwrap().expect("a message");
            if let Some(testrunner_proto::v1::coordinator_message::Message::Assign(a)) = m.message {
                break a;
            }
        };
        tx.send(RunnerMessage {
            message: Some(Out::Logs(Logs {
                assignment_id: assignment.assignment_id.clone(),
                first_seq: 5,
                lines: vec!["gap".into()],
            })),
        })
        .await
        .unwrap();
        let status = loop {
            match inbound.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("expected an error"),
                Err(s) => break s,
            }
        };
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("logs.first_seq"), "{status:?}");
        drop(tx);

        // A batch over the line limit (10,000 by default) is refused too.
        let (tx2, mut inbound2, assignment2) = assigned_session(&coord, &mut client).await;
        tx2.send(RunnerMessage {
            message: Some(Out::Logs(Logs {
                assignment_id: assignment2.assignment_id.clone(),
                first_seq: 1,
                lines: vec!["x".into(); 10_001],
            })),
        })
        .await
        .unwrap();
        let status = loop {
            match inbound2.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("expected an error"),
                Err(s) => break s,
            }
        };
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("logs.lines"), "{status:?}");
        drop(tx2);

        // Nothing was corrupted: a real runner completes the Testrun after
        // the rogue's lease runs out, and the coordinator still serves.
        let _r = Runner::start(&coord, "honest", 1);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        assert_eq!(log_of(&mut client, run.id, "t.sh").await, ["ok"]);
        let second = wait_done(&mut client, assignment2.testrun_id).await;
        assert_eq!(
            second.status,
            testrun::Status::Success as i32,
            "{second:#?}"
        );
        assert_eq!(log_of(&mut client, second.id, "t2.sh").await, ["ok"]);
    }

    /// A registered rogue runner holding a fresh test's assignment.
    async fn assigned_session(
        coord: &Coordinator,
        client: &mut Client,
    ) -> (
        mpsc::Sender<RunnerMessage>,
        tonic::Streaming<testrunner_proto::v1::CoordinatorMessage>,
        testrunner_proto::v1::Assign,
    ) {
        let (tx, rx) = mpsc::channel(16);
        tx.send(RunnerMessage {
            message: Some(register()),
        })
        .await
        .unwrap();
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let mut rc = RunnerServiceClient::connect(coord.url()).await.unwrap();
        let mut inbound = rc.attach(request).await.unwrap().into_inner();
        create(client, vec![file("t2.sh", "echo ok\n")], None, None).await;
        let assignment = loop {
            let m = inbound.message().await.unwrap().expect("a message");
            if let Some(testrunner_proto::v1::coordinator_message::Message::Assign(a)) = m.message {
                break a;
            }
        };
        (tx, inbound, assignment)
    }
}

/// The protocol's recovery rules, driven by a hand-written runner.
mod recovery {
    use super::*;
    use testrunner_proto::v1::coordinator_message::Message as In;
    use testrunner_proto::v1::runner_message::Message as Out;
    use testrunner_proto::v1::runner_service_client::RunnerServiceClient;
    use testrunner_proto::v1::{
        CoordinatorMessage, Finished, Outcome, ProtocolVersion, Register, Release, RunnerMessage,
    };
    use tokio::sync::mpsc;

    /// One stream of a scripted runner.
    struct Scripted {
        tx: mpsc::Sender<RunnerMessage>,
        inbound: tonic::Streaming<CoordinatorMessage>,
    }

    impl Scripted {
        async fn attach(coord: &Coordinator, instance: &str, resume: Vec<String>) -> Self {
            let (tx, rx) = mpsc::channel(16);
            tx.send(RunnerMessage {
                message: Some(Out::Register(Register {
                    instance_id: instance.into(),
                    name: "scripted".into(),
                    slots: 1,
                    protocol: ProtocolVersion::ProtocolVersion1 as i32,
                    resume,
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
            let mut client = RunnerServiceClient::connect(coord.url()).await.unwrap();
            let inbound = client.attach(request).await.unwrap().into_inner();
            let mut s = Self { tx, inbound };
            assert!(matches!(s.next().await, In::Welcome(_)));
            s
        }

        async fn next(&mut self) -> In {
            let m = tokio::time::timeout(Duration::from_secs(20), self.inbound.message())
                .await
                .expect("a message in time")
                .expect("stream healthy")
                .expect("stream open");
            m.message.expect("non-empty message")
        }

        async fn send(&self, m: Out) {
            self.tx
                .send(RunnerMessage { message: Some(m) })
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_test_whose_assign_was_lost_comes_back_when_the_runner_reconnects() {
        let coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("t.sh", "echo ok\n")], None, None).await;
        let mut first = Scripted::attach(&coord, "same-runner", vec![]).await;
        let In::Assign(lost) = first.next().await else {
            panic!("expected Assign")
        };
        // The runner never saw that Assign: it reconnects listing nothing.
        drop(first);
        let mut second = Scripted::attach(&coord, "same-runner", vec![]).await;
        let In::Assign(again) = second.next().await else {
            panic!("expected Assign")
        };
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

    #[tokio::test(flavor = "multi_thread")]
    async fn assignments_the_coordinator_disowns_do_not_hold_slots() {
        let coord = Coordinator::start(Backend::Sqlite, &[]).await;
        let mut client = coord.client().await;
        // One slot, and a resume listing an assignment nobody knows.
        let mut s = Scripted::attach(&coord, "r", vec!["unknown-assignment".into()]).await;
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
        let mut s = Scripted::attach(&coord, "r", vec![]).await;
        let In::Assign(a) = s.next().await else {
            panic!("expected Assign")
        };
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
            r.wait_exit(Duration::from_secs(30)),
            Some(0),
            "runner log: {}",
            r.log()
        );
    }
}
