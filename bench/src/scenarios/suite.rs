//! Scenario 7's real-suite row: a generated pytest suite in a `src/` layout
//! run over TestRunner's runners (2 runners × 2 slots, one test per file)
//! against `python3 -m pytest -n 4` (pytest-xdist) in the same checkout on
//! the same machine, in alternating rounds; the medians of each and their
//! ratio TestRunner / xdist.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use serde_json::json;

use super::{Ctx, Stack};
use crate::procs::Backend;
use crate::report::{Row, Verdict};

const LABEL: &str = "7. workspace";
/// The runners' test PATH, which the xdist run gets too.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
const RUNNERS: usize = 2;
const SLOTS: u32 = 2;
const FUNCTIONS_PER_FILE: usize = 25;
const ROUNDS: usize = 3;
/// The same pytest options on both sides (no cache written into the tree).
const PYTEST: &str = "python3 -m pytest -q -p no:cacheprovider";

/// Test files in the generated suite.
fn files(quick: bool) -> usize {
    if quick { 20 } else { 40 }
}

/// Whether `python3` on the runners' PATH can import pytest-xdist.
fn xdist_available() -> bool {
    Command::new("python3")
        .args(["-c", "import xdist"])
        .env("PATH", PATH)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Writes the suite under `dir`: a package `suitepkg` in `src/` and
/// `files` test files of 25 functions, each sleeping 5–35 ms (a fixed
/// seed: the same durations every run) and doing a little arithmetic
/// through the package.
fn make_suite(dir: &Path, files: usize) -> anyhow::Result<usize> {
    fs::create_dir_all(dir.join("src/suitepkg"))?;
    fs::create_dir_all(dir.join("tests"))?;
    fs::write(
        dir.join("src/suitepkg/__init__.py"),
        "import time\n\n\
         def work(ms, n):\n\
         \x20   \"\"\"Sleeps `ms` milliseconds, then sums the first `n` squares.\"\"\"\n\
         \x20   time.sleep(ms / 1000)\n\
         \x20   return sum(i * i for i in range(n))\n",
    )?;
    // A 64-bit LCG: deterministic durations without a dependency.
    let mut state: u64 = 0x5eed_2026;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    for f in 0..files {
        let mut text = String::from("import suitepkg\n");
        for k in 0..FUNCTIONS_PER_FILE {
            let ms = 5 + next() % 31;
            let n = 1_000 + next() % 4_000;
            let sum: u128 = (0..n as u128).map(|i| i * i).sum();
            write!(
                text,
                "\n\ndef test_{k:02}():\n    assert suitepkg.work({ms}, {n}) == {sum}\n"
            )?;
        }
        fs::write(dir.join(format!("tests/test_{f:03}.py")), text)?;
    }
    Ok(files * FUNCTIONS_PER_FILE)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The real-suite row on `backend`.
pub async fn measure(ctx: &Ctx, backend: Backend, quick: bool) -> anyhow::Result<Vec<Row>> {
    let files = files(quick);
    let slots = RUNNERS * SLOTS as usize;
    let metric = format!(
        "real suite ({files} files × {FUNCTIONS_PER_FILE} tests), {RUNNERS}×{SLOTS} slots \
         vs pytest -n {slots}"
    );
    if !xdist_available() {
        return Ok(vec![
            Row::new(
                LABEL,
                backend.name(),
                &format!("{metric}: not measured, pytest-xdist not importable by python3"),
            )
            .target("reported", Verdict::Info),
        ]);
    }
    let tree = ctx.work.join(format!("suite-{}", backend.name()));
    let _ = fs::remove_dir_all(&tree);
    let tests = make_suite(&tree, files)?;

    let mut stack = Stack::start(ctx, backend, "suite", &[]).await?;
    let result = async {
        for i in 0..RUNNERS {
            stack.runner(ctx, &format!("r{i}"), SLOTS)?;
        }
        crate::api::wait_runners(&stack.coord.addr, RUNNERS, Duration::from_secs(60)).await?;
        let url = stack.coord.url();
        let mut client = crate::api::client(&url).await?;
        let mut xdist = Vec::new();
        let mut ours = Vec::new();
        let mut run_only = Vec::new();
        for round in 0..ROUNDS {
            xdist.push(xdist_round(&tree, slots, tests)?);
            let (wall, run) = testrunner_round(ctx, &url, &mut client, &tree, files).await?;
            eprintln!(
                "   round {round}: xdist {:.2}s, TestRunner {wall:.2}s",
                xdist[round]
            );
            ours.push(wall);
            run_only.push(run);
        }
        let details = json!({
            "files": files,
            "tests": tests,
            "runners": RUNNERS,
            "slots_per_runner": SLOTS,
            "rounds": ROUNDS,
            "testrunner_seconds": ours,
            "testrun_created_to_finished_seconds": run_only,
            "xdist_seconds": xdist,
        });
        let ours = median(&mut ours);
        let xdist = median(&mut xdist);
        Ok(vec![
            Row::new(LABEL, backend.name(), &metric)
                .measured(ours, "s")
                .baseline(xdist, "s")
                .target("reported", Verdict::Info)
                .details(details),
        ])
    }
    .await;
    let result = stack.shutdown(result).await;
    let _ = fs::remove_dir_all(&tree);
    result
}

/// `pytest -n SLOTS tests` in the tree: its wall time in seconds, after
/// checking that every test passed.
fn xdist_round(tree: &Path, slots: usize, tests: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{PYTEST} -n {slots} tests"))
        .current_dir(tree)
        .env("PATH", PATH)
        .env("PYTHONPATH", "src")
        .output()
        .context("running pytest -n")?;
    let secs = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success() && stdout.contains(&format!("{tests} passed")),
        "pytest -n {slots}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(secs)
}

/// `testrunner run --workspace` of every test file, one test each: seconds
/// from just before the CLI starts (hashing, upload, `CreateTestrun`) to
/// the Testrun's `finished_at`, and from its `created_at` to `finished_at`.
async fn testrunner_round(
    ctx: &Ctx,
    url: &str,
    client: &mut crate::api::Client,
    tree: &Path,
    files: usize,
) -> anyhow::Result<(f64, f64)> {
    let cli = ctx.bins.coordinator.with_file_name("testrunner");
    let t0 = SystemTime::now();
    let out = Command::new(&cli)
        .args(["--coordinator", url, "run", "--detach", "--user", "bench"])
        .arg("--workspace")
        .arg(tree)
        .args(["--env", "PYTHONPATH=src", "--command"])
        .arg(format!("{PYTEST} {{file}}"))
        .arg("tests/test_*.py")
        .env_remove("TESTRUNNER_API_TOKEN")
        .output()
        .with_context(|| format!("running {}", cli.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "testrunner run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: i64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    let limit = Duration::from_secs(600);
    let run = crate::api::wait_success(client, "bench", id, limit).await?;
    let passed = run.counts.as_ref().map_or(0, |c| c.passed as usize);
    anyhow::ensure!(passed == files, "{passed} of {files} test files passed");
    let wall = crate::api::create_to_finish(&run, t0)?;
    let created = crate::api::ts_secs(run.created_at.as_ref()).context("created_at missing")?;
    let finished = crate::api::ts_secs(run.finished_at.as_ref()).context("finished_at")?;
    Ok((wall, finished - created))
}
