//! Operating the runner fleet (issue 17) with real coordinators and real
//! runner processes: per-runner tokens (attach, revoke, refuse) and drain
//! through RunnerAdminService, on both stores; with Postgres the drain is
//! asked of a second coordinator while the runner is attached to the first.

use std::time::Duration;

use testkit::e2e::*;
use testrunner_proto::v1::runner_admin_service_client::RunnerAdminServiceClient;
use testrunner_proto::v1::{
    CreateRunnerTokenRequest, DrainRunnerRequest, ListRunnerTokensRequest, ListRunnersRequest,
    RevokeRunnerTokenRequest, RunnerInfo, test, testrun,
};
use tonic::Code;
use tonic::transport::Channel;

type Admin = RunnerAdminServiceClient<Channel>;

async fn admin(coord: &Coordinator) -> Admin {
    RunnerAdminServiceClient::connect(coord.url())
        .await
        .expect("admin client connects")
}

async fn runners(admin: &mut Admin) -> Vec<RunnerInfo> {
    admin
        .list_runners(ListRunnersRequest {})
        .await
        .expect("list runners")
        .into_inner()
        .runners
}

/// Waits until the attached runner named `name` satisfies `ok`.
async fn runner_is(
    admin: &mut Admin,
    name: &str,
    what: &str,
    ok: impl Fn(&RunnerInfo) -> bool,
) -> RunnerInfo {
    eventually(what, Duration::from_secs(20), async || {
        let list = runners(admin).await;
        match list.iter().find(|r| r.name == name) {
            Some(r) if ok(r) => Ok(r.clone()),
            _ => Err(list),
        }
    })
    .await
}

async fn create_token(admin: &mut Admin, name: &str) -> Result<String, tonic::Status> {
    admin
        .create_runner_token(CreateRunnerTokenRequest { name: name.into() })
        .await
        .map(|r| r.into_inner().secret)
}

on_both_stores! {
    a_revoked_runner_token_cuts_its_runner_off_and_its_test_goes_back_to_the_queue(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut admin = admin(&coord).await;
        let secret = create_token(&mut admin, "pool-gpu").await.unwrap();
        assert!(secret.len() >= 40, "{secret}");

        // Names are checked and never taken twice.
        let dup = create_token(&mut admin, "pool-gpu").await.unwrap_err();
        assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");
        assert!(dup.message().starts_with("name:"), "{dup:?}");
        for bad in ["", "pool gpu", "a/b", &"x".repeat(65)] {
            let err = create_token(&mut admin, bad).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
            assert!(err.message().starts_with("name:"), "{err:?}");
        }
        let unknown = admin
            .revoke_runner_token(RevokeRunnerTokenRequest { name: "nope".into() })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

        // A runner with the issued token attaches and is listed with it.
        let gpu = Runner::start_with(&coord, "gpu", 1, &["--token", &secret, "--label", "pool=gpu"]);
        let listed = runner_is(&mut admin, "gpu", "the runner to attach", |_| true).await;
        assert_eq!(listed.token_name, "pool-gpu");
        assert_eq!(listed.slots, 1);
        assert_eq!(listed.labels.get("pool").map(String::as_str), Some("gpu"), "{listed:?}");
        assert!(!listed.version.is_empty(), "{listed:?}");

        // A wrong token is refused before anything else.
        let wrong = Runner::start_with(&coord, "wrong", 1, &["--token", "not-a-token"]);

        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("long.sh", "sleep 4\necho done\n")], None, None).await;
        runner_is(&mut admin, "gpu", "the runner to hold the test", |r| r.running.len() == 1).await;

        let revoked = admin
            .revoke_runner_token(RevokeRunnerTokenRequest { name: "pool-gpu".into() })
            .await
            .unwrap()
            .into_inner();
        assert!(revoked.revoked_at.is_some());
        // Its stream ends UNAUTHENTICATED at its next heartbeat tick
        // (300 ms here), and each reconnect with the token is refused.
        eventually("the revoked runner to be refused", Duration::from_secs(5), async || {
            let log = gpu.log();
            if log.contains("coordinator refused this runner") && log.contains("was revoked") {
                Ok(())
            } else {
                Err(log)
            }
        })
        .await;
        eventually("a reconnect with the revoked token to be refused", Duration::from_secs(20), async || {
            let log = gpu.log();
            if log.contains("wrong runner token (unknown or revoked)") { Ok(()) } else { Err(log) }
        })
        .await;
        // Its test goes back to the queue once its lease runs out (rule
        // 6) and another runner finishes it.
        let _other = Runner::start(&coord, "other", 1);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        let t = test_named(&run, "long.sh");
        assert_eq!(t.runner, "other", "{run:#?}");
        assert_eq!(t.attempt, 2, "the lost attempt counts: {run:#?}");

        assert!(wrong.log().contains("wrong runner token"), "{}", wrong.log());
        assert!(runners(&mut admin).await.iter().all(|r| r.name != "wrong" && r.name != "gpu"));
        let tokens = admin
            .list_runner_tokens(ListRunnerTokensRequest {})
            .await
            .unwrap()
            .into_inner()
            .tokens;
        assert_eq!(tokens.len(), 1, "{tokens:?}");
        assert!(tokens[0].last_used_at.is_some() && tokens[0].revoked_at.is_some(), "{tokens:?}");
    }

    a_runner_drained_through_any_coordinator_finishes_its_test_and_takes_no_more(backend) {
        let a = Coordinator::start(backend, &[]).await;
        // With Postgres, the operator asks another coordinator of the
        // same database; SQLite has one coordinator.
        let b = match backend {
            Backend::Postgres => Some(Coordinator::start_sharing(&a, &[])),
            Backend::Sqlite => None,
        };
        let mut admin = admin(b.as_ref().unwrap_or(&a)).await;
        let r = Runner::start(&a, "r", 1);
        runner_is(&mut admin, "r", "the runner to be listed", |_| true).await;
        let mut client = a.client().await;
        let run = create(
            &mut client,
            vec![file("a.sh", "sleep 3\necho a\n"), file("b.sh", "echo b\n")],
            None,
            None,
        )
        .await;
        let held = runner_is(&mut admin, "r", "the runner to hold a test", |r| r.running.len() == 1).await;
        assert_eq!(held.running[0].name, "a.sh");

        let drained = admin
            .drain_runner(DrainRunnerRequest { id: "r".into() })
            .await
            .unwrap()
            .into_inner();
        assert!(drained.draining, "{drained:?}");
        // By id too, and idempotent; an unknown one is NOT_FOUND.
        let again = admin.drain_runner(DrainRunnerRequest { id: drained.id.clone() }).await.unwrap().into_inner();
        assert!(again.draining);
        let unknown = admin.drain_runner(DrainRunnerRequest { id: "nobody".into() }).await.unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
        assert!(unknown.message().starts_with("id:"), "{unknown:?}");

        // What runs finishes; nothing new goes to the drained runner.
        let run_a = wait_until(&mut client, run.id, Duration::from_secs(20), "a.sh to pass", |run| {
            status_of(run, "a.sh") == test::Status::Passed
        })
        .await;
        assert_eq!(status_of(&run_a, "b.sh"), test::Status::Queued, "{run_a:#?}\n{}", r.log());
        runner_is(&mut admin, "r", "the drained runner to stay listed, draining", |r| r.draining && r.running.is_empty()).await;
        let _next = Runner::start(&a, "next", 1);
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Success as i32, "{run:#?}");
        assert_eq!(test_named(&run, "a.sh").runner, "r");
        assert_eq!(test_named(&run, "b.sh").runner, "next", "{run:#?}");
    }
}
