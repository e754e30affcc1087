//! Test history on both stores (issue 16): outcomes recorded as results are
//! stored, the durations a new Testrun's tests are expected to take, the
//! claim handing them out longest first, bounded storage, and flips on the
//! same workspace.

use std::collections::BTreeMap;
use std::sync::Arc;

use coordinator::domain::history::KEPT_OUTCOMES;
use coordinator::domain::workspace::{NewWorkspace, TestrunWorkspace, WorkspaceRef};
use coordinator::domain::{NewTest, NewTestrun, RunnerInfo, TestResult, TestStatus};
use coordinator::store::{self, Store};
use testkit::{Backend, TestDb, on_both_stores};

async fn open(backend: Backend) -> (TestDb, Arc<dyn Store>) {
    let db = TestDb::new(backend).await.unwrap();
    let store = store::connect(&db.url).await.unwrap();
    (db, store)
}

fn testrun(suite: &str, names: &[&str], workspace: Option<&str>) -> NewTestrun {
    NewTestrun {
        username: "u".into(),
        suite: suite.into(),
        command: None,
        timeout_ms: 60_000,
        tests: names
            .iter()
            .map(|n| NewTest {
                name: (*n).into(),
                content: "true".into(),
            })
            .collect(),
        workspace: workspace.map(|digest| NewWorkspace {
            settings: TestrunWorkspace {
                workspace: Some(WorkspaceRef {
                    digest: digest.into(),
                    files: 1,
                    bytes: 1,
                }),
                setup: None,
                env: BTreeMap::new(),
                setup_timeout_ms: 0,
            },
            blobs: vec![digest.into()],
        }),
        limits: Default::default(),
        selector: Default::default(),
    }
}

/// A 1-slot runner registered now; returns its epoch.
async fn runner(store: &dyn Store, id: &str) -> (RunnerInfo, i64) {
    let info = RunnerInfo {
        id: id.into(),
        name: id.into(),
        slots: 1,
        queue: 0,
        version: "test".into(),
        ..RunnerInfo::default()
    };
    let reg = store
        .register_runner(&info, i64::MAX / 2, &[], 1_000)
        .await
        .unwrap();
    (info, reg.epoch)
}

/// Claims the queue one test at a time, as a 1-slot runner would, and
/// returns (name, assignment id) in the order the claim handed them out.
async fn drain(store: &dyn Store, who: &(RunnerInfo, i64)) -> Vec<(String, String)> {
    let mut order = Vec::new();
    loop {
        let claim = store.claim_tests(&who.0, who.1, 1, 2_000).await.unwrap();
        let Some(a) = claim.assignments.into_iter().next() else {
            return order;
        };
        order.push((a.name, a.assignment_id));
    }
}

fn result(status: TestStatus, duration_ms: i64) -> TestResult {
    TestResult {
        status,
        exit_code: Some(i32::from(status != TestStatus::Passed)),
        duration_ms,
        error: String::new(),
    }
}

/// Runs a Testrun of `suite` to its end: each test gets the status and
/// duration `outcome` gives its name.
async fn run_with(
    store: &dyn Store,
    who: &(RunnerInfo, i64),
    suite: &str,
    names: &[&str],
    workspace: Option<&str>,
    outcome: impl Fn(&str) -> (TestStatus, i64),
) -> i64 {
    let run = store
        .create_testrun(&testrun(suite, names, workspace), 1_500)
        .await
        .unwrap();
    let results: Vec<(String, TestResult)> = drain(store, who)
        .await
        .into_iter()
        .map(|(name, assignment)| {
            let (status, ms) = outcome(&name);
            (assignment, result(status, ms))
        })
        .collect();
    assert_eq!(results.len(), names.len());
    store.finish_tests(&results, 3_000).await.unwrap();
    run.id
}

