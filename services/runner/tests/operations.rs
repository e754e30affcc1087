//! Operating the system: metrics after a known workload, TLS between runner
//! and coordinator, a separate runner listener, and two coordinators
//! sharing one Postgres.

use std::process::Command;
use std::time::Duration;

use testkit::e2e::*;
use testkit::metrics::http_get;
use testrunner_proto::v1::testrun_event::Event;
use testrunner_proto::v1::testrun_service_client::TestrunServiceClient;
use testrunner_proto::v1::{CancelTestrunRequest, WatchTestrunRequest, test, testrun};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_a_known_workload() {
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    // No runner queue: this test counts queue depth as autoscaling reads
    // it, and a runner whose tests so far were short would first take the
    // extra tests into its own queue (queue.rs tests that).
    let r = Runner::start_with(&coord, "r1", 3, &["--queue", "0"]);
    let mut client = coord.client().await;
    let run = create(
        &mut client,
        vec![
            file("a.sh", "seq 1 10\n"),
            file("b.sh", "seq 1 5\n"),
            file("c.sh", "echo no\nexit 1\n"),
        ],
        None,
        None,
    )
    .await;
    wait_done(&mut client, run.id).await;

    // Counters follow the commit by a moment, as gauges do: the finisher
    // counts what it stored after the transaction, and the Testrun reads
    // as done as soon as it commits. (The free-slots gauge is 3 before the
    // run too, so waiting on it alone orders nothing.) A counter that
    // overshoots never reads the value waited for, so this still fails.
    coord
        .metric_reaches("testrunner_tests_finished_total{outcome=\"PASSED\"}", 2.0)
        .await;
    coord
        .metric_reaches("testrunner_tests_finished_total{outcome=\"FAILED\"}", 1.0)
        .await;
    let m = coord
        .metric_reaches("testrunner_runner_free_slots", 3.0)
        .await;
    assert_eq!(
        m.value("testrunner_tests_finished_total{outcome=\"PASSED\"}"),
        2.0
    );
    assert_eq!(
        m.value("testrunner_tests_finished_total{outcome=\"FAILED\"}"),
        1.0
    );
    assert_eq!(m.value("testrunner_log_lines_ingested_total"), 16.0);
    assert_eq!(m.value("testrunner_tests_queued{selector=\"\"}"), 0.0);
    assert_eq!(m.value("testrunner_tests_running{selector=\"\"}"), 0.0);
    assert_eq!(m.value("testrunner_runners_connected"), 1.0);
    assert_eq!(m.value("testrunner_runner_free_slots"), 3.0);
    assert_eq!(m.value("testrunner_dispatch_latency_seconds_count"), 3.0);
    assert!(
        m.text()
            .contains("# TYPE testrunner_dispatch_latency_seconds histogram")
    );

    // Queue depth is what autoscaling reads: it must see waiting work.
    let queued = create(&mut client, vec![file("q.sh", "sleep 30\n")], None, None).await;
    let waiting = create(
        &mut client,
        (0..4)
            .map(|i| file(&format!("w{i}.sh"), "sleep 30\n"))
            .collect(),
        None,
        None,
    )
    .await;
    let m = coord
        .metric_reaches("testrunner_tests_running{selector=\"\"}", 3.0)
        .await;
    assert_eq!(m.value("testrunner_tests_queued{selector=\"\"}"), 2.0);
    let m = coord
        .metric_reaches("testrunner_runner_free_slots", 0.0)
        .await;
    assert_eq!(m.value("testrunner_tests_queued{selector=\"\"}"), 2.0);
    assert!(m.value("testrunner_oldest_queued_seconds") >= 0.0);

    let runner = r
        .metric_reaches("testrunner_runner_running_tests", 3.0)
        .await;
    assert_eq!(runner.value("testrunner_runner_slots"), 3.0);
    assert_eq!(runner.value("testrunner_runner_running_tests"), 3.0);
    assert_eq!(runner.value("testrunner_runner_connected"), 1.0);
    assert_eq!(
        http_get(&r.metrics_addr, "/healthz").await.unwrap().trim(),
        "ok"
    );
    for id in [queued.id, waiting.id] {
        client
            .cancel_testrun(CancelTestrunRequest { id })
            .await
            .unwrap();
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA in `dir` (`ca.pem`, `ca.key`).
fn certificate_authority(dir: &std::path::Path) -> std::path::PathBuf {
    let d = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=testrunner-test-ca",
        "-keyout",
        &d("ca.key"),
        "-out",
        &d("ca.pem"),
    ]);
    dir.join("ca.pem")
}

/// A leaf certificate for `localhost` and 127.0.0.1 signed by the test CA
/// (a CA certificate is refused as a server identity), usable by server and
/// client alike.
fn certificate(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let d = |f: String| dir.join(f).to_str().unwrap().to_owned();
    let ext = d(format!("{name}.ext"));
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n").unwrap();
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        &d(format!("{name}.key")),
        "-out",
        &d(format!("{name}.csr")),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &d(format!("{name}.csr")),
        "-CA",
        &d("ca.pem".into()),
        "-CAkey",
        &d("ca.key".into()),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &ext,
        "-out",
        &d(format!("{name}.pem")),
    ]);
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

/// Nice values of a process's threads, by thread name prefix.
fn thread_nices(pid: u32, prefix: &str) -> Vec<i64> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the name in parentheses; nice is field 19 of the line.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        nices.push(fields[16].parse().unwrap());
    }
    nices
}

