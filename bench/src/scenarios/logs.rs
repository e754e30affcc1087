//! Scenario 2, log ingestion: one test printing N short lines as fast as
//! it can (`seq 1 N`), stored and acknowledged; create to SUCCESS, with the
//! stored count checked through GetTestLog.
//!
//! Baseline: the same program writing to a file.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::{Ctx, Stack, limit_for};
use crate::api;
use crate::procs::{Backend, cpu_seconds};
use crate::report::{Row, Verdict};

const NAME: &str = "2. log ingestion";
const USER: &str = "bench-logs";
/// The target, for Postgres.
const TARGET: f64 = 200_000.0;

#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub rate: f64,
    pub seconds: f64,
}

fn script(lines: usize) -> String {
    format!("seq 1 {lines}\n")
}

/// `sh seq.sh > out.txt`.
pub async fn baseline(ctx: &Ctx) -> anyhow::Result<Baseline> {
    let n = ctx.sizes.log_lines;
    let dir = tempfile::Builder::new()
        .prefix("trbench-logs-")
        .tempdir_in(&ctx.work)?;
    let file = dir.path().join("seq.sh");
    std::fs::write(&file, script(n))?;
    let out = dir.path().join("out.txt");
    let start = Instant::now();
    let status = tokio::process::Command::new("sh")
        .arg(&file)
        .stdout(std::fs::File::create(&out)?)
        .status()
        .await?;
    let seconds = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("baseline `sh seq.sh > out.txt` failed: {status}");
    }
    let written = std::fs::read(&out)?.iter().filter(|&&b| b == b'\n').count();
    if written != n {
        bail!("baseline wrote {written} lines, expected {n}");
    }
    Ok(Baseline {
        rate: n as f64 / seconds,
        seconds,
    })
}

pub async fn measure(ctx: &Ctx, backend: Backend, base: &Baseline) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::start(ctx, backend, "logs", &[]).await?;
    let result = run(ctx, &mut stack, base).await;
    stack.shutdown(result).await
}

async fn run(ctx: &Ctx, stack: &mut Stack, base: &Baseline) -> anyhow::Result<Vec<Row>> {
    let n = ctx.sizes.log_lines;
    stack.runner(ctx, "r0", 1)?;
    api::wait_runners(&stack.coord.addr, 1, Duration::from_secs(30)).await?;
    let mut client = api::client(&stack.coord.url()).await?;
    let cpu_before = cpu_seconds(stack.coord.pid()).unwrap_or(0.0);
    let (id, t0) = api::create(&mut client, USER, vec![api::file("seq.sh", script(n))]).await?;
    // At least 2,000 lines/s, or it is broken rather than slow.
    let limit = limit_for(n, Duration::from_micros(500), Duration::from_secs(60));
    let run = api::wait_success(&mut client, USER, id, limit)
        .await
        .context("waiting for the Testrun")?;
    let seconds = api::create_to_finish(&run, t0)?;
    let cpu = cpu_seconds(stack.coord.pid()).unwrap_or(0.0) - cpu_before;
    let stored = api::log_total(&mut client, id, "seq.sh").await?;
    if stored != n as u64 {
        bail!("GetTestLog total is {stored}, expected {n} lines");
    }
    let rate = n as f64 / seconds;
    let (target, verdict) = match stack.backend {
        Backend::Postgres => ("≥ 200,000 lines/s".to_owned(), Verdict::of(rate >= TARGET)),
        Backend::Sqlite => (
            "— (≥ 200,000 lines/s is for Postgres)".to_owned(),
            Verdict::Info,
        ),
    };
    let row = Row::new(
        NAME,
        stack.backend.name(),
        &format!("lines/s stored + acked, `seq 1 {n}`"),
    )
    .measured(rate, "lines/s")
    .baseline(base.rate, "lines/s")
    .target(target, verdict)
    .details(json!({
        "lines": n,
        "stored_lines_verified": stored,
        "seconds_create_to_success": seconds,
        "baseline_seconds": base.seconds,
        "baseline": "`sh seq.sh > out.txt`: the same program writing to a file",
        "coordinator_cpu_seconds": cpu,
    }));
    Ok(vec![row])
}
