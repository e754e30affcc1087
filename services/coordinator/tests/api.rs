//! The Testrun API against the real coordinator on port 0, on a fresh
//! SQLite file and a fresh Postgres database per test.

use testkit::{Backend, TestApp, on_both_stores};
use testrunner_proto::v1::testrun_service_client::TestrunServiceClient;
use testrunner_proto::v1::{
    CancelTestrunRequest, CreateTestrunRequest, DeleteTestrunRequest, GetTestrunRequest,
    ListTestrunsRequest, TestFile, testrun,
};
use tonic::Code;
use tonic::transport::Channel;

async fn start(backend: Backend) -> (TestApp, TestrunServiceClient<Channel>) {
    let app = TestApp::spawn_with(backend, |c| {
        c.limits.max_file_bytes = 1024;
        c.limits.max_files = 20;
    })
    .await
    .expect("coordinator starts");
    let client = TestrunServiceClient::connect(app.url())
        .await
        .expect("connects");
    (app, client)
}

fn file(name: &str, content: &str) -> TestFile {
    TestFile {
        name: name.into(),
        content: content.into(),
    }
}

fn request(username: &str, files: Vec<TestFile>) -> CreateTestrunRequest {
    CreateTestrunRequest {
        username: username.into(),
        tests: files,
        command: None,
        timeout_seconds: None,
        ..CreateTestrunRequest::default()
    }
}

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

