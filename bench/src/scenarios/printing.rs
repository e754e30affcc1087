//! Scenario 1b, tests that print: scenario 1's dispatch with tests that
//! print 0, 1 and 100 lines each, on 2 × 2 and 2 × 4 slots (issue 18).
//!
//! Two baselines, both measured in this run: the bare spawn loop running
//! the same files with the same number of slots (scenario 1's floor), and
//! the silent tests through TestRunner on the same stack, so the row says
//! what printing itself costs.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use testrunner_proto::v1::TestFile;

use super::dispatch::{self, Baseline};
use super::{Ctx, Stack, limit_for};
use crate::api;
use crate::procs::Backend;
use crate::report::{Row, Verdict};

const NAME: &str = "1b. tests that print";
const USER: &str = "bench-printing";
/// Lines each test prints: silent (the reference), one, a hundred.
const LINES: [usize; 3] = [0, 1, 100];

/// Slot layouts measured: runner processes × slots each.
fn layouts(ctx: &Ctx) -> [(usize, u32); 2] {
    [(ctx.sizes.runners, 2), (ctx.sizes.runners, 4)]
}

/// `n` passing shell tests that print `lines` lines each with the shell's
/// own `echo` (no extra process, so the spawn cost is the silent test's).
pub fn printing_files(n: usize, lines: usize) -> Vec<TestFile> {
    let body = match lines {
        0 => "exit 0\n".to_owned(),
        1 => "echo \"line 1 of 1\"\n".to_owned(),
        k => format!("i=1\nwhile [ $i -le {k} ]; do echo \"line $i of {k}\"; i=$((i+1)); done\n"),
    };
    (0..n)
        .map(|i| api::file(format!("p{lines}-{i:05}.sh"), body.clone()))
        .collect()
}

/// The bare spawn loop's rate for each (total slots, lines).
#[derive(Debug)]
pub struct Baselines(HashMap<(usize, usize), Baseline>);

pub async fn baseline(ctx: &Ctx) -> anyhow::Result<Baselines> {
    let n = ctx.sizes.print_tests;
    let mut out = HashMap::new();
    for (runners, slots) in layouts(ctx) {
        let total = runners * slots as usize;
        for lines in LINES {
            let base = dispatch::bare_loop(ctx, &printing_files(n, lines), total).await?;
            out.insert((total, lines), base);
        }
    }
    Ok(Baselines(out))
}

pub async fn measure(ctx: &Ctx, backend: Backend, base: &Baselines) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (runners, slots) in layouts(ctx) {
        let mut stack = Stack::start(ctx, backend, "printing", &[]).await?;
        let result = run(ctx, &mut stack, base, runners, slots).await;
        rows.extend(stack.shutdown(result).await?);
    }
    Ok(rows)
}

async fn run(
    ctx: &Ctx,
    stack: &mut Stack,
    base: &Baselines,
    runners: usize,
    slots: u32,
) -> anyhow::Result<Vec<Row>> {
    let n = ctx.sizes.print_tests;
    for i in 0..runners {
        stack.runner(ctx, &format!("r{i}"), slots)?;
    }
    api::wait_runners(&stack.coord.addr, runners, Duration::from_secs(30)).await?;
    let mut client = api::client(&stack.coord.url()).await?;
    let total = runners * slots as usize;
    let mut silent = None;
    let mut rows = Vec::new();
    for lines in LINES {
        let (id, t0) = api::create(&mut client, USER, printing_files(n, lines)).await?;
        let limit = limit_for(n, Duration::from_millis(100), Duration::from_secs(60));
        let run = api::wait_success(&mut client, USER, id, limit)
            .await
            .with_context(|| format!("waiting for the Testrun of {lines}-line tests"))?;
        let seconds = api::create_to_finish(&run, t0)?;
        let rate = n as f64 / seconds;
        let bare = base
            .0
            .get(&(total, lines))
            .context("no bare-loop baseline for this layout")?;
        let silent_rate = *silent.get_or_insert(rate);
        let vs_bare = rate / bare.rate;
        let vs_silent = rate / silent_rate;
        let row = Row::new(
            NAME,
            stack.backend.name(),
            &format!("tests/s, {n} × {lines} line(s), {runners}×{slots} slots"),
        )
        .measured(rate, "tests/s")
        .baseline(bare.rate, "tests/s");
        let row = if lines == 0 {
            row.target("reference", Verdict::Info)
        } else {
            row.target(
                format!("≥ 0.70× baseline, ≥ 0.90× silent (now {vs_silent:.2}×)"),
                Verdict::of(vs_bare >= 0.70 && vs_silent >= 0.90),
            )
        };
        rows.push(row.details(json!({
            "tests": n,
            "lines_per_test": lines,
            "runners": runners,
            "slots_per_runner": slots,
            "seconds_create_to_success": seconds,
            "bare_loop_seconds": bare.seconds,
            "baseline": "bare spawn loop: `sh FILE` with output captured, same files, same total slots",
            "silent_tests_per_second": silent_rate,
            "ratio_to_silent": vs_silent,
        })));
    }
    Ok(rows)
}
