//! Workspaces (issue 14) against the real coordinator on port 0, on a fresh
//! SQLite file and a fresh Postgres database per test: uploads and lookups,
//! every bad input, cut and concurrent uploads, CreateTestrun with a
//! workspace, and set-up failures routed by a hand-written runner.

use std::collections::HashMap;
use std::path::Path;

use prost::Message as _;
use testkit::{Backend, TestApp, eventually, on_both_stores};
use testrunner_content::{BuiltTree, build_tree, digest_of, encode_directory};
use testrunner_proto::v1::content_service_client::ContentServiceClient;
use testrunner_proto::v1::testrun_service_client::TestrunServiceClient;
use testrunner_proto::v1::{
    BatchUploadBlobsRequest, CancelTestrunRequest, CreateTestrunRequest, DeleteTestrunRequest,
    Digest, Directory, DirectoryNode, FileNode, FindMissingBlobsRequest, GetTestrunRequest,
    ReadBlobRequest, RerunTestrunRequest, TestFile, WatchTestrunRequest, WriteBlobRequest,
    batch_upload_blobs_request, setup, test, testrun_event,
};
use tonic::Code;
use tonic::transport::Channel;

type Blobs = ContentServiceClient<Channel>;
type Runs = TestrunServiceClient<Channel>;

async fn start(backend: Backend) -> (TestApp, Blobs, Runs) {
    let app = TestApp::spawn_with(backend, |c| {
        c.content.max_workspace_files = 50;
    })
    .await
    .expect("coordinator starts");
    let blobs = ContentServiceClient::connect(app.url()).await.unwrap();
    let runs = TestrunServiceClient::connect(app.url()).await.unwrap();
    (app, blobs, runs)
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A small project: a package in src/ and two test files.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/pkg/__init__.py", "VALUE = 1\n");
    write(dir.path(), "tests/test_a.py", "def test_a(): pass\n");
    write(dir.path(), "tests/test_b.py", "def test_b(): pass\n");
    write(dir.path(), "pyproject.toml", "[project]\nname = 'pkg'\n");
    dir
}

/// Every blob of a tree: (digest, bytes).
fn blobs_of(tree: &BuiltTree) -> Vec<(Digest, Vec<u8>)> {
    let mut out = tree.directories.clone();
    for f in &tree.files {
        out.push((f.digest.clone(), std::fs::read(&f.source).unwrap()));
    }
    out
}

async fn missing(client: &mut Blobs, digests: Vec<Digest>) -> Vec<Digest> {
    client
        .find_missing_blobs(FindMissingBlobsRequest {
            blob_digests: digests,
        })
        .await
        .unwrap()
        .into_inner()
        .missing_blob_digests
}

/// Uploads what is missing of a tree; returns how many blobs were sent.
async fn upload(client: &mut Blobs, tree: &BuiltTree) -> usize {
    let all = blobs_of(tree);
    let want = missing(client, all.iter().map(|(d, _)| d.clone()).collect()).await;
    let requests: Vec<_> = all
        .into_iter()
        .filter(|(d, _)| want.contains(d))
        .map(|(d, data)| batch_upload_blobs_request::Request {
            digest: Some(d),
            data,
        })
        .collect();
    let sent = requests.len();
    if sent > 0 {
        let answer = client
            .batch_upload_blobs(BatchUploadBlobsRequest { requests })
            .await
            .unwrap()
            .into_inner();
        for r in answer.responses {
            assert_eq!(r.code, 0, "{}", r.message);
        }
    }
    sent
}

fn create(
    root: &Digest,
    names: &[&str],
    setup: Option<&str>,
    env: &[(&str, &str)],
) -> CreateTestrunRequest {
    CreateTestrunRequest {
        username: "ws".into(),
        tests: names
            .iter()
            .map(|n| TestFile {
                name: (*n).into(),
                content: String::new(),
            })
            .collect(),
        command: Some("python3 -m pytest -q {file}".into()),
        workspace: Some(root.clone()),
        setup: setup.map(Into::into),
        env: env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect::<HashMap<_, _>>(),
        ..CreateTestrunRequest::default()
    }
}

