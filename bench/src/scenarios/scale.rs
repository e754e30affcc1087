//! Scenario 4, scale and memory: many simulated runners (one process, 1
//! slot each, answering every Assign at once with PASSED) on one
//! coordinator with one big Testrun of trivial tests. Reports tests/s, the coordinator's peak
//! RSS, and the RSS of a real `runner` process attached and idle.
//!
//! Baselines:
//! - tests/s: the same simulated runners against an in-memory echo
//!   coordinator (`testrunner-bench echo-server`, a separate process: runner
//!   protocol only, no store, no dispatcher). The ratio is the share of the
//!   bare protocol's throughput left after persistence and dispatch. (Scenario
//!   1's rate is no baseline here: it is bound by starting processes, which
//!   simulated runners never do.)
//! - coordinator RSS: the same coordinator just started, before any runner.
//! - runner RSS: a minimal protocol client process (`testrunner-bench
//!   sim-runners --count 1`) attached and idle the same way.
//! - scaling: the same Testrun through a tenth of the simulated runners
//!   (100 for the full 1,000) on a fresh coordinator: what ten times the
//!   runners cost the coordinator's throughput.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::{Ctx, Stack, bounded, limit_for, trivial_files};
use crate::api;
use crate::procs::{self, Backend, TOKEN, cpu_seconds, status_bytes};
use crate::report::{Row, Verdict};
use crate::sim::Fleet;

const NAME: &str = "4. scale";
const USER: &str = "bench-scale";
const MB: f64 = 1024.0 * 1024.0;
const TARGET_COORDINATOR_MB: f64 = 100.0;
/// Issue 18: ten times the runners keep this share of the tests/s.
const TARGET_SCALING: f64 = 0.90;
const TARGET_RUNNER_MB: f64 = 20.0;

#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub rate: f64,
    pub seconds: f64,
}

fn attach_limit(runners: usize) -> Duration {
    limit_for(runners, Duration::from_millis(100), Duration::from_secs(30))
}

fn run_limit(tests: usize) -> Duration {
    limit_for(tests, Duration::from_millis(20), Duration::from_secs(60))
}

/// The simulated fleet against the echo coordinator.
pub async fn baseline(ctx: &Ctx) -> anyhow::Result<Baseline> {
    let (runners, tests) = (ctx.sizes.sim_runners, ctx.sizes.scale_tests);
    let mut cmd = Command::new(&ctx.bins.bench);
    cmd.args(["echo-server", "--listen", "127.0.0.1:0", "--tests"])
        .arg(tests.to_string());
    let (echo, addr) = procs::spawn_announcing(
        cmd,
        "echo listening on http://",
        ctx.work.join("scale-echo-server.log"),
    )?;
    let fleet = Fleet::start(&format!("http://{addr}"), TOKEN, runners, "echo-sim");
    fleet.wait_welcomed(attach_limit(runners)).await?;
    fleet.expect_acks(tests);
    let start = Instant::now();
    echo.signal(nix::sys::signal::Signal::SIGUSR1);
    fleet.wait_acks(run_limit(tests)).await?;
    let seconds = start.elapsed().as_secs_f64();
    drop(fleet);
    drop(echo);
    Ok(Baseline {
        rate: tests as f64 / seconds,
        seconds,
    })
}

pub async fn measure(ctx: &Ctx, backend: Backend, base: &Baseline) -> anyhow::Result<Vec<Row>> {
    let max_files = ctx.sizes.scale_tests.max(10_000).to_string();
    let extra = ["--max-files".to_owned(), max_files];
    let few = (ctx.sizes.sim_runners / 10).max(1);
    let mut stack = Stack::start(ctx, backend, "scale-few", &extra).await?;
    let result = fleet_rate(ctx, &mut stack, few).await;
    let few_rate = stack.shutdown(result).await?;
    let mut stack = Stack::start(ctx, backend, "scale", &extra).await?;
    let result = run(ctx, &mut stack, base).await;
    let mut rows = stack.shutdown(result).await?;
    let (runners, tests) = (ctx.sizes.sim_runners, ctx.sizes.scale_tests);
    if let Some(rate) = rows
        .first()
        .and_then(|r| r.measured.as_ref())
        .map(|q| q.value)
    {
        let ratio = rate / few_rate;
        rows.insert(
            1,
            Row::new(
                NAME,
                backend.name(),
                &format!("tests/s, {runners} against {few} simulated runners, {tests} tests"),
            )
            .measured(rate, "tests/s")
            .baseline(few_rate, "tests/s")
            .target(
                format!("≥ {TARGET_SCALING:.2}× baseline"),
                Verdict::of(ratio >= TARGET_SCALING),
            )
            .details(json!({
                "baseline": format!("the same Testrun through {few} simulated runners on a fresh coordinator, same run"),
            })),
        );
    }
    Ok(rows)
}

