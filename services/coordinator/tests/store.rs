//! The store's contract, held to the same answers on both backends: the
//! places where the two implementations used to differ (how a delete
//! removed log lines, which Testruns a take-back reported) and the named
//! transition a cancel of an ended Testrun is refused with.

use std::sync::Arc;

use coordinator::domain::{NewTest, NewTestrun, RunnerInfo, TestStatus, TestrunStatus};
use coordinator::error::Error;
use coordinator::store::{self, AppendOutcome, Store};
use testkit::{Backend, TestDb, on_both_stores};

fn testrun(names: &[&str]) -> NewTestrun {
    NewTestrun {
        username: "u".into(),
        suite: "u".into(),
        command: None,
        timeout_ms: 60_000,
        tests: names
            .iter()
            .map(|n| NewTest {
                name: (*n).into(),
                content: "true".into(),
            })
            .collect(),
        workspace: None,
        limits: Default::default(),
        selector: Default::default(),
    }
}

fn runner() -> RunnerInfo {
    RunnerInfo {
        id: "r1".into(),
        name: "r1".into(),
        slots: 8,
        queue: 0,
        version: "test".into(),
        ..RunnerInfo::default()
    }
}

/// Log lines the database holds for a Testrun, read past the store.
async fn stored_log_lines(backend: Backend, url: &str, testrun_id: i64) -> i64 {
    let sql = "SELECT count(*) FROM log_lines WHERE testrun_id = $1";
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query_scalar(sql)
                .bind(testrun_id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query_scalar(sql)
                .bind(testrun_id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    }
}

async fn open(backend: Backend) -> (TestDb, Arc<dyn Store>) {
    let db = TestDb::new(backend).await.unwrap();
    let store = store::connect(&db.url).await.unwrap();
    (db, store)
}

on_both_stores! {
    /// Lost runners' tests go back to the queue; the sweep names exactly
    /// the Testruns whose tests moved, in id order, and a delete leaves no
    /// log line behind.
    store_operations_agree_on_both_stores(backend) {
        let (db, store) = open(backend).await;
        let now = 1_000_000;
        // Three Testruns; the middle one's tests are all claimed and then
        // finished before the sweep, so it must not be reported.
        let a = store.create_testrun(&testrun(&["a1", "a2"]), now).await.unwrap();
        let b = store.create_testrun(&testrun(&["b1"]), now).await.unwrap();
        let c = store.create_testrun(&testrun(&["c1"]), now).await.unwrap();
        let reg = store.register_runner(&runner(), now + 1000, &[], now).await.unwrap();
        let claim = store.claim_tests(&runner(), reg.epoch, 10, now).await.unwrap();
        assert_eq!(claim.assignments.len(), 4);
        assert!(claim.testruns.iter().all(|r| r.status == TestrunStatus::Running));

        let of = |id: i64| {
            claim.assignments.iter().find(|x| x.testrun_id == id).unwrap().assignment_id.clone()
        };
        let lines: Vec<String> = (1..=3).map(|i| format!("line {i}")).collect();
        let appended = store.append_logs(&of(a.id), 1, &lines).await.unwrap();
        assert!(matches!(appended, AppendOutcome::Stored { last_seq: 3, .. }));
        let finished = store
            .finish_tests(
                &[(
                    of(b.id),
                    coordinator::domain::TestResult {
                        status: TestStatus::Passed,
                        exit_code: Some(0),
                        duration_ms: 5,
                        error: String::new(),
                    },
                )],
                now,
            )
            .await
            .unwrap();
        assert_eq!(finished.testruns[0].status, TestrunStatus::Success);

        // The lease ran out: a, c go back to the queue (attempts allow it).
        let touched = store.expire_leases(now + 5000, 3).await.unwrap();
        assert_eq!(touched, vec![a.id, c.id], "the Testruns whose tests moved, in id order");
        let a_now = store.get_testrun(a.id, true).await.unwrap().unwrap();
        assert!(a_now.tests.iter().all(|t| t.status == TestStatus::Queued));
        assert_eq!(a_now.counts.running, 0);

        // A cancel of an ended Testrun is refused as the transition it is.
        let err = store.cancel_testrun(b.id, now).await.unwrap_err();
        assert!(
            matches!(&err, Error::IllegalTransition { cause, .. }
                if cause.from == TestrunStatus::Success && cause.to == TestrunStatus::Cancelled),
            "{err:?}"
        );
        assert_eq!(err.to_string(), format!("testrun {} already ended with status SUCCESS", b.id));

        assert_eq!(stored_log_lines(backend, &db.url, a.id).await, 3);
        store.delete_testrun(a.id).await.unwrap();
        assert_eq!(stored_log_lines(backend, &db.url, a.id).await, 0);
        assert!(store.get_testrun(a.id, false).await.unwrap().is_none());
        assert!(matches!(store.delete_testrun(a.id).await, Err(Error::NotFound(_))));
    }
}