fn assert_error<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, field: &str) {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(field),
        "message {:?} should start with {field:?}",
        status.message()
    );
}

/// Uploads one hand-made Directory and returns its digest.
async fn upload_dir(client: &mut Blobs, bytes: Vec<u8>) -> Digest {
    let d = digest_of(&bytes);
    let r = client
        .batch_upload_blobs(BatchUploadBlobsRequest {
            requests: vec![batch_upload_blobs_request::Request {
                digest: Some(d.clone()),
                data: bytes,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.responses[0].code, 0, "{}", r.responses[0].message);
    d
}

async fn read_all(client: &mut Blobs, d: &Digest, offset: i64) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = client
        .read_blob(ReadBlobRequest {
            digest: Some(d.clone()),
            offset,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        assert!(chunk.data.len() <= 1 << 20, "chunks of at most 1 MiB");
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

fn file_node(name: &str, content: &[u8]) -> FileNode {
    FileNode {
        name: name.into(),
        digest: Some(digest_of(content)),
        is_executable: false,
    }
}

on_both_stores! {
    a_rerun_has_the_same_workspace_settings_and_pins_the_tree_itself(backend) {
        let app = TestApp::spawn_with(backend, |c| {
            c.content.blob_grace = std::time::Duration::from_millis(100);
            c.runners.lease = std::time::Duration::from_millis(500);
        })
        .await
        .expect("coordinator starts");
        let mut blobs = ContentServiceClient::connect(app.url()).await.unwrap();
        let mut runs = TestrunServiceClient::connect(app.url()).await.unwrap();
        let dir = project();
        let tree = build_tree(dir.path(), |_| {}).unwrap();
        upload(&mut blobs, &tree).await;
        let mut request = create(&tree.root, &["tests/test_a.py", "tests/test_b.py"],
            Some("pip install -e ."), &[("CI", "true")]);
        request.retries = 3;
        request.timeout_seconds = Some(77);
        request.setup_timeout_seconds = Some(99);
        let original = runs.create_testrun(request).await.unwrap().into_inner();

        // Still CREATED: nothing to rerun yet.
        let early = runs
            .rerun_testrun(RerunTestrunRequest { id: original.id, only_failed: false, username: None })
            .await;
        assert_error(early, Code::FailedPrecondition, "id");
        assert_error(
            runs.rerun_testrun(RerunTestrunRequest { id: 424_242, only_failed: true, username: None }).await,
            Code::NotFound,
            "testrun 424242",
        );

        // Cancelled tests did not pass: `only_failed` takes them all.
        runs.cancel_testrun(CancelTestrunRequest { id: original.id }).await.unwrap();
        let rerun = runs
            .rerun_testrun(RerunTestrunRequest { id: original.id, only_failed: true, username: None })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rerun.rerun_of, Some(original.id));
        assert_eq!(rerun.tests.len(), 2);
        assert_eq!(rerun.workspace.as_ref().and_then(|w| w.digest.as_ref()), Some(&tree.root));
        assert_eq!(rerun.setup.as_deref(), Some("pip install -e ."));
        assert_eq!(rerun.env.get("CI").map(String::as_str), Some("true"));
        assert_eq!(
            (rerun.retries, rerun.timeout_seconds, rerun.setup_timeout_seconds, rerun.username.as_str()),
            (3, 77, 99, "ws")
        );
        assert_eq!(rerun.command, original.command);

        // The original goes; the rerun alone keeps the tree: a blob nobody
        // pins is collected meanwhile, the tree's are not.
        runs.delete_testrun(DeleteTestrunRequest { id: original.id }).await.unwrap();
        let loose = digest_of(b"nobody pins me");
        blobs
            .batch_upload_blobs(BatchUploadBlobsRequest {
                requests: vec![batch_upload_blobs_request::Request {
                    digest: Some(loose.clone()),
                    data: b"nobody pins me".to_vec(),
                }],
            })
            .await
            .unwrap();
        // (Read, not looked up: a lookup touches the blob, restarting its grace.)
        eventually("the unpinned blob to be collected", std::time::Duration::from_secs(30), async || {
            match read_all(&mut blobs, &loose, 0).await {
                Err(s) if s.code() == Code::NotFound => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let all: Vec<Digest> = blobs_of(&tree).into_iter().map(|(d, _)| d).collect();
        assert_eq!(missing(&mut blobs, all).await, Vec::<Digest>::new());
        // And the rerun can be rerun in turn: its tree resolves whole.
        runs.cancel_testrun(CancelTestrunRequest { id: rerun.id }).await.unwrap();
        let again = runs
            .rerun_testrun(RerunTestrunRequest { id: rerun.id, only_failed: false, username: None })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.rerun_of, Some(rerun.id));
    }

    an_unchanged_tree_sends_no_file_and_a_one_file_change_sends_one(backend) {
        let (_app, mut blobs, mut runs) = start(backend).await;
        let dir = project();
        let tree = build_tree(dir.path(), |_| {}).unwrap();
        // 4 files + root, src, src/pkg, tests.
        assert_eq!(upload(&mut blobs, &tree).await, 8);
        assert_eq!(upload(&mut blobs, &tree).await, 0, "a second upload sends nothing");

        let run = runs
            .create_testrun(create(&tree.root, &["tests/test_a.py", "tests/test_b.py::test_b"],
                Some("pip install -e ."), &[("CI", "true"), ("PYTHONPATH", "src")]))
            .await
            .unwrap()
            .into_inner();
        let got = runs.get_testrun(GetTestrunRequest { id: run.id }).await.unwrap().into_inner();
        let ws = got.workspace.expect("the workspace is returned");
        assert_eq!(ws.digest.as_ref(), Some(&tree.root));
        assert_eq!(ws.files, 4);
        assert_eq!(ws.bytes, tree.file_bytes());
        assert_eq!(got.setup.as_deref(), Some("pip install -e ."));
        assert_eq!(got.env.get("PYTHONPATH").map(String::as_str), Some("src"));
        assert_eq!(got.setup_timeout_seconds, 30 * 60);
        assert!(got.tests.iter().all(|t| t.status == test::Status::Queued as i32));

        // One file changed: that file, its directory and the root.
        write(dir.path(), "tests/test_b.py", "def test_b(): assert True\n");
        let changed = build_tree(dir.path(), |_| {}).unwrap();
        let want = missing(&mut blobs, blobs_of(&changed).into_iter().map(|(d, _)| d).collect()).await;
        assert_eq!(want.len(), 3, "{want:?}");
        assert_eq!(upload(&mut blobs, &changed).await, 3);

        // Blobs read back as uploaded, from any offset.
        let f = &tree.files[0];
        let bytes = std::fs::read(&f.source).unwrap();
        assert_eq!(read_all(&mut blobs, &f.digest, 0).await.unwrap(), bytes);
        assert_eq!(read_all(&mut blobs, &f.digest, 3).await.unwrap(), bytes[3..].to_vec());
    }

    every_bad_workspace_input_is_refused_naming_its_field(backend) {
        let (_app, mut blobs, mut runs) = start(backend).await;
        let dir = project();
        let tree = build_tree(dir.path(), |_| {}).unwrap();
        upload(&mut blobs, &tree).await;
        let ok = |names: &[&str]| create(&tree.root, names, None, &[]);

        let mut bad = ok(&["tests/test_a.py"]);
        bad.workspace = Some(Digest { hash: "XYZ".into(), size_bytes: 1 });
        assert_error(runs.create_testrun(bad).await, Code::InvalidArgument, "workspace.hash");
        let mut bad = ok(&["tests/test_a.py"]);
        bad.workspace = Some(Digest { hash: "a".repeat(64), size_bytes: -1 });
        assert_error(runs.create_testrun(bad).await, Code::InvalidArgument, "workspace.size_bytes");

        assert_error(runs.create_testrun(ok(&["tests/nope.py"])).await, Code::InvalidArgument, "tests[0].name");
        assert_error(runs.create_testrun(ok(&["tests/../x.py"])).await, Code::InvalidArgument, "tests[0].name");
        assert_error(runs.create_testrun(ok(&["/etc/passwd"])).await, Code::InvalidArgument, "tests[0].name");
        assert_error(runs.create_testrun(ok(&["tests"])).await, Code::InvalidArgument, "tests[0].name");
        assert_error(runs.create_testrun(ok(&["tests/test_a.py", "tests/test_a.py"])).await,
            Code::InvalidArgument, "tests[1].name");
        let mut bad = ok(&["tests/test_a.py"]);
        bad.tests[0].content = "print(1)".into();
        assert_error(runs.create_testrun(bad).await, Code::InvalidArgument, "tests[0].content");

        for (name, field) in [("PATH", "env[\"PATH\"]"), ("HOME", "env[\"HOME\"]"), ("TMPDIR", "env[\"TMPDIR\"]"),
            ("TESTRUNNER_TOKEN", "env[\"TESTRUNNER_TOKEN\"]"), ("1BAD", "env[\"1BAD\"]"), ("A-B", "env[\"A-B\"]")] {
            let bad = create(&tree.root, &["tests/test_a.py"], None, &[(name, "x")]);
            assert_error(runs.create_testrun(bad).await, Code::InvalidArgument, field);
        }
        let big = "x".repeat(33 * 1024);
        let bad = create(&tree.root, &["tests/test_a.py"], None, &[("BIG", &big)]);
        assert_error(runs.create_testrun(bad).await, Code::InvalidArgument, "env");

        let mut bad = ok(&["a.sh"]);
        bad.workspace = None;
        bad.setup = Some("make".into());
        assert_error(runs.create_testrun(bad).await, Code::InvalidArgument, "setup");

        // A tree never uploaded: FAILED_PRECONDITION naming the digest.
        let absent = digest_of(b"never uploaded");
        let mut bad = ok(&["tests/test_a.py"]);
        bad.workspace = Some(absent.clone());
        let status = runs.create_testrun(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains(&absent.hash), "{status:?}");
        // A tree whose file was never uploaded.
        let dir_bytes = encode_directory(&Directory {
            files: vec![file_node("test_x.py", b"not uploaded")],
            directories: vec![],
        });
        let root = upload_dir(&mut blobs, dir_bytes).await;
        let status = runs.create_testrun(create(&root, &["test_x.py"], None, &[])).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains(&digest_of(b"not uploaded").hash), "{status:?}");

        // Trees that break the rules, each uploaded as a valid blob.
        let good = file_node("a.py", b"");
        upload_dir(&mut blobs, Vec::new()).await; // the empty file's blob
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("dot-dot", encode_directory(&Directory { files: vec![file_node("..", b"")], directories: vec![] })),
            ("slash", encode_directory(&Directory { files: vec![file_node("a/b", b"")], directories: vec![] })),
            ("nul", encode_directory(&Directory { files: vec![file_node("a\0b", b"")], directories: vec![] })),
            ("control", encode_directory(&Directory { files: vec![file_node("a\u{1}b", b"")], directories: vec![] })),
            ("unsorted", encode_directory(&Directory { files: vec![file_node("b.py", b""), good.clone()], directories: vec![] })),
            ("duplicate", encode_directory(&Directory {
                files: vec![good.clone()],
                directories: vec![DirectoryNode { name: "a.py".into(), digest: Some(digest_of(b"")) }],
            })),
            ("undecodable", vec![0xff, 0xff, 0xff]),
        ];
        for (what, bytes) in cases {
            let root = upload_dir(&mut blobs, bytes).await;
            let status = runs.create_testrun(create(&root, &["a.py"], None, &[])).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
            assert!(status.message().starts_with("workspace"), "{what}: {status:?}");
        }

        // Over --max-workspace-files (50 in these tests).
        let many = tempfile::tempdir().unwrap();
        for i in 0..51 {
            write(many.path(), &format!("t{i:02}.py"), &format!("# {i}\n"));
        }
        let big_tree = build_tree(many.path(), |_| {}).unwrap();
        upload(&mut blobs, &big_tree).await;
        let status = runs.create_testrun(create(&big_tree.root, &["t00.py"], None, &[])).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("--max-workspace-files"), "{status:?}");

        // Digests with a bad syntax in FindMissingBlobs.
        let status = blobs
            .find_missing_blobs(FindMissingBlobsRequest {
                blob_digests: vec![Digest { hash: "g".repeat(64), size_bytes: 1 }],
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("blob_digests[0].hash"), "{status:?}");
    }

    a_blob_with_wrong_bytes_is_refused_and_nothing_is_stored(backend) {
        let (_app, mut blobs, _runs) = start(backend).await;
        let claimed = digest_of(b"the right bytes");
        let r = blobs
            .batch_upload_blobs(BatchUploadBlobsRequest {
                requests: vec![
                    batch_upload_blobs_request::Request { digest: Some(claimed.clone()), data: b"the wrong bytes".to_vec() },
                    batch_upload_blobs_request::Request { digest: Some(digest_of(b"fine")), data: b"fine".to_vec() },
                ],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.responses[0].code, Code::InvalidArgument as i32, "{:?}", r.responses[0]);
        assert_eq!(r.responses[1].code, 0, "one bad blob does not refuse the others");
        assert_eq!(missing(&mut blobs, vec![claimed.clone(), digest_of(b"fine")]).await, vec![claimed.clone()]);

        // Chunked: the last chunk triggers the check; nothing stays.
        let big: Vec<u8> = (0..(2 << 20) + 100).map(|i| (i % 253) as u8).collect();
        let d = digest_of(&big);
        let mut wrong = big.clone();
        wrong[10] ^= 1;
        let mut result = Ok(());
        for (i, chunk) in wrong.chunks(1 << 20).enumerate() {
            let r = blobs.write_blob(WriteBlobRequest {
                digest: Some(d.clone()), offset: (i << 20) as i64, data: chunk.to_vec(),
            }).await;
            if let Err(status) = r { result = Err(status); }
        }
        let status = result.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(missing(&mut blobs, vec![d.clone()]).await, vec![d.clone()]);
        assert_eq!(read_all(&mut blobs, &d, 0).await.unwrap_err().code(), Code::NotFound);
    }

    an_upload_cut_midway_stays_invisible_and_its_retry_works(backend) {
        let (_app, mut blobs, _runs) = start(backend).await;
        let big: Vec<u8> = (0..(5 << 19) + 7).map(|i| (i * 7 % 251) as u8).collect();
        let d = digest_of(&big);
        let first = blobs.write_blob(WriteBlobRequest {
            digest: Some(d.clone()), offset: 0, data: big[..1 << 20].to_vec(),
        }).await.unwrap().into_inner();
        assert_eq!((first.committed_size, first.complete), (1 << 20, false));
        // The client went away here.
        assert_eq!(missing(&mut blobs, vec![d.clone()]).await, vec![d.clone()]);
        assert_eq!(read_all(&mut blobs, &d, 0).await.unwrap_err().code(), Code::NotFound);
        // A gap is refused.
        let gap = blobs.write_blob(WriteBlobRequest {
            digest: Some(d.clone()), offset: 2 << 20, data: vec![0; 10],
        }).await.unwrap_err();
        assert_eq!(gap.code(), Code::OutOfRange, "{gap:?}");
        // The retry starts over from 0; the overlap is ignored.
        let mut offset = 0i64;
        let mut last = None;
        while (offset as usize) < big.len() {
            let end = (offset as usize + (1 << 20)).min(big.len());
            let r = blobs.write_blob(WriteBlobRequest {
                digest: Some(d.clone()), offset, data: big[offset as usize..end].to_vec(),
            }).await.unwrap().into_inner();
            offset = end as i64;
            last = Some(r);
        }
        let last = last.unwrap();
        assert!(last.complete);
        assert_eq!(last.committed_size, big.len() as i64);
        assert!(missing(&mut blobs, vec![d.clone()]).await.is_empty());
        assert_eq!(read_all(&mut blobs, &d, 0).await.unwrap(), big);
        assert_eq!(read_all(&mut blobs, &d, (1 << 20) + 5).await.unwrap(), big[(1 << 20) + 5..].to_vec());
    }

    two_clients_uploading_one_blob_at_once_both_succeed(backend) {
        let (app, mut blobs, _runs) = start(backend).await;
        let big: Vec<u8> = (0..(3 << 20) + 11).map(|i| (i * 13 % 241) as u8).collect();
        let d = digest_of(&big);
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let url = app.url();
            let big = big.clone();
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = ContentServiceClient::connect(url).await.unwrap();
                let mut offset = 0i64;
                loop {
                    let end = (offset as usize + (1 << 20)).min(big.len());
                    let r = c.write_blob(WriteBlobRequest {
                        digest: Some(d.clone()), offset, data: big[offset as usize..end].to_vec(),
                    }).await.unwrap().into_inner();
                    if r.complete {
                        return;
                    }
                    // Continue from what is stored, whoever stored it.
                    offset = r.committed_size;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(missing(&mut blobs, vec![d.clone()]).await.is_empty());
        assert_eq!(read_all(&mut blobs, &d, 0).await.unwrap(), big);
    }

    a_failed_set_up_keeps_its_runner_away_and_ends_the_tests_naming_it(backend) {
        let (app, mut blobs, mut runs) = start(backend).await;
        let dir = project();
        let tree = build_tree(dir.path(), |_| {}).unwrap();
        upload(&mut blobs, &tree).await;
        let run = runs
            .create_testrun(create(&tree.root, &["tests/test_a.py", "tests/test_b.py"], Some("pip install -e ."), &[("CI", "true")]))
            .await
            .unwrap()
            .into_inner();
        // A watcher from the start sees the set-up's events live.
        let mut watch = runs
            .watch_testrun(WatchTestrunRequest { id: run.id, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let mut r1 = raw::Stream::open(&app, "r1").await;
        let assign = r1.next_assign().await;
        assert_eq!(assign.workspace.as_ref(), Some(&tree.root));
        assert_eq!(assign.setup, "pip install -e .");
        assert_eq!(assign.env.get("CI").map(String::as_str), Some("true"));
        assert!(assign.setup_timeout.is_some());
        assert_eq!(assign.content, "");
        r1.setup_failed(run.id, 1).await;
        r1.release(&assign.assignment_id).await;
        let done = eventually(
            "the tests end ERROR naming the failed set-up",
            std::time::Duration::from_secs(30),
            async || {
                let got = runs.get_testrun(GetTestrunRequest { id: run.id }).await?.into_inner();
                if got.tests.iter().all(|t| t.status == test::Status::Error as i32) {
                    Ok(got)
                } else {
                    Err(tonic::Status::unavailable(format!("{:?}", got.tests)))
                }
            },
        )
        .await;
        for t in &done.tests {
            assert_eq!(t.error, "set-up failed on runner r1: exit 1", "{t:?}");
        }
        assert_eq!(done.setups.len(), 1);
        let s = &done.setups[0];
        assert_eq!((s.runner.as_str(), s.status, s.exit_code), ("r1", setup::Status::Failed as i32, Some(1)));
        assert_eq!(s.output, "ERROR: no setup.py\n");
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let event = tokio::time::timeout(std::time::Duration::from_secs(20), watch.message())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the watch goes on");
            if let Some(testrun_event::Event::Setup(s)) = event.event {
                seen.push(s.status);
            }
        }
        assert_eq!(seen, vec![setup::Status::Running as i32, setup::Status::Failed as i32]);
        // A new watcher's snapshot carries the workspace and the set-ups.
        let mut late = runs
            .watch_testrun(WatchTestrunRequest { id: run.id, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        match late.message().await.unwrap().unwrap().event {
            Some(testrun_event::Event::Snapshot(r)) => {
                assert_eq!(r.setups.len(), 1);
                assert_eq!(r.workspace.and_then(|w| w.digest), Some(tree.root.clone()));
            }
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }
}

/// A hand-written runner: one authenticated stream of raw protocol messages.
mod raw {
    use std::time::Duration;

    use testkit::TestApp;
    pub use testrunner_proto::v1::coordinator_message::Message as In;
    pub use testrunner_proto::v1::runner_message::Message as Out;
    use testrunner_proto::v1::runner_service_client::RunnerServiceClient;
    use testrunner_proto::v1::{
        Assign, CoordinatorMessage, ProtocolVersion, Register, Release, RunnerMessage,
        SetupFinished, SetupStarted,
    };
    use tokio::sync::mpsc;

    pub struct Stream {
        tx: mpsc::Sender<RunnerMessage>,
        inbound: tonic::Streaming<CoordinatorMessage>,
    }

    impl Stream {
        pub async fn open(app: &TestApp, name: &str) -> Self {
            let (tx, rx) = mpsc::channel(16);
            let register = Out::Register(Register {
                instance_id: uuid_like(name),
                name: name.into(),
                slots: 1,
                protocol: ProtocolVersion::ProtocolVersion1 as i32,
                ..Default::default()
            });
            tx.send(RunnerMessage {
                message: Some(register),
            })
            .await
            .unwrap();
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", app.runner_token).parse().unwrap(),
            );
            let mut client = RunnerServiceClient::connect(app.url()).await.unwrap();
            let inbound = client.attach(request).await.unwrap().into_inner();
            Self { tx, inbound }
        }

        async fn send(&self, m: Out) {
            self.tx
                .send(RunnerMessage { message: Some(m) })
                .await
                .unwrap();
        }

        async fn next(&mut self) -> In {
            let m = tokio::time::timeout(Duration::from_secs(20), self.inbound.message())
                .await
                .expect("a message in time")
                .expect("stream healthy")
                .expect("stream open");
            m.message.expect("non-empty message")
        }

        pub async fn next_assign(&mut self) -> Assign {
            loop {
                if let In::Assign(a) = self.next().await {
                    return a;
                }
            }
        }

        /// Reports a set-up that exited `code`, and waits for its ack.
        pub async fn setup_failed(&mut self, testrun_id: i64, code: i32) {
            self.send(Out::SetupStarted(SetupStarted { testrun_id }))
                .await;
            self.send(Out::SetupFinished(SetupFinished {
                testrun_id,
                ok: false,
                exit_code: Some(code),
                duration: Some(testrunner_proto::millis(1200)),
                output: "ERROR: no setup.py\n".into(),
                ..Default::default()
            }))
            .await;
            loop {
                if let In::SetupAck(ack) = self.next().await {
                    assert_eq!(ack.testrun_id, testrun_id);
                    return;
                }
            }
        }

        pub async fn release(&self, assignment_id: &str) {
            self.send(Out::Release(Release {
                assignment_id: assignment_id.into(),
            }))
            .await;
        }
    }

    fn uuid_like(name: &str) -> String {
        format!("{name}-{}", std::process::id())
    }
}

#[test]
fn directories_encode_canonically() {
    let d = Directory {
        files: vec![file_node("a", b"x")],
        directories: vec![],
    };
    assert_eq!(encode_directory(&d), d.encode_to_vec());
}
