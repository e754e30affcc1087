//! Scenario 3, live latency: a test prints its wall-clock time in
//! nanoseconds every 10 ms while a watcher follows it over WatchTestrun;
//! latency is receipt time minus printed time (one clock: same machine).
//!
//! Baseline: the same printer read through a local pipe.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;
use testrunner_proto::v1::WatchTestrunRequest;
use testrunner_proto::v1::testrun_event::Event;
use tokio::io::AsyncBufReadExt as _;

use super::{Ctx, Stack, limit_for, percentile};
use crate::api::{self, now_nanos};
use crate::procs::Backend;
use crate::report::{Row, Verdict};

const NAME: &str = "3. live latency";
const USER: &str = "bench-latency";
/// The PATH the runner gives tests by default.
const TEST_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
const TARGET_P99_MS: f64 = 5.0;

/// Waits half a second (so the watcher is attached), then prints the time
/// every 10 ms, flushing each line.
fn script(lines: usize) -> String {
    format!(
        "import time\n\
         time.sleep(0.5)\n\
         for _ in range({lines}):\n\
         \x20   print(time.time_ns(), flush=True)\n\
         \x20   time.sleep(0.01)\n"
    )
}

#[derive(Debug, Clone)]
pub struct Baseline {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Latencies in ms, sorted.
fn summarize(mut ms: Vec<f64>) -> Vec<f64> {
    ms.sort_by(f64::total_cmp);
    ms
}

fn latency_ms(line: &str, received: i128) -> anyhow::Result<f64> {
    let printed: i128 = line
        .trim()
        .parse()
        .with_context(|| format!("not a timestamp: {line:?}"))?;
    Ok((received - printed) as f64 / 1e6)
}

pub async fn baseline(ctx: &Ctx) -> anyhow::Result<Baseline> {
    let n = ctx.sizes.latency_lines;
    let dir = tempfile::Builder::new()
        .prefix("trbench-latency-")
        .tempdir_in(&ctx.work)?;
    let file = dir.path().join("clock.py");
    std::fs::write(&file, script(n))?;
    let mut child = tokio::process::Command::new("python3")
        .arg(&file)
        .env_clear()
        .env("PATH", TEST_PATH)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running python3 (the latency printer needs it on the runner's PATH)")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut ms = Vec::with_capacity(n);
    let limit = limit_for(n, Duration::from_millis(50), Duration::from_secs(30));
    tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await? {
            ms.push(latency_ms(&line, now_nanos())?);
        }
        anyhow::Ok(())
    })
    .await
    .context("the baseline printer did not finish")??;
    let status = child.wait().await?;
    if !status.success() || ms.len() != n {
        bail!("baseline printer: {status}, {} of {n} lines", ms.len());
    }
    let ms = summarize(ms);
    Ok(Baseline {
        p50_ms: percentile(&ms, 0.50),
        p99_ms: percentile(&ms, 0.99),
    })
}

pub async fn measure(ctx: &Ctx, backend: Backend, base: &Baseline) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::start(ctx, backend, "latency", &[]).await?;
    let result = run(ctx, &mut stack, base).await;
    stack.shutdown(result).await
}

async fn run(ctx: &Ctx, stack: &mut Stack, base: &Baseline) -> anyhow::Result<Vec<Row>> {
    let n = ctx.sizes.latency_lines;
    stack.runner(ctx, "r0", 1)?;
    api::wait_runners(&stack.coord.addr, 1, Duration::from_secs(30)).await?;
    let mut client = api::client(&stack.coord.url()).await?;
    let mut watcher = api::client(&stack.coord.url()).await?;
    let (id, _) = api::create(&mut client, USER, vec![api::file("clock.py", script(n))]).await?;
    let mut stream = watcher
        .watch_testrun(WatchTestrunRequest {
            id,
            after: 0,
            from_end: false,
        })
        .await?
        .into_inner();
    let mut ms = Vec::with_capacity(n);
    let limit = limit_for(n, Duration::from_millis(50), Duration::from_secs(60));
    tokio::time::timeout(limit, async {
        while let Some(event) = stream.message().await? {
            let received = now_nanos();
            if let Some(Event::Log(log)) = event.event {
                for line in &log.lines {
                    ms.push(latency_ms(line, received)?);
                }
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("the watched Testrun did not end")??;
    let run = api::wait_success(&mut client, USER, id, Duration::from_secs(30)).await?;
    if ms.len() != n {
        bail!(
            "the watcher received {} of {n} lines (testrun {:?})",
            ms.len(),
            run.counts
        );
    }
    let ms = summarize(ms);
    let (p50, p99, max) = (
        percentile(&ms, 0.50),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
    );
    let details = json!({
        "lines": n,
        "interval_ms": 10,
        "p50_ms": p50,
        "p90_ms": percentile(&ms, 0.90),
        "p99_ms": p99,
        "max_ms": max,
        "baseline_p50_ms": base.p50_ms,
        "baseline_p99_ms": base.p99_ms,
        "baseline": "the same python3 printer read through a local pipe",
    });
    let backend = stack.backend.name();
    Ok(vec![
        Row::new(NAME, backend, "p50, print → watcher")
            .measured(p50, "ms")
            .baseline(base.p50_ms, "ms")
            .details(details.clone()),
        Row::new(NAME, backend, "p99, print → watcher")
            .measured(p99, "ms")
            .baseline(base.p99_ms, "ms")
            .target("≤ 5 ms", Verdict::of(p99 <= TARGET_P99_MS))
            .details(details),
    ])
}