/// Tests/s of one Testrun of trivial tests through `runners` simulated
/// runners, create to the last result acknowledged.
async fn fleet_rate(ctx: &Ctx, stack: &mut Stack, runners: usize) -> anyhow::Result<f64> {
    let tests = ctx.sizes.scale_tests;
    let fleet = Fleet::start(&stack.coord.runner_url(), TOKEN, runners, "sim");
    fleet.wait_welcomed(attach_limit(runners)).await?;
    api::wait_runners(&stack.coord.addr, runners, Duration::from_secs(60)).await?;
    let mut client = api::client(&stack.coord.url()).await?;
    fleet.expect_acks(tests);
    let start = Instant::now();
    let (id, _) = api::create(&mut client, USER, trivial_files("s", tests)).await?;
    fleet.wait_acks(run_limit(tests)).await?;
    let seconds = start.elapsed().as_secs_f64();
    api::wait_success(&mut client, USER, id, Duration::from_secs(60)).await?;
    Ok(tests as f64 / seconds)
}

async fn run(ctx: &Ctx, stack: &mut Stack, base: &Baseline) -> anyhow::Result<Vec<Row>> {
    let (runners, tests) = (ctx.sizes.sim_runners, ctx.sizes.scale_tests);
    let pid = stack.coord.pid();
    // Let it settle, then take its idle footprint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = status_bytes(pid, "VmRSS").context("coordinator VmRSS")?;

    let attach_start = Instant::now();
    let fleet = Fleet::start(&stack.coord.runner_url(), TOKEN, runners, "sim");
    fleet.wait_welcomed(attach_limit(runners)).await?;
    api::wait_runners(&stack.coord.addr, runners, Duration::from_secs(60)).await?;
    let attach_seconds = attach_start.elapsed().as_secs_f64();
    let rss_attached = status_bytes(pid, "VmRSS").unwrap_or(0);

    let mut client = api::client(&stack.coord.url()).await?;
    let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
    fleet.expect_acks(tests);
    let start = Instant::now();
    let (id, t0) = api::create(&mut client, USER, trivial_files("s", tests)).await?;
    fleet.wait_acks(run_limit(tests)).await?;
    let seconds = start.elapsed().as_secs_f64();
    let run = api::wait_success(&mut client, USER, id, Duration::from_secs(60)).await?;
    let server_seconds = api::create_to_finish(&run, t0)?;
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let rate = tests as f64 / seconds;

    // A real runner, attached next to the fleet with nothing to do, and a
    // minimal protocol client process for comparison.
    let (runner_rss, client_rss) = idle_footprints(ctx, stack, runners).await?;
    let peak = status_bytes(pid, "VmHWM").context("coordinator VmHWM")?;
    drop(fleet);

    let backend = stack.backend.name();
    let details = json!({
        "simulated_runners": runners,
        "tests": tests,
        "seconds_create_to_last_result_ack": seconds,
        "seconds_create_to_success_server_clock": server_seconds,
        "seconds_to_attach_all_runners": attach_seconds,
        "baseline_seconds": base.seconds,
        "coordinator_cpu_seconds": cpu,
        "coordinator_rss_idle_mb": idle_rss as f64 / MB,
        "coordinator_rss_with_runners_attached_mb": rss_attached as f64 / MB,
        "coordinator_vmhwm_mb": peak as f64 / MB,
        "runner_idle_vmrss_mb": runner_rss as f64 / MB,
        "minimal_client_idle_vmrss_mb": client_rss as f64 / MB,
    });
    Ok(vec![
        Row::new(
            NAME,
            backend,
            &format!("tests/s, {runners} simulated runners, {tests} tests"),
        )
        .measured(rate, "tests/s")
        .baseline(base.rate, "tests/s")
        .target("— (echo = protocol only)", Verdict::Info)
        .details(details.clone()),
        Row::new(NAME, backend, "coordinator peak RSS (VmHWM)")
            .measured(peak as f64 / MB, "MB")
            .baseline(idle_rss as f64 / MB, "MB")
            .target(
                "≤ 100 MB",
                Verdict::of((peak as f64 / MB) <= TARGET_COORDINATOR_MB),
            )
            .details(details.clone()),
        Row::new(NAME, backend, "runner idle RSS (VmRSS)")
            .measured(runner_rss as f64 / MB, "MB")
            .baseline(client_rss as f64 / MB, "MB")
            .target(
                "< 20 MB",
                Verdict::of((runner_rss as f64 / MB) < TARGET_RUNNER_MB),
            )
            .details(details),
    ])
}

/// VmRSS of a real runner and of a one-runner simulated client, each
/// attached and idle for a second.
async fn idle_footprints(
    ctx: &Ctx,
    stack: &mut Stack,
    attached: usize,
) -> anyhow::Result<(u64, u64)> {
    stack.runner(ctx, "idle", 4)?;
    let mut cmd = Command::new(&ctx.bins.bench);
    cmd.args(["sim-runners", "--coordinator", &stack.coord.runner_url()])
        .args(["--token", TOKEN, "--count", "1"]);
    let client = procs::spawn(cmd, ctx.log("scale", stack.backend, "minimal-client"))?;
    bounded(
        "attaching the idle runner",
        Duration::from_secs(30),
        api::wait_runners(&stack.coord.addr, attached + 2, Duration::from_secs(30)),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let runner = stack.runners.last().context("idle runner")?;
    let runner_rss = status_bytes(runner.pid(), "VmRSS").context("runner VmRSS")?;
    let client_rss = status_bytes(client.pid(), "VmRSS").context("client VmRSS")?;
    if runner_rss == 0 || client_rss == 0 {
        bail!("could not read VmRSS");
    }
    Ok((runner_rss, client_rss))
}