#[tokio::test(flavor = "multi_thread")]
async fn runners_on_their_own_listener_get_the_cpu_before_the_api() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let coord = Coordinator::start(backend, &["--runner-listen", "127.0.0.1:0"]).await;
        let runner_addr = coord.runner_addr.clone().expect("a runner listener");
        assert_ne!(runner_addr, coord.addr);
        let _r = Runner::start(&coord, "r1", 2);
        let mut client = coord.client().await;
        let run = create(
            &mut client,
            vec![file("a.sh", "echo from a\n"), file("b.sh", "exit 3\n")],
            None,
            None,
        )
        .await;
        let done = wait_done(&mut client, run.id).await;
        assert_eq!(done.status, testrun::Status::Failed as i32);
        assert_eq!(log_of(&mut client, run.id, "a.sh").await, ["from a"]);

        // The runner port serves runners (and health), not the user API.
        let mut wrong = TestrunServiceClient::connect(format!("http://{runner_addr}"))
            .await
            .unwrap();
        let err = wrong
            .get_testrun(testrunner_proto::v1::GetTestrunRequest { id: run.id })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");

        let api = thread_nices(coord.pid(), "api");
        let plane = thread_nices(coord.pid(), "runner-plane");
        assert!(!api.is_empty() && !plane.is_empty(), "{api:?} {plane:?}");
        assert!(api.iter().all(|n| *n == 10), "API threads: {api:?}");
        assert!(
            plane.iter().all(|n| *n == 0),
            "runner plane threads: {plane:?}"
        );
    }
}

async fn tls_client(
    url: String,
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> TestrunServiceClient<Channel> {
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    let channel = Endpoint::from_shared(url)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connect");
    TestrunServiceClient::new(channel)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_works_over_tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certificate_authority(dir.path());
    let (server_cert, server_key) = certificate(dir.path(), "coordinator");
    let (client_cert, client_key) = certificate(dir.path(), "runner");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let coord = Coordinator::start(
        Backend::Sqlite,
        &[
            "--tls-cert",
            &s(&server_cert),
            "--tls-key",
            &s(&server_key),
            "--tls-client-ca",
            &s(&ca),
        ],
    )
    .await;
    assert_eq!(coord.scheme, "https");

    // Without a client certificate the handshake is refused.
    let plain = Endpoint::from_shared(coord.url())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(std::fs::read(&ca).unwrap())),
        )
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut c = TestrunServiceClient::new(channel);
        assert!(
            c.list_testruns(testrunner_proto::v1::ListTestrunsRequest::default())
                .await
                .is_err()
        );
    }

    let _r = Runner::start_with(
        &coord,
        "tls-runner",
        1,
        &[
            "--tls-ca",
            &s(&ca),
            "--tls-cert",
            &s(&client_cert),
            "--tls-key",
            &s(&client_key),
        ],
    );
    let mut client = tls_client(coord.url(), &ca, Some((&client_cert, &client_key))).await;
    let run = create(
        &mut client,
        vec![file("a.sh", "echo over tls\n")],
        None,
        None,
    )
    .await;
    let run = wait_done(&mut client, run.id).await;
    assert_eq!(run.status, testrun::Status::Success as i32);
    assert_eq!(test_named(&run, "a.sh").runner, "tls-runner");
    assert_eq!(log_of(&mut client, run.id, "a.sh").await, ["over tls"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_coordinators_on_one_postgres_serve_the_same_runners_and_watchers() {
    let a = Coordinator::start(Backend::Postgres, &[]).await;
    let b = Coordinator::start_sharing(&a, &[]);
    let runner = Runner::start(&a, "on-a", 2);
    let mut via_b = b.client().await;
    // Created through B: A's runner must be woken, and B's watcher must see
    // lines that A ingests.
    let script = "for i in $(seq 1 300); do echo line $i; done\nsleep 0.3\necho end\n";
    let run = create(
        &mut via_b,
        vec![file("t.sh", script), file("u.sh", "echo u\n")],
        None,
        None,
    )
    .await;
    let mut watch = via_b
        .watch_testrun(WatchTestrunRequest {
            id: run.id,
            after: 0,
            from_end: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut lines = Vec::new();
    let mut last_status = 0;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("events flow")
    {
        match event.event {
            Some(Event::Log(log)) if log.test_name == "t.sh" => {
                assert_eq!(log.first_line as usize, lines.len(), "no gap, no repeat");
                lines.extend(log.lines);
            }
            Some(Event::Testrun(r)) | Some(Event::Snapshot(r)) => last_status = r.status,
            _ => {}
        }
    }
    let mut expected: Vec<String> = (1..=300).map(|i| format!("line {i}")).collect();
    expected.push("end".into());
    assert_eq!(lines, expected, "runner log: {}", runner.log());
    assert_eq!(last_status, testrun::Status::Success as i32);

    // A cancel through B reaches the runner attached to A.
    let long = create(
        &mut via_b,
        vec![file("long.sh", "echo started\nsleep 60\n")],
        None,
        None,
    )
    .await;
    wait_until(
        &mut via_b,
        long.id,
        Duration::from_secs(30),
        "the test to start",
        |r| {
            r.tests
                .iter()
                .all(|t| t.status == test::Status::Running as i32 && t.log_lines > 0)
        },
    )
    .await;
    via_b
        .cancel_testrun(CancelTestrunRequest { id: long.id })
        .await
        .unwrap();
    let done = wait_until(
        &mut via_b,
        long.id,
        Duration::from_secs(20),
        "the kill to land",
        |r| r.counts.as_ref().is_some_and(|c| c.running == 0),
    )
    .await;
    assert_eq!(
        status_of(&done, "long.sh"),
        test::Status::Cancelled,
        "{done:#?}"
    );
}
