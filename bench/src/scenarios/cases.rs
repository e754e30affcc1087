//! Scenario 6, JUnit cases: one test whose JUnit report holds N cases (1%
//! failed, with a message and a trace), read by the real runner after the
//! test ends, sent in `Cases` batches and stored by the coordinator.
//!
//! Measured: the runner's read time (its `junit report read ... read_ms`
//! log line) and the coordinator's store rate in cases per second, from the
//! first batch seen stored to the last (polled through GetTestrun every few
//! milliseconds), with the stored count checked.
//!
//! Baseline: the same file parsed alone, in this process, with the
//! runner's own reader (`runner::junit::parse`).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::{Ctx, Stack, limit_for};
use crate::api;
use crate::procs::{Backend, cpu_seconds};
use crate::report::{Row, Verdict};

const NAME: &str = "6. JUnit cases";
const USER: &str = "bench-cases";

#[derive(Debug, Clone)]
pub struct Baseline {
    pub report: std::path::PathBuf,
    pub bytes: u64,
    pub parse_seconds: f64,
}

/// A report of `n` cases, every hundredth failed.
fn report(n: usize) -> String {
    let mut xml = String::with_capacity(n * 90);
    xml.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"bench\">\n",
    );
    for i in 0..n {
        if i % 100 == 0 {
            xml.push_str(&format!(
                "<testcase classname=\"bench.Cases\" name=\"case_{i:06}\" time=\"0.002\">\
                 <failure message=\"AssertionError: expected {i} to be even\">\
                 Traceback (most recent call last):\n  File \"bench.py\", line {i}, in case_{i:06}\n    \
                 assert False\nAssertionError</failure></testcase>\n"
            ));
        } else {
            xml.push_str(&format!(
                "<testcase classname=\"bench.Cases\" name=\"case_{i:06}\" time=\"0.001\"/>\n"
            ));
        }
    }
    xml.push_str("</testsuite>\n</testsuites>\n");
    xml
}

/// Writes the report and parses it alone (best of three).
pub async fn baseline(ctx: &Ctx) -> anyhow::Result<Baseline> {
    let n = ctx.sizes.cases;
    let path = ctx.work.join(format!("cases-{n}.xml"));
    std::fs::write(&path, report(n))?;
    let bytes = std::fs::metadata(&path)?.len();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        let data = std::fs::read(&path)?;
        let parsed = runner::junit::parse::parse(&data, runner::junit::Limits::default());
        best = best.min(start.elapsed().as_secs_f64());
        if parsed.cases.len() != n || parsed.error.is_some() {
            bail!(
                "the baseline parse read {} cases ({:?}), expected {n}",
                parsed.cases.len(),
                parsed.error
            );
        }
    }
    Ok(Baseline {
        report: path,
        bytes,
        parse_seconds: best,
    })
}

pub async fn measure(ctx: &Ctx, backend: Backend, base: &Baseline) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::start(ctx, backend, "cases", &[]).await?;
    let result = run(ctx, &mut stack, base).await;
    stack.shutdown(result).await
}

/// `read_ms` of the runner's last `junit report read` line (colours, if the
/// log has them, stripped first).
fn read_ms(log: &str) -> Option<f64> {
    let mut plain = String::with_capacity(log.len());
    let mut rest = log;
    while let Some(esc) = rest.find('\u{1b}') {
        plain.push_str(&rest[..esc]);
        rest = &rest[esc..];
        let end = rest.find('m').map_or(rest.len(), |m| m + 1);
        rest = &rest[end..];
    }
    plain.push_str(rest);
    plain
        .lines()
        .rev()
        .filter(|l| l.contains("junit report read"))
        .find_map(|l| {
            let rest = &l[l.find("read_ms=")? + "read_ms=".len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
}

async fn run(ctx: &Ctx, stack: &mut Stack, base: &Baseline) -> anyhow::Result<Vec<Row>> {
    let n = ctx.sizes.cases;
    stack.runner(ctx, "r0", 1)?;
    api::wait_runners(&stack.coord.addr, 1, Duration::from_secs(30)).await?;
    let mut client = api::client(&stack.coord.url()).await?;
    let cpu_before = cpu_seconds(stack.coord.pid()).unwrap_or(0.0);
    let script = format!("cp '{}' \"$TESTRUNNER_JUNIT_XML\"\n", base.report.display());
    let (id, t0) = api::create(&mut client, USER, vec![api::file("cases.sh", script)]).await?;
    // Poll the stored count: the first batch seen stored starts the clock.
    let limit = limit_for(n, Duration::from_millis(2), Duration::from_secs(60));
    let deadline = Instant::now() + limit;
    let mut first: Option<(Instant, u32)> = None;
    let last = loop {
        if Instant::now() > deadline {
            bail!("the cases were not all stored within {}s", limit.as_secs());
        }
        let run = api::get(&mut client, id).await?;
        let stored = run
            .tests
            .first()
            .and_then(|t| t.cases)
            .map_or(0, |c| c.total);
        if stored > 0 && first.is_none() {
            first = Some((Instant::now(), stored));
        }
        if stored as usize >= n {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    };
    let (first_at, first_stored) = first.context("no case was ever seen stored")?;
    let run = api::wait_success(&mut client, USER, id, Duration::from_secs(60))
        .await
        .context("waiting for the Testrun")?;
    let seconds = api::create_to_finish(&run, t0)?;
    let cpu = cpu_seconds(stack.coord.pid()).unwrap_or(0.0) - cpu_before;
    let store_seconds = last.duration_since(first_at).as_secs_f64().max(1e-3);
    let store_rate = f64::from(n as u32 - first_stored) / store_seconds;
    let runner_log = stack.runners.first().map(|r| r.log()).unwrap_or_default();
    let read =
        read_ms(&runner_log).context("no `junit report read` line in the runner's log")? / 1000.0;
    let backend = stack.backend.name();
    let read_row = Row::new(NAME, backend, &format!("runner read time, {n}-case report"))
        .measured(read, "s")
        .baseline(base.parse_seconds, "s")
        .target(
            "— (the same parse alone is the floor)".to_owned(),
            Verdict::Info,
        )
        .details(json!({
            "cases": n,
            "report_bytes": base.bytes,
            "runner_read_seconds": read,
            "baseline": "the same file parsed alone in the bench process with runner::junit::parse",
        }));
    let store_row = Row::new(NAME, backend, "cases/s stored + acked (coordinator)")
        .measured(store_rate, "cases/s")
        .baseline(n as f64 / base.parse_seconds, "cases/s")
        .target(
            "— (parse rate alone as the ceiling)".to_owned(),
            Verdict::Info,
        )
        .details(json!({
            "cases": n,
            "first_seen_stored": first_stored,
            "seconds_first_to_last_batch": store_seconds,
            "seconds_create_to_success": seconds,
            "coordinator_cpu_seconds": cpu,
            "baseline": "cases/s of parsing the same file alone",
        }));
    Ok(vec![read_row, store_row])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_time_is_found_in_a_plain_or_coloured_log() {
        let plain =
            "INFO runner::exec: junit report read assignment_id=a cases=5 read_ms=42 noted=false";
        assert_eq!(read_ms(plain), Some(42.0));
        let coloured = "\u{1b}[2mjunit report read \u{1b}[3mread_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m7 x";
        assert_eq!(read_ms(coloured), Some(7.0));
    }
}
