//! Scenario 1, dispatch throughput: N trivial tests through R runners ×
//! S slots.
//!
//! Baseline: the same files run by a plain parallel loop with the same
//! number of slots and no coordinator (`sh FILE`, output captured): the
//! floor set by process start-up on this machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::{Ctx, Stack, limit_for, trivial_files};
use crate::api;
use crate::procs::{Backend, cpu_seconds};
use crate::report::{Row, Verdict};

const NAME: &str = "1. dispatch";
const USER: &str = "bench-dispatch";

#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub rate: f64,
    pub seconds: f64,
}

/// Runs the files with `slots` threads, each spawning `sh FILE` in turn.
pub async fn baseline(ctx: &Ctx) -> anyhow::Result<Baseline> {
    let n = ctx.sizes.dispatch_tests;
    let slots = ctx.sizes.runners * ctx.sizes.slots as usize;
    bare_loop(ctx, &trivial_files("t", n), slots).await
}

/// The floor for running `files` with `slots` at once and no coordinator:
/// `slots` threads, each spawning `sh FILE` in turn with its output
/// captured (as a runner captures it).
pub async fn bare_loop(
    ctx: &Ctx,
    files: &[testrunner_proto::v1::TestFile],
    slots: usize,
) -> anyhow::Result<Baseline> {
    let n = files.len();
    let dir = tempfile::Builder::new()
        .prefix("trbench-dispatch-")
        .tempdir_in(&ctx.work)?;
    let paths: Vec<_> = files
        .iter()
        .map(|f| {
            let path = dir.path().join(&f.name);
            std::fs::write(&path, &f.content).map(|()| path)
        })
        .collect::<Result<_, _>>()?;
    let paths = Arc::new(paths);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let seconds = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let workers: Vec<_> = (0..slots)
            .map(|_| {
                let (paths, next, failed) =
                    (Arc::clone(&paths), Arc::clone(&next), Arc::clone(&failed));
                std::thread::spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = paths.get(i) else { break };
                        let ok = std::process::Command::new("sh")
                            .arg(path)
                            .stdin(std::process::Stdio::null())
                            .output()
                            .is_ok_and(|o| o.status.success());
                        if !ok {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        let seconds = start.elapsed().as_secs_f64();
        (seconds, failed.load(Ordering::Relaxed))
    })
    .await?;
    let (seconds, failed) = seconds;
    if failed > 0 {
        bail!("{failed} of {n} baseline runs of `sh FILE` failed");
    }
    Ok(Baseline {
        rate: n as f64 / seconds,
        seconds,
    })
}

pub async fn measure(ctx: &Ctx, backend: Backend, base: &Baseline) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::start(ctx, backend, "dispatch", &[]).await?;
    let result = run(ctx, &mut stack, base).await;
    stack.shutdown(result).await
}

async fn run(ctx: &Ctx, stack: &mut Stack, base: &Baseline) -> anyhow::Result<Vec<Row>> {
    let (n, runners, slots) = (ctx.sizes.dispatch_tests, ctx.sizes.runners, ctx.sizes.slots);
    for i in 0..runners {
        stack.runner(ctx, &format!("r{i}"), slots)?;
    }
    api::wait_runners(&stack.coord.addr, runners, Duration::from_secs(30)).await?;
    let mut client = api::client(&stack.coord.url()).await?;
    let runners_cpu = |stack: &Stack| -> f64 {
        stack
            .runners
            .iter()
            .filter_map(|r| cpu_seconds(r.pid()))
            .sum()
    };
    let cpu_before = cpu_seconds(stack.coord.pid()).unwrap_or(0.0);
    let runners_cpu_before = runners_cpu(stack);
    let (id, t0) = api::create(&mut client, USER, trivial_files("t", n)).await?;
    let limit = limit_for(n, Duration::from_millis(100), Duration::from_secs(60));
    let run = api::wait_success(&mut client, USER, id, limit)
        .await
        .context("waiting for the Testrun")?;
    let seconds = api::create_to_finish(&run, t0)?;
    let cpu = cpu_seconds(stack.coord.pid()).unwrap_or(0.0) - cpu_before;
    // The runners' own CPU; their tests' processes are not counted.
    let runner_cpu = runners_cpu(stack) - runners_cpu_before;
    let rate = n as f64 / seconds;
    let ratio = rate / base.rate;
    let row = Row::new(
        NAME,
        stack.backend.name(),
        &format!("tests/s, {n} × `exit 0`, {runners}×{slots} slots"),
    )
    .measured(rate, "tests/s")
    .baseline(base.rate, "tests/s")
    .target("≥ 0.50× baseline", Verdict::of(ratio >= 0.5))
    .details(json!({
        "tests": n,
        "runners": runners,
        "slots_per_runner": slots,
        "seconds_create_to_success": seconds,
        "baseline_seconds": base.seconds,
        "baseline": "plain parallel loop: `sh FILE` with output captured, same total slots, no coordinator",
        "coordinator_cpu_seconds": cpu,
        "runner_cpu_seconds": runner_cpu,
    }));
    Ok(vec![row])
}
