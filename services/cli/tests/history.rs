//! Test history end to end (issue 16): real coordinators, a real runner and
//! the `testrunner` command. A workspace's suite is its directory's name; a
//! test that passes and then fails on the same workspace has flipped; every
//! coordinator on one Postgres sees the same history and orders by it.

use std::time::Duration;

use testkit::e2e::*;
use testrunner_proto::v1::{
    CreateTestrunRequest, GetSuiteRequest, GetTestHistoryRequest, ListSuitesRequest,
    ListTestrunsRequest, Test, test,
};
use tonic::Code;

/// Asserts a call failed with `code` and a message naming `field`.
fn assert_error<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, field: &str) {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(field),
        "message {:?} should start with {field:?}",
        status.message()
    );
}

fn history(suite: &str, name: &str, limit: u32) -> GetTestHistoryRequest {
    GetTestHistoryRequest {
        suite: suite.into(),
        name: name.into(),
        limit,
    }
}

fn ms(t: &Test) -> Option<i64> {
    t.expected_duration
        .map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
}

on_both_stores! {
    /// Two runs of a workspace through the CLI: the suite is the
    /// directory's name; the test that failed the second time on the same
    /// tree flipped; the history, the suite list and the suite page say so;
    /// bad questions are refused naming their field.
    a_workspace_suite_records_outcomes_and_flips(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let shared = shared_dir();
        let marker = shared.path().join("broken");
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("myproj");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("test_flip.sh"),
            format!("if [ -e {} ]; then echo broken; exit 1; fi\necho fine\n", marker.display()),
        )
        .unwrap();
        std::fs::write(dir.join("test_ok.sh"), "echo ok\n").unwrap();
        let run = |dir: &std::path::Path| {
            testrunner(&coord, &[
                "run", "--workspace", dir.to_str().unwrap(), "--command", "sh {file}", "test_*.sh",
            ])
        };
        let out = run(&dir);
        assert!(out.status.success(), "{:?}", text(&out));
        std::fs::write(&marker, "").unwrap();
        let out = run(&dir);
        assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
        let runs = client
            .list_testruns(ListTestrunsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .testruns;
        let (second, first) = (runs[0].id, runs[1].id);
        assert!(runs.iter().all(|r| r.suite == "myproj"), "{runs:?}");

        let out = testrunner(&coord, &["history", "--suite", "myproj", "test_flip.sh"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("test_flip.sh in suite myproj: median"), "{stdout}");
        assert!(stdout.contains(&format!("flaky, flipped in {second}")), "{stdout}");
        assert_eq!(stdout.matches("  testrun ").count(), 2, "{stdout}");
        let out = testrunner(&coord, &["suites"]);
        let (stdout, _) = text(&out);
        assert!(stdout.contains("myproj") && stdout.contains("2 tests, 2 testruns, 1 flaky"), "{stdout}");

        let ok = client.get_test_history(history("myproj", "test_ok.sh", 0)).await.unwrap().into_inner();
        let ids: Vec<i64> = ok.outcomes.iter().map(|o| o.testrun_id).collect();
        assert_eq!(ids, [second, first]);
        assert_eq!((ok.samples, ok.flaky), (2, false));
        assert!(ok.median.is_some());
        let o = &ok.outcomes[0];
        assert_eq!((o.status, o.attempts, o.runner.as_str()), (test::Status::Passed as i32, 1, "r1"));
        assert!(o.workspace.is_some() && o.duration.is_some() && o.finished_at.is_some());
        let flip = client.get_test_history(history("myproj", "test_flip.sh", 1)).await.unwrap().into_inner();
        assert_eq!(flip.outcomes.len(), 1);
        assert_eq!(flip.outcomes[0].status, test::Status::Failed as i32);
        assert_eq!((flip.flaky, flip.flipped_in.as_slice()), (true, &[second][..]));

        let suite = client
            .get_suite(GetSuiteRequest { suite: "myproj".into(), limit: 0 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(suite.summary.as_ref().map(|s| (s.tests, s.testruns, s.flaky_tests)), Some((2, 2, 1)));
        assert_eq!(suite.slowest.len(), 2);
        assert!(ms_of(&suite.slowest[0]) >= ms_of(&suite.slowest[1]));
        let flakiest: Vec<(&str, u32)> = suite.flakiest.iter().map(|t| (t.name.as_str(), t.flips)).collect();
        assert_eq!(flakiest, [("test_flip.sh", 1)]);
        assert_eq!(suite.flakiest[0].last.len(), 2);
        let testruns: Vec<i64> = suite.testruns.iter().map(|r| r.id).collect();
        assert_eq!(testruns, [second, first]);
        assert!(suite.testruns.iter().all(|r| r.tests.is_empty()));
        let suites = client.list_suites(ListSuitesRequest::default()).await.unwrap().into_inner();
        assert_eq!(suites.suites.len(), 1);
        assert!(suites.next_page_token.is_empty());

        // The next Testrun of the suite is ordered by what was learnt; one
        // without a suite gets the username's.
        let next = client
            .create_testrun(CreateTestrunRequest {
                username: "e2e".into(),
                suite: Some("myproj".into()),
                tests: vec![file("test_ok.sh", "true"), file("test_new.sh", "true")],
                ..CreateTestrunRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(next.tests.iter().all(|t| t.expected_duration.is_some()), "{next:?}");
        let plain = create(&mut client, vec![file("a.sh", "true")], None, None).await;
        assert_eq!(plain.suite, "e2e");
        assert_eq!(ms(&plain.tests[0]), None);

        // Bad questions.
        assert_error(client.get_test_history(history("nope", "test_ok.sh", 0)).await, Code::NotFound, "suite");
        assert_error(client.get_test_history(history("myproj", "nope", 0)).await, Code::NotFound, "name");
        assert_error(client.get_test_history(history("", "x", 0)).await, Code::InvalidArgument, "suite");
        assert_error(client.get_test_history(history("myproj", "", 0)).await, Code::InvalidArgument, "name");
        assert_error(client.get_test_history(history("myproj", "x", 101)).await, Code::InvalidArgument, "limit");
        assert_error(
            client.get_suite(GetSuiteRequest { suite: "nope".into(), limit: 0 }).await,
            Code::NotFound,
            "suite",
        );
        assert_error(
            client.get_suite(GetSuiteRequest { suite: "x".repeat(129), limit: 0 }).await,
            Code::InvalidArgument,
            "suite",
        );
        assert_error(
            client.list_suites(ListSuitesRequest { page_size: 0, page_token: "garbage".into() }).await,
            Code::InvalidArgument,
            "page_token",
        );
        assert_error(
            client.list_suites(ListSuitesRequest { page_size: 1001, page_token: String::new() }).await,
            Code::InvalidArgument,
            "page_size",
        );
        for bad in [String::new(), "x".repeat(129), "a\tb".into()] {
            assert_error(
                client
                    .create_testrun(CreateTestrunRequest {
                        username: "e2e".into(),
                        suite: Some(bad),
                        tests: vec![file("a.sh", "true")],
                        ..CreateTestrunRequest::default()
                    })
                    .await,
                Code::InvalidArgument,
                "suite",
            );
        }
        let out = testrunner(&coord, &["history", "--suite", "nope", "x"]);
        assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    }
}

fn ms_of(t: &testrunner_proto::v1::SuiteTest) -> i64 {
    t.median
        .map_or(0, |d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
}

/// Several coordinators on one Postgres agree: history written through one
/// is read through the other, and a Testrun created on the other is
/// ordered by it (seen in the order a 1-slot runner starts its tests).
#[tokio::test(flavor = "multi_thread")]
async fn two_coordinators_on_one_postgres_share_the_history() {
    let a = Coordinator::start(Backend::Postgres, &[]).await;
    let b = Coordinator::start_sharing(&a, &[]);
    let _r = Runner::start(&a, "r1", 1);
    let mut via_a = a.client().await;
    let mut via_b = b.client().await;
    let suite = |tests| CreateTestrunRequest {
        username: "e2e".into(),
        suite: Some("shared".into()),
        tests,
        ..CreateTestrunRequest::default()
    };
    let first = via_a
        .create_testrun(suite(vec![
            file("fast.sh", "true\n"),
            file("slow.sh", "sleep 0.5\n"),
        ]))
        .await
        .unwrap()
        .into_inner();
    wait_done(&mut via_a, first.id).await;

    let slow = via_b
        .get_test_history(history("shared", "slow.sh", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(slow.outcomes.len(), 1);
    assert_eq!(slow.outcomes[0].testrun_id, first.id);
    let page = via_b
        .get_suite(GetSuiteRequest {
            suite: "shared".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.slowest[0].name, "slow.sh");

    let second = via_b
        .create_testrun(suite(vec![
            file("fast.sh", "true\n"),
            file("new.sh", "true\n"),
            file("slow.sh", "sleep 0.5\n"),
        ]))
        .await
        .unwrap()
        .into_inner();
    let expected: Vec<Option<i64>> = second.tests.iter().map(ms).collect();
    assert!(
        expected[2] > expected[1] && expected[1] > expected[0],
        "{expected:?}"
    );
    let done = wait_until(
        &mut via_a,
        second.id,
        Duration::from_secs(60),
        "the second testrun to end",
        is_terminal,
    )
    .await;
    let started = |name: &str| test_named(&done, name).started_at.expect("started");
    let key = |t: prost_types::Timestamp| (t.seconds, t.nanos);
    assert!(key(started("slow.sh")) < key(started("new.sh")));
    assert!(key(started("new.sh")) <= key(started("fast.sh")));
}