on_both_stores! {
    /// The claim hands a Testrun's tests out by expected duration, longest
    /// first: each test's median, the suite's median of medians for a test
    /// it has never seen, and submission order for a suite with no history.
    the_claim_hands_out_the_longest_expected_first(backend) {
        let (_db, store) = open(backend).await;
        let r1 = runner(&*store, "r1").await;
        // History: two runs of t1..t4 (medians 100, 400, 200, 300); a
        // TIMED_OUT outcome does not count as a duration.
        let ms = |n: &str| match n { "t1" => 100, "t2" => 400, "t3" => 200, _ => 300 };
        run_with(&*store, &r1, "web", &["t1", "t2", "t3", "t4"], None, |n| (TestStatus::Passed, ms(n))).await;
        run_with(&*store, &r1, "web", &["t1", "t2", "t3", "t4"], None, |n| {
            if n == "t1" { (TestStatus::TimedOut, 60_000) } else { (TestStatus::Failed, ms(n)) }
        }).await;

        let second = store
            .create_testrun(&testrun("web", &["t1", "t2", "t3", "new", "t4"], None), 4_000)
            .await
            .unwrap();
        let expected: Vec<(String, Option<i64>)> =
            second.tests.iter().map(|t| (t.name.clone(), t.expected_ms)).collect();
        // `new`: the median of 100, 200, 300, 400.
        assert_eq!(expected, [
            ("t1".into(), Some(100)), ("t2".into(), Some(400)), ("t3".into(), Some(200)),
            ("new".into(), Some(250)), ("t4".into(), Some(300)),
        ]);
        let fresh = store
            .create_testrun(&testrun("other", &["z", "y", "x"], None), 4_000)
            .await
            .unwrap();
        assert!(fresh.tests.iter().all(|t| t.expected_ms.is_none()));

        let order: Vec<String> = drain(&*store, &r1).await.into_iter().map(|(n, _)| n).collect();
        assert_eq!(order, ["t2", "t4", "new", "t3", "t1", "z", "y", "x"]);

        // Several at once come out in the same order.
        let third = store
            .create_testrun(&testrun("web", &["t1", "t2", "t3", "t4"], None), 5_000)
            .await
            .unwrap();
        let big = RunnerInfo { slots: 8, ..r1.0.clone() };
        let claim = store.claim_tests(&big, r1.1, 8, 5_000).await.unwrap();
        assert!(claim.assignments.iter().all(|a| a.testrun_id == third.id));
        let names: Vec<&str> = claim.assignments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["t2", "t4", "t3", "t1"]);
    }

    /// A test's history: newest first, median and samples of the kept
    /// durations, at most KEPT_OUTCOMES kept; a Testrun deleted keeps its
    /// outcomes; cancelled tests record nothing.
    history_is_recorded_bounded_and_outlives_its_testrun(backend) {
        let (_db, store) = open(backend).await;
        let r1 = runner(&*store, "r1").await;
        let mut ids = Vec::new();
        for i in 0..(KEPT_OUTCOMES + 5) {
            ids.push(run_with(&*store, &r1, "s", &["a", "b"], None, |n| {
                if n == "a" { (TestStatus::Passed, 10 * (i + 1)) } else { (TestStatus::Error, 5) }
            }).await);
        }
        store.delete_testrun(ids[ids.len() - 1]).await.unwrap();
        let h = store.test_history("s", "a", 3).await.unwrap().expect("history");
        let newest: Vec<i64> = h.outcomes.iter().map(|o| o.testrun_id).collect();
        assert_eq!(newest, ids[ids.len() - 3..].iter().rev().copied().collect::<Vec<_>>());
        assert_eq!(h.outcomes[0].status, "PASSED");
        assert_eq!(h.outcomes[0].duration_ms, Some(10 * (KEPT_OUTCOMES + 5)));
        assert_eq!(h.outcomes[0].runner_name.as_deref(), Some("r1"));
        assert_eq!(h.outcomes[0].attempts, 1);
        // Kept: runs 6..=55 (durations 60..=550): median (300 + 310) / 2.
        assert_eq!(h.stats.samples, KEPT_OUTCOMES);
        assert_eq!(h.stats.median_ms, Some(305));
        let all = store.test_history("s", "a", 1000).await.unwrap().unwrap();
        assert_eq!(all.outcomes.len() as i64, KEPT_OUTCOMES);
        // ERROR outcomes are kept but give no duration.
        let b = store.test_history("s", "b", 5).await.unwrap().unwrap();
        assert_eq!(b.outcomes[0].status, "ERROR");
        assert_eq!((b.stats.samples, b.stats.median_ms), (0, None));

        assert!(store.test_history("s", "nope", 5).await.unwrap().is_none());
        assert!(store.test_history("nope", "a", 5).await.unwrap().is_none());
        assert!(!store.suite_exists("nope").await.unwrap());

        // A cancelled Testrun's tests record nothing.
        let run = store.create_testrun(&testrun("quiet", &["c"], None), 9_000).await.unwrap();
        store.cancel_testrun(run.id, 9_000).await.unwrap();
        assert!(!store.suite_exists("quiet").await.unwrap());
    }

    /// A test flips when its verdict differs from an earlier one on the
    /// same workspace; a different workspace (a code change) is no flip.
    flips_are_found_on_the_same_workspace_only(backend) {
        let (_db, store) = open(backend).await;
        let r1 = runner(&*store, "r1").await;
        let pass = |_: &str| (TestStatus::Passed, 10);
        let fail = |_: &str| (TestStatus::Failed, 10);
        let ws_a = "aaaa/1";
        let ws_b = "bbbb/1";
        run_with(&*store, &r1, "s", &["t"], Some(ws_a), pass).await;
        // A new workspace that fails: a change broke it, not a flip.
        run_with(&*store, &r1, "s", &["t"], Some(ws_b), fail).await;
        let h = store.test_history("s", "t", 10).await.unwrap().unwrap();
        assert!(h.flipped_in.is_empty());
        assert_eq!(h.stats.flips, 0);
        // The first workspace again, failing now: a flip.
        let flipped = run_with(&*store, &r1, "s", &["t"], Some(ws_a), fail).await;
        // Without a workspace there is nothing to compare.
        run_with(&*store, &r1, "s", &["t"], None, pass).await;
        let h = store.test_history("s", "t", 10).await.unwrap().unwrap();
        assert_eq!(h.flipped_in, [flipped]);
        assert_eq!(h.stats.flips, 1);
        assert_eq!(h.outcomes[1].workspace.as_deref(), Some(ws_a));

        // The suite's page and the list agree.
        let suite = store.get_suite("s", 20).await.unwrap().expect("suite");
        assert_eq!(suite.summary.tests, 1);
        assert_eq!(suite.summary.flaky_tests, 1);
        assert_eq!(suite.summary.testruns, 4);
        assert_eq!(suite.flakiest.len(), 1);
        assert_eq!(suite.flakiest[0].flipped_in, [flipped]);
        assert_eq!(suite.flakiest[0].last.len(), 4);
        assert_eq!(suite.slowest[0].stats.median_ms, Some(10));
        assert_eq!(suite.testruns.len(), 4);
        assert!(suite.testruns.windows(2).all(|w| w[0].id > w[1].id));
        let suites = store.list_suites(None, 10).await.unwrap();
        assert_eq!(suites, std::slice::from_ref(&suite.summary));
        assert!(store.get_suite("nope", 20).await.unwrap().is_none());
    }

    /// Suites page most recently finished first, ties by name, each page
    /// going on after the last one's (time, name).
    suites_page_by_last_run_then_name(backend) {
        let (_db, store) = open(backend).await;
        let r1 = runner(&*store, "r1").await;
        for suite in ["b", "c", "a"] {
            run_with(&*store, &r1, suite, &["t"], None, |_| (TestStatus::Passed, 1)).await;
        }
        let first = store.list_suites(None, 2).await.unwrap();
        let names: Vec<&str> = first.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let last = first.last().unwrap();
        let rest = store
            .list_suites(Some((last.last_run_at, last.name.clone())), 2)
            .await
            .unwrap();
        let names: Vec<&str> = rest.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["c"]);
        assert_eq!((rest[0].tests, rest[0].testruns, rest[0].flaky_tests), (1, 1, 0));
    }
}
