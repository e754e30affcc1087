//! Scenario 8, makespan: does handing a Testrun's tests out longest first
//! (by the durations its suite's history remembers) finish a batch of
//! unequal tests near the best possible time?
//!
//! 200 tests, each `sleep`ing a duration drawn once from a lognormal
//! distribution (heavy-tailed; fixed seed, capped), on R × S slots. Run 1 is
//! a suite with no history, so its tests go out in submission order: the
//! baseline. Run 2 is the same suite again, so each test is expected to
//! take its recorded median and the claim hands out the longest first.
//! Both are reported as wall time (CreateTestrun to `finished_at`) over the
//! lower bound `max(longest test, total work / slots)`, which no schedule
//! can beat.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde_json::json;
use testrunner_proto::v1::CreateTestrunRequest;

use super::{Ctx, Stack, limit_for};
use crate::api;
use crate::procs::Backend;
use crate::report::{Row, Verdict};

const NAME: &str = "8. makespan";
const USER: &str = "bench-makespan";
const SUITE: &str = "makespan";
/// Spread of the lognormal (its log's standard deviation).
const SIGMA: f64 = 1.0;
/// Longest duration drawn, as a multiple of the median.
const CAP: f64 = 20.0;
const SEED: u64 = 0x005e_ed16;
/// Longest-first target: wall time over the lower bound.
const TARGET: f64 = 1.10;

/// The tests' durations in milliseconds, in submission order.
pub fn durations(n: usize, median_ms: f64) -> Vec<u64> {
    let mut state = SEED;
    // splitmix64: a fixed, dependency-free sequence.
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            // Box-Muller: a standard normal from two uniforms.
            let (u1, u2) = (next().max(f64::MIN_POSITIVE), next());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            (median_ms * (SIGMA * z).exp()).clamp(1.0, median_ms * CAP) as u64
        })
        .collect()
}

pub async fn measure(ctx: &Ctx, backend: Backend) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::start(ctx, backend, "makespan", &[]).await?;
    let result = run(ctx, &mut stack).await;
    stack.shutdown(result).await
}

/// One Testrun of the suite to its end; seconds from create to finish.
async fn once(client: &mut api::Client, ms: &[u64]) -> anyhow::Result<(f64, usize)> {
    let tests = ms
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            api::file(
                format!("t{i:03}.sh"),
                format!("sleep {}\n", *ms as f64 / 1000.0),
            )
        })
        .collect();
    let t0 = SystemTime::now();
    let created = client
        .create_testrun(CreateTestrunRequest {
            username: USER.into(),
            suite: Some(SUITE.into()),
            tests,
            ..CreateTestrunRequest::default()
        })
        .await
        .context("CreateTestrun")?
        .into_inner();
    let with_expected = created
        .tests
        .iter()
        .filter(|t| t.expected_duration.is_some())
        .count();
    let total: u64 = ms.iter().sum();
    let limit = limit_for(
        ms.len(),
        Duration::from_millis(100),
        Duration::from_secs(60),
    ) + Duration::from_millis(total);
    let run = api::wait_success(client, USER, created.id, limit).await?;
    Ok((api::create_to_finish(&run, t0)?, with_expected))
}

async fn run(ctx: &Ctx, stack: &mut Stack) -> anyhow::Result<Vec<Row>> {
    let (n, runners, slots) = (ctx.sizes.makespan_tests, ctx.sizes.runners, ctx.sizes.slots);
    for i in 0..runners {
        stack.runner(ctx, &format!("r{i}"), slots)?;
    }
    api::wait_runners(&stack.coord.addr, runners, Duration::from_secs(30)).await?;
    let mut client = api::client(&stack.coord.url()).await?;
    let ms = durations(n, ctx.sizes.makespan_median_ms as f64);
    let all_slots = (runners * slots as usize) as f64;
    let longest = *ms.iter().max().unwrap_or(&0) as f64 / 1000.0;
    let work = ms.iter().sum::<u64>() as f64 / 1000.0;
    let bound = longest.max(work / all_slots);

    let (submission, known_before) = once(&mut client, &ms).await.context("run 1")?;
    let (longest_first, known_after) = once(&mut client, &ms).await.context("run 2")?;
    anyhow::ensure!(
        known_before == 0 && known_after == n,
        "expected durations: {known_before} on run 1 (want 0), {known_after} on run 2 (want {n})"
    );
    let (lpt, fifo) = (longest_first / bound, submission / bound);
    let row = Row::new(
        NAME,
        stack.backend.name(),
        &format!("wall / lower bound, {n} lognormal sleeps, {runners}×{slots} slots"),
    )
    .measured(lpt, "× bound (longest first)")
    .baseline(fifo, "× bound (submission order)")
    .target(format!("≤ {TARGET:.2}× bound"), Verdict::of(lpt <= TARGET))
    .details(json!({
        "tests": n,
        "slots": all_slots,
        "median_ms": ctx.sizes.makespan_median_ms,
        "sigma": SIGMA,
        "cap_x_median": CAP,
        "seed": SEED,
        "longest_seconds": longest,
        "total_work_seconds": work,
        "lower_bound_seconds": bound,
        "submission_order_seconds": submission,
        "longest_first_seconds": longest_first,
    }));
    Ok(vec![row])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_fixed_heavy_tailed_and_capped() {
        let a = durations(200, 100.0);
        assert_eq!(a, durations(200, 100.0));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        let median = sorted[100];
        assert!((50..200).contains(&median), "{median}");
        // A tail: the longest is many times the median, within the cap.
        let max = *sorted.last().unwrap();
        assert!(max > 5 * median && max <= 2000, "{max}");
    }
}