on_both_stores! {
    a_created_testrun_is_stored_with_its_tests_queued(backend) {
        let (_app, mut client) = start(backend).await;
        let run = client
            .create_testrun(request("Steve", vec![file("test_ok.sh", "echo hello\n"), file("b.py", "print(1)")]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(run.status, testrun::Status::Created as i32);
        assert_eq!(run.username, "Steve");
        assert_eq!(run.tests.len(), 2);
        assert!(run.tests.iter().all(|t| t.status == testrunner_proto::v1::test::Status::Queued as i32));
        assert_eq!(run.counts.unwrap().queued, 2);
        assert_eq!(run.timeout_seconds, 600, "the default timeout applies");

        let got = client.get_testrun(GetTestrunRequest { id: run.id }).await.unwrap().into_inner();
        assert_eq!(got.id, run.id);
        assert_eq!(got.tests.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["test_ok.sh", "b.py"]);
        assert_eq!(got.tests[0].size_bytes, 11);
    }

    a_deleted_testrun_is_gone(backend) {
        let (_app, mut client) = start(backend).await;
        let run = client.create_testrun(request("u", vec![file("a.sh", "true")])).await.unwrap().into_inner();
        client.delete_testrun(DeleteTestrunRequest { id: run.id }).await.unwrap();
        assert_error(client.get_testrun(GetTestrunRequest { id: run.id }).await, Code::NotFound, "testrun");
        let list = client.list_testruns(ListTestrunsRequest::default()).await.unwrap().into_inner();
        assert_eq!(list.total_size, 0);
    }

    a_watch_request_is_read_plain_or_gzipped_and_other_encodings_are_refused(backend) {
        let (_app, mut client) = start(backend).await;
        let run = client.create_testrun(request("u", vec![file("a.sh", "true")])).await.unwrap().into_inner();
        let watch = testrunner_proto::v1::WatchTestrunRequest { id: run.id, after: 0, from_end: false };
        // A gzipped request is read like a plain one: the snapshot comes back.
        let mut gzipped = client
            .clone()
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .watch_testrun(watch)
            .await
            .expect("a gzipped request is accepted")
            .into_inner();
        let first = gzipped.message().await.unwrap().expect("a snapshot");
        assert!(matches!(first.event, Some(testrunner_proto::v1::testrun_event::Event::Snapshot(_))), "{first:?}");
        // Any other request encoding is named in the error, with what is accepted.
        let mut brotli = tonic::Request::new(watch);
        brotli.metadata_mut().insert("grpc-encoding", "br".parse().unwrap());
        let status = client.watch_testrun(brotli).await.expect_err("br is not supported");
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        assert!(status.message().starts_with("grpc-encoding"), "{status:?}");
        assert_eq!(status.metadata().get("grpc-accept-encoding").unwrap(), "gzip,identity");
        // Unknown ids fail the call itself.
        assert_error(
            client.watch_testrun(testrunner_proto::v1::WatchTestrunRequest { id: 999, after: 0, from_end: false }).await,
            Code::NotFound,
            "testrun 999",
        );
    }

    unknown_ids_are_not_found(backend) {
        let (_app, mut client) = start(backend).await;
        assert_error(client.get_testrun(GetTestrunRequest { id: 999 }).await, Code::NotFound, "testrun 999");
        assert_error(client.cancel_testrun(CancelTestrunRequest { id: 999 }).await, Code::NotFound, "testrun 999");
        assert_error(client.delete_testrun(DeleteTestrunRequest { id: 999 }).await, Code::NotFound, "testrun 999");
    }

    cancelling_a_created_testrun_cancels_it_and_its_tests_once(backend) {
        let (_app, mut client) = start(backend).await;
        let run = client.create_testrun(request("u", vec![file("a.sh", "true"), file("b.sh", "true")])).await.unwrap().into_inner();
        let cancelled = client.cancel_testrun(CancelTestrunRequest { id: run.id }).await.unwrap().into_inner();
        assert_eq!(cancelled.status, testrun::Status::Cancelled as i32);
        assert!(cancelled.finished_at.is_some());
        assert!(cancelled.tests.iter().all(|t| t.status == testrunner_proto::v1::test::Status::Cancelled as i32));
        assert_eq!(cancelled.counts.unwrap().cancelled, 2);
        assert_error(client.cancel_testrun(CancelTestrunRequest { id: run.id }).await, Code::FailedPrecondition, "testrun");
    }

    usernames_must_be_1_to_64_characters(backend) {
        let (_app, mut client) = start(backend).await;
        assert_error(client.create_testrun(request("", vec![file("a.sh", "")])).await, Code::InvalidArgument, "username");
        assert_error(client.create_testrun(request("   ", vec![file("a.sh", "")])).await, Code::InvalidArgument, "username");
        assert_error(client.create_testrun(request(&"x".repeat(65), vec![file("a.sh", "")])).await, Code::InvalidArgument, "username");
        client.create_testrun(request(&"é".repeat(64), vec![file("a.sh", "")])).await.expect("64 characters is fine");
    }

    a_testrun_needs_tests_within_the_limit(backend) {
        let (_app, mut client) = start(backend).await;
        assert_error(client.create_testrun(request("u", vec![])).await, Code::InvalidArgument, "tests");
        let many = (0..21).map(|i| file(&format!("t{i}.sh"), "")).collect();
        assert_error(client.create_testrun(request("u", many)).await, Code::InvalidArgument, "tests");
    }

    unsafe_file_names_are_refused_naming_the_file(backend) {
        let (_app, mut client) = start(backend).await;
        let long = "x".repeat(256);
        for bad in ["", ".", "..", "a/b", "..\\evil", "nul\0byte", "new\nline", "tab\there", long.as_str()] {
            assert_error(
                client.create_testrun(request("u", vec![file("ok.sh", ""), file(bad, "")])).await,
                Code::InvalidArgument,
                "tests[1].name",
            );
        }
    }

    bad_selectors_are_refused_naming_the_label(backend) {
        let (_app, mut client) = start(backend).await;
        let with = |pairs: Vec<(String, String)>| CreateTestrunRequest {
            selector: pairs.into_iter().collect(),
            ..request("u", vec![file("a.sh", "")])
        };
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        for (bad, field) in [
            (pair("gpu", ""), r#"selector["gpu"]"#),
            (pair("", "a100"), r#"selector[""]"#),
            (pair("gpu", "a 100"), r#"selector["gpu"]"#),
            (pair("gpu", "a=b"), r#"selector["gpu"]"#),
            (pair("gp/u", "x"), r#"selector["gp/u"]"#),
            (pair("gpu", &"x".repeat(64)), r#"selector["gpu"]"#),
        ] {
            assert_error(client.create_testrun(with(vec![bad])).await, Code::InvalidArgument, field);
        }
        let many = |n: usize| (0..n).map(|i| pair(&format!("k{i}"), "v")).collect::<Vec<_>>();
        assert_error(
            client.create_testrun(with(many(17))).await,
            Code::InvalidArgument,
            "selector: more than 16 labels",
        );
        // Sixteen is the limit; the selector is stored and returned.
        let run = client.create_testrun(with(many(16))).await.expect("16 labels").into_inner();
        assert_eq!(run.selector.len(), 16);
        let got = client.get_testrun(GetTestrunRequest { id: run.id }).await.unwrap().into_inner();
        assert_eq!(got.selector, run.selector);
        // No runner anywhere: it says what it waits for.
        assert!(got.waiting.starts_with("waiting for a runner with k0=v,k1=v,k10=v"), "{got:?}");
    }

    duplicate_file_names_are_refused(backend) {
        let (_app, mut client) = start(backend).await;
        assert_error(
            client.create_testrun(request("u", vec![file("a.sh", ""), file("a.sh", "")])).await,
            Code::InvalidArgument,
            "tests[1].name",
        );
    }

    files_over_the_size_limit_are_refused(backend) {
        let (_app, mut client) = start(backend).await;
        assert_error(
            client.create_testrun(request("u", vec![file("big.sh", &"x".repeat(1025))])).await,
            Code::InvalidArgument,
            "tests[0].content",
        );
        assert_error(
            client.create_testrun(request("u", vec![file("nul.sh", "a\0b")])).await,
            Code::InvalidArgument,
            "tests[0].content",
        );
    }

    command_templates_and_timeouts_are_checked(backend) {
        let (_app, mut client) = start(backend).await;
        let mut r = request("u", vec![file("a.py", "")]);
        r.command = Some("pytest -q".into());
        assert_error(client.create_testrun(r.clone()).await, Code::InvalidArgument, "command");
        r.command = Some("pytest -q {file}".into());
        r.timeout_seconds = Some(100 * 24 * 3600);
        assert_error(client.create_testrun(r.clone()).await, Code::InvalidArgument, "timeout_seconds");
        r.timeout_seconds = Some(30);
        let run = client.create_testrun(r).await.unwrap().into_inner();
        assert_eq!(run.command.as_deref(), Some("pytest -q {file}"));
        assert_eq!(run.timeout_seconds, 30);
    }

    nothing_is_stored_when_a_create_is_refused(backend) {
        let (_app, mut client) = start(backend).await;
        let _ = client.create_testrun(request("u", vec![file("a.sh", ""), file("a/b", "")])).await;
        let list = client.list_testruns(ListTestrunsRequest::default()).await.unwrap().into_inner();
        assert_eq!(list.total_size, 0);
    }

    the_list_pages_newest_first_and_filters(backend) {
        let (_app, mut client) = start(backend).await;
        for user in ["ann", "bob", "ann", "bob", "ann"] {
            client.create_testrun(request(user, vec![file("a.sh", "")])).await.unwrap();
        }
        client.cancel_testrun(CancelTestrunRequest { id: 2 }).await.unwrap();

        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_testruns(ListTestrunsRequest { page_size: 2, page_token: token.clone(), ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(page.total_size, 5);
            assert!(page.testruns.iter().all(|r| r.tests.is_empty()), "lists carry counts, not tests");
            ids.extend(page.testruns.iter().map(|r| r.id));
            if page.next_page_token.is_empty() { break; }
            token = page.next_page_token;
        }
        assert_eq!(ids, [5, 4, 3, 2, 1]);

        let anns = client
            .list_testruns(ListTestrunsRequest { username: Some("ann".into()), ..Default::default() })
            .await.unwrap().into_inner();
        assert_eq!(anns.testruns.iter().map(|r| r.id).collect::<Vec<_>>(), [5, 3, 1]);
        assert_eq!(anns.total_size, 3);
        let cancelled = client
            .list_testruns(ListTestrunsRequest { status: Some(testrun::Status::Cancelled as i32), ..Default::default() })
            .await.unwrap().into_inner();
        assert_eq!(cancelled.testruns.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
    }

    bad_list_requests_name_their_field(backend) {
        let (_app, mut client) = start(backend).await;
        assert_error(
            client.list_testruns(ListTestrunsRequest { page_token: "not-a-token".into(), ..Default::default() }).await,
            Code::InvalidArgument,
            "page_token",
        );
        assert_error(
            client.list_testruns(ListTestrunsRequest { page_size: 1001, ..Default::default() }).await,
            Code::InvalidArgument,
            "page_size",
        );
        assert_error(
            client.list_testruns(ListTestrunsRequest { status: Some(42), ..Default::default() }).await,
            Code::InvalidArgument,
            "status",
        );
    }
}

on_both_stores! {
    /// The store rolls a create back whole when a statement fails halfway
    /// (validation normally prevents this; the transaction must not rely on it).
    a_create_that_fails_halfway_stores_nothing(backend) {
        use coordinator::domain::{ListFilter, NewTest, NewTestrun};
        let db = testkit::TestDb::new(backend).await.unwrap();
        let store = coordinator::store::connect(&db.url).await.unwrap();
        let dup = |n: &str| NewTest {
            name: n.into(),
            content: String::new(),
        };
        let run = NewTestrun {
            username: "u".into(),
            suite: "u".into(),
            command: None,
            timeout_ms: 1000,
            // The second insert of "a" violates UNIQUE (testrun_id, name).
            tests: vec![dup("a"), dup("a")],
            workspace: None,
            limits: Default::default(),
            selector: Default::default(),
        };
        assert!(store.create_testrun(&run, 0).await.is_err());
        let (runs, total) = store
            .list_testruns(&ListFilter::default(), None, 10)
            .await
            .unwrap();
        assert!(runs.is_empty());
        assert_eq!(total, 0);
    }
}

mod api_token {
    use super::*;

    #[tokio::test]
    async fn write_calls_need_the_api_token_when_one_is_set() {
        let app = TestApp::spawn_with(Backend::Sqlite, |c| c.api_token = "letmein".into())
            .await
            .unwrap();
        let mut client = TestrunServiceClient::connect(app.url()).await.unwrap();
        let status = client
            .create_testrun(request("u", vec![file("a.sh", "")]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);

        let mut authed = tonic::Request::new(request("u", vec![file("a.sh", "")]));
        authed
            .metadata_mut()
            .insert("authorization", "Bearer wrong".parse().unwrap());
        assert_eq!(
            client.create_testrun(authed).await.unwrap_err().code(),
            Code::Unauthenticated
        );

        let mut authed = tonic::Request::new(request("u", vec![file("a.sh", "")]));
        authed
            .metadata_mut()
            .insert("authorization", "Bearer letmein".parse().unwrap());
        let run = client.create_testrun(authed).await.unwrap().into_inner();
        // Reads stay open.
        client
            .get_testrun(GetTestrunRequest { id: run.id })
            .await
            .unwrap();
        assert_eq!(
            client
                .delete_testrun(DeleteTestrunRequest { id: run.id })
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
    }
}

mod runner_admin {
    use testrunner_proto::v1::content_service_client::ContentServiceClient;
    use testrunner_proto::v1::runner_admin_service_client::RunnerAdminServiceClient;
    use testrunner_proto::v1::{
        CreateRunnerTokenRequest, FindMissingBlobsRequest, ListRunnersRequest,
        RevokeRunnerTokenRequest,
    };

    use super::*;

    fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }

    #[tokio::test]
    async fn the_fleet_needs_the_api_token_and_issued_tokens_read_blobs_until_revoked() {
        let app = TestApp::spawn_with(Backend::Sqlite, |c| c.api_token = "letmein".into())
            .await
            .unwrap();
        let mut admin = RunnerAdminServiceClient::connect(app.url()).await.unwrap();
        let denied = admin.list_runners(ListRunnersRequest {}).await.unwrap_err();
        assert_eq!(denied.code(), Code::Unauthenticated, "{denied:?}");
        let denied = admin
            .create_runner_token(bearer(
                CreateRunnerTokenRequest { name: "x".into() },
                "wrong",
            ))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::Unauthenticated, "{denied:?}");
        let listed = admin
            .list_runners(bearer(ListRunnersRequest {}, "letmein"))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.runners.is_empty());
        let secret = admin
            .create_runner_token(bearer(
                CreateRunnerTokenRequest {
                    name: "pool-a".into(),
                },
                "letmein",
            ))
            .await
            .unwrap()
            .into_inner()
            .secret;

        // A runner reads blobs with its own token, not once it is revoked.
        let mut content = ContentServiceClient::connect(app.url()).await.unwrap();
        let find = || FindMissingBlobsRequest::default();
        content
            .find_missing_blobs(bearer(find(), &secret))
            .await
            .unwrap();
        content
            .find_missing_blobs(bearer(find(), &app.runner_token))
            .await
            .unwrap();
        admin
            .revoke_runner_token(bearer(
                RevokeRunnerTokenRequest {
                    name: "pool-a".into(),
                },
                "letmein",
            ))
            .await
            .unwrap();
        let refused = content
            .find_missing_blobs(bearer(find(), &secret))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }

    #[tokio::test]
    async fn per_test_limits_are_checked_stored_and_returned() {
        let (_app, mut client) = start(Backend::Sqlite).await;
        for (memory, pids, field) in [
            (Some(0), None, "test_memory_bytes"),
            (None, Some(0), "test_pids"),
        ] {
            let err = client
                .create_testrun(CreateTestrunRequest {
                    test_memory_bytes: memory,
                    test_pids: pids,
                    ..request("u", vec![file("a.sh", "")])
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
            assert!(err.message().starts_with(&format!("{field}:")), "{err:?}");
        }
        let run = client
            .create_testrun(CreateTestrunRequest {
                test_memory_bytes: Some(512 << 20),
                test_pids: Some(256),
                ..request("u", vec![file("a.sh", "")])
            })
            .await
            .unwrap()
            .into_inner();
        let got = client
            .get_testrun(GetTestrunRequest { id: run.id })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (got.test_memory_bytes, got.test_pids),
            (Some(512 << 20), Some(256))
        );
    }
}
