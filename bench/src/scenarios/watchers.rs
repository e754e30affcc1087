//! Scenario 5, many watchers: W concurrent WatchTestrun streams (one
//! process, one connection and one task each) of one busy Testrun printing
//! L lines.
//! Every watcher must receive every line exactly once, and ingestion with
//! the watchers must be less than 20% slower than without them.
//!
//! Baseline: the same Testrun on the same coordinator, without watchers,
//! measured just before. Ingestion rate = L / (the test's finished_at −
//! started_at), so both runs are timed the same way: the Testrun is created
//! with no runner attached, the watchers (if any) attach and get their
//! snapshot, and only then does a runner start.
//!
//! Watchers decode events with a reduced message (`LightEvent`) that keeps
//! only the cursor and log lines as byte slices of the received buffer, so
//! the bench's own decoding takes as little CPU from the coordinator as
//! possible on a small machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use testrunner_proto::v1::WatchTestrunRequest;
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use super::{Ctx, Stack, limit_for};
use crate::api;
use crate::procs::{Backend, cpu_seconds};
use crate::report::{Row, Verdict};

const NAME: &str = "5. many watchers";
const USER: &str = "bench-watchers";
const MAX_DROP: f64 = 0.20;

/// A TestrunEvent with only what a watcher checks (other fields skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LightEvent {
    #[prost(uint64, tag = "1")]
    pub cursor: u64,
    #[prost(message, optional, tag = "4")]
    pub log: Option<LightLog>,
}

/// LogLines with the lines left as bytes (no UTF-8 check, no copy).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LightLog {
    #[prost(int64, tag = "1")]
    pub test_id: i64,
    #[prost(uint64, tag = "4")]
    pub first_line: u64,
    #[prost(bytes = "bytes", repeated, tag = "5")]
    pub lines: Vec<prost::bytes::Bytes>,
}

async fn watch_light(
    channel: Channel,
    id: i64,
) -> anyhow::Result<tonic::codec::Streaming<LightEvent>> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| anyhow::anyhow!("channel not ready: {e}"))?;
    let path = http::uri::PathAndQuery::from_static("/testrunner.v1.TestrunService/WatchTestrun");
    let codec = tonic_prost::ProstCodec::<WatchTestrunRequest, LightEvent>::default();
    Ok(grpc
        .server_streaming(
            tonic::Request::new(WatchTestrunRequest {
                id,
                after: 0,
                from_end: false,
            }),
            path,
            codec,
        )
        .await?
        .into_inner())
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// What one watcher saw.
#[derive(Debug)]
struct Seen {
    lines: u64,
    error: Option<String>,
}

