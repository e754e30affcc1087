//! Clients of the coordinator's public API and of `/metrics`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use testrunner_proto::v1::testrun_service_client::TestrunServiceClient;
use testrunner_proto::v1::{
    CreateTestrunRequest, GetTestLogRequest, GetTestrunRequest, ListTestrunsRequest, TestFile,
    Testrun, get_test_log_request, testrun,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::{Channel, Endpoint};

pub type Client = TestrunServiceClient<Channel>;

/// A new HTTP/2 connection to `url` (one per caller that wants its own).
pub async fn channel(url: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

pub async fn client(url: &str) -> anyhow::Result<Client> {
    Ok(TestrunServiceClient::new(channel(url).await?)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20))
}

pub fn file(name: impl Into<String>, content: impl Into<String>) -> TestFile {
    TestFile {
        name: name.into(),
        content: content.into(),
    }
}

/// Creates a Testrun; its id and the wall-clock time just before the call.
pub async fn create(
    client: &mut Client,
    username: &str,
    tests: Vec<TestFile>,
) -> anyhow::Result<(i64, SystemTime)> {
    let t0 = SystemTime::now();
    let run = client
        .create_testrun(CreateTestrunRequest {
            username: username.into(),
            tests,
            command: None,
            timeout_seconds: None,
            ..CreateTestrunRequest::default()
        })
        .await
        .context("CreateTestrun")?
        .into_inner();
    Ok((run.id, t0))
}

fn is_terminal(run: &Testrun) -> bool {
    [
        testrun::Status::Success as i32,
        testrun::Status::Failed as i32,
        testrun::Status::Cancelled as i32,
    ]
    .contains(&run.status)
}

/// Polls (cheaply: ListTestruns, no tests) until the Testrun `id` of
/// `username` is terminal; fails unless it ended SUCCESS.
pub async fn wait_success(
    client: &mut Client,
    username: &str,
    id: i64,
    limit: Duration,
) -> anyhow::Result<Testrun> {
    let start = Instant::now();
    loop {
        let page = client
            .list_testruns(ListTestrunsRequest {
                page_size: 1,
                page_token: String::new(),
                status: None,
                username: Some(username.into()),
            })
            .await
            .context("ListTestruns")?
            .into_inner();
        if let Some(run) = page.testruns.into_iter().find(|r| r.id == id) {
            if is_terminal(&run) {
                if run.status != testrun::Status::Success as i32 {
                    bail!(
                        "testrun {id} ended {:?} with counts {:?}",
                        testrun::Status::try_from(run.status),
                        run.counts
                    );
                }
                return Ok(run);
            }
            if start.elapsed() > limit {
                bail!(
                    "testrun {id} not done after {}s: counts {:?}",
                    limit.as_secs(),
                    run.counts
                );
            }
        } else if start.elapsed() > limit {
            bail!("testrun {id} not listed after {}s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Testrun with its tests.
pub async fn get(client: &mut Client, id: i64) -> anyhow::Result<Testrun> {
    Ok(client
        .get_testrun(GetTestrunRequest { id })
        .await
        .context("GetTestrun")?
        .into_inner())
}

/// Lines stored for a test (GetTestLog's `total`).
pub async fn log_total(client: &mut Client, testrun_id: i64, name: &str) -> anyhow::Result<u64> {
    Ok(client
        .get_test_log(GetTestLogRequest {
            testrun_id,
            test: Some(get_test_log_request::Test::TestName(name.into())),
            offset: 0,
            limit: 1,
        })
        .await
        .context("GetTestLog")?
        .into_inner()
        .total)
}

/// A protobuf timestamp as seconds since the epoch.
pub fn ts_secs(ts: Option<&prost_types::Timestamp>) -> Option<f64> {
    ts.map(|t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
}

pub fn secs_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

pub fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128
}

/// Seconds from `t0` to the Testrun's `finished_at` (the server's clock, on
/// this same machine).
pub fn create_to_finish(run: &Testrun, t0: SystemTime) -> anyhow::Result<f64> {
    let finished = ts_secs(run.finished_at.as_ref()).context("finished_at missing")?;
    Ok((finished - secs_since_epoch(t0)).max(1e-6))
}

/// `GET /metrics` over plain HTTP/1.1.
pub async fn metrics(addr: &str) -> anyhow::Result<String> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .context("connecting for /metrics timed out")??;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut body))
        .await
        .context("reading /metrics timed out")??;
    Ok(body)
}

/// A gauge or counter without labels from `/metrics`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Waits until `/metrics` reports `n` runners connected.
pub async fn wait_runners(addr: &str, n: usize, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let connected = metric(&metrics(addr).await?, "testrunner_runners_connected");
        if connected.is_some_and(|c| c as usize >= n) {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!(
                "{connected:?} runners connected after {}s, expected {n}",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