/// Follows the Testrun to its end, checking line k (0-based) is `k + 1`,
/// and that each batch starts right after the previous one.
async fn watcher(url: String, id: i64, ready: Arc<AtomicUsize>, gate: Arc<Semaphore>) -> Seen {
    let mut seen = Seen {
        lines: 0,
        error: None,
    };
    let result: anyhow::Result<()> = async {
        let permit = gate.acquire().await?;
        let mut stream = watch_light(api::channel(&url).await?, id).await?;
        drop(permit);
        let mut first = true;
        while let Some(event) = stream.message().await? {
            if first {
                first = false;
                ready.fetch_add(1, Ordering::SeqCst);
            }
            let Some(log) = event.log else { continue };
            if log.first_line != seen.lines {
                bail!(
                    "batch starts at line {} after {} lines ({})",
                    log.first_line,
                    seen.lines,
                    if log.first_line < seen.lines {
                        "duplicate"
                    } else {
                        "gap"
                    }
                );
            }
            for line in &log.lines {
                seen.lines += 1;
                if parse_u64(line) != Some(seen.lines) {
                    bail!(
                        "line {} reads {:?}",
                        seen.lines,
                        String::from_utf8_lossy(line)
                    );
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        seen.error = Some(format!("{e:#}"));
    }
    seen
}

/// One ingestion run; returns (lines/s, seconds) from the test's timestamps.
async fn ingest(
    ctx: &Ctx,
    stack: &mut Stack,
    client: &mut api::Client,
    id: i64,
    name: &str,
    runner: &str,
) -> anyhow::Result<(f64, f64)> {
    let n = ctx.sizes.watch_lines;
    stack.runner(ctx, runner, 1)?;
    let limit = limit_for(n, Duration::from_millis(1), Duration::from_secs(60));
    api::wait_success(client, USER, id, limit).await?;
    let run = api::get(client, id).await?;
    let test = run
        .tests
        .iter()
        .find(|t| t.name == name)
        .context("the test")?;
    let started = api::ts_secs(test.started_at.as_ref()).context("started_at")?;
    let finished = api::ts_secs(test.finished_at.as_ref()).context("finished_at")?;
    if test.log_lines != n as u64 {
        bail!("{} lines stored, expected {n}", test.log_lines);
    }
    // The runner is idle now; stop it so the next run starts the same way.
    if let Some(mut r) = stack.runners.pop() {
        r.terminate(Duration::from_secs(10)).await;
    }
    let seconds = (finished - started).max(1e-6);
    Ok((n as f64 / seconds, seconds))
}

pub async fn measure(ctx: &Ctx, backend: Backend) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::start(ctx, backend, "watchers", &[]).await?;
    let result = run(ctx, &mut stack).await;
    stack.shutdown(result).await
}

async fn run(ctx: &Ctx, stack: &mut Stack) -> anyhow::Result<Vec<Row>> {
    let (w, n) = (ctx.sizes.watchers, ctx.sizes.watch_lines);
    let script = format!("seq 1 {n}\n");
    let mut client = api::client(&stack.coord.url()).await?;
    let pid = stack.coord.pid();

    // Without watchers.
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let (id, _) = api::create(&mut client, USER, vec![api::file("alone.sh", &script)]).await?;
    let (rate_alone, secs_alone) =
        ingest(ctx, stack, &mut client, id, "alone.sh", "r-alone").await?;
    let cpu_alone = cpu_seconds(pid).unwrap_or(0.0) - cpu0;

    // With W watchers, attached before the runner starts.
    let (id, _) = api::create(&mut client, USER, vec![api::file("watched.sh", &script)]).await?;
    let ready = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(50));
    let tasks: Vec<_> = (0..w)
        .map(|_| {
            tokio::spawn(watcher(
                stack.coord.url(),
                id,
                Arc::clone(&ready),
                Arc::clone(&gate),
            ))
        })
        .collect();
    let attach_limit = limit_for(w, Duration::from_millis(100), Duration::from_secs(30));
    let start = Instant::now();
    while ready.load(Ordering::SeqCst) < w {
        if start.elapsed() > attach_limit || tasks.iter().all(|t| t.is_finished()) {
            bail!(
                "{} of {w} watchers attached within {}s",
                ready.load(Ordering::SeqCst),
                attach_limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let me = std::process::id();
    let my_cpu0 = cpu_seconds(me).unwrap_or(0.0);
    let delivery_start = Instant::now();
    let (rate_watched, secs_watched) =
        ingest(ctx, stack, &mut client, id, "watched.sh", "r-watched").await?;
    let deliver_limit = limit_for(w * n, Duration::from_micros(20), Duration::from_secs(60));
    let seen = tokio::time::timeout(deliver_limit, futures::future::join_all(tasks))
        .await
        .with_context(|| {
            format!(
                "watchers still receiving after {}s",
                deliver_limit.as_secs()
            )
        })?;
    let deliver_seconds = delivery_start.elapsed().as_secs_f64();
    let cpu_watched = cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let my_cpu = cpu_seconds(me).unwrap_or(0.0) - my_cpu0;

    let mut exact = 0;
    let mut problems = Vec::new();
    for s in seen {
        match s {
            Ok(Seen { lines, error: None }) if lines == n as u64 => exact += 1,
            Ok(Seen { lines, error }) => problems.push(format!(
                "{lines} lines{}",
                error.map_or(String::new(), |e| format!(": {e}"))
            )),
            Err(e) => problems.push(format!("task: {e}")),
        }
    }
    let ratio = rate_watched / rate_alone;
    let all_exact = exact == w;
    let details = json!({
        "watchers": w,
        "lines": n,
        "rate_without_watchers": rate_alone,
        "rate_with_watchers": rate_watched,
        "ingest_seconds_without": secs_alone,
        "ingest_seconds_with": secs_watched,
        "drop": 1.0 - ratio,
        "watchers_exactly_once": exact,
        "watcher_problems": problems.iter().take(5).collect::<Vec<_>>(),
        "seconds_until_every_watcher_had_every_line": deliver_seconds,
        "coordinator_cpu_seconds_without": cpu_alone,
        "coordinator_cpu_seconds_with": cpu_watched,
        "watcher_process_cpu_seconds": my_cpu,
        "baseline": "the same Testrun on the same coordinator, without watchers",
    });
    let backend = stack.backend.name();
    Ok(vec![
        Row::new(
            NAME,
            backend,
            &format!("lines/s ingested with {w} watchers, `seq 1 {n}`"),
        )
        .measured(rate_watched, "lines/s")
        .baseline(rate_alone, "lines/s")
        .target("drop < 20% (≥ 0.80×)", Verdict::of(ratio >= 1.0 - MAX_DROP))
        .details(details.clone()),
        Row::new(NAME, backend, "watchers with every line exactly once")
            .measured(exact as f64, "watchers")
            .baseline(w as f64, "watchers")
            .target(format!("all {w}"), Verdict::of(all_exact))
            .details(details),
    ])
}
