//! The eight scenarios. Each measures its baseline once per run, then the
//! real coordinator and runners once per backend, and returns table rows.

pub mod cases;
pub mod dispatch;
pub mod latency;
pub mod logs;
pub mod makespan;
pub mod printing;
pub mod scale;
pub mod suite;
pub mod watchers;
pub mod workspace;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::procs::{self, Backend, Bins, CoordinatorProcess, Db, Proc};

/// How big each scenario is.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub dispatch_tests: usize,
    pub runners: usize,
    pub slots: u32,
    pub log_lines: usize,
    pub latency_lines: usize,
    pub sim_runners: usize,
    pub scale_tests: usize,
    pub watchers: usize,
    pub watch_lines: usize,
    /// Scenario 6: cases in the one test's JUnit report.
    pub cases: usize,
    /// Scenario 1b: tests per Testrun (each layout runs three).
    pub print_tests: usize,
    /// Scenario 8: tests, and the median of their durations.
    pub makespan_tests: usize,
    pub makespan_median_ms: u64,
}

impl Sizes {
    /// What the issue asks for.
    pub fn full() -> Self {
        Self {
            dispatch_tests: 10_000,
            runners: 2,
            slots: 4,
            log_lines: 1_000_000,
            latency_lines: 1_000,
            sim_runners: 1_000,
            scale_tests: 20_000,
            watchers: 500,
            watch_lines: 200_000,
            cases: 100_000,
            print_tests: 2_000,
            makespan_tests: 200,
            makespan_median_ms: 400,
        }
    }

    /// Small enough that every scenario on both backends takes about a
    /// minute on 2 cores.
    pub fn quick() -> Self {
        Self {
            dispatch_tests: 500,
            runners: 2,
            slots: 4,
            log_lines: 100_000,
            latency_lines: 200,
            sim_runners: 100,
            scale_tests: 2_000,
            watchers: 50,
            watch_lines: 20_000,
            cases: 10_000,
            print_tests: 300,
            makespan_tests: 200,
            makespan_median_ms: 150,
        }
    }
}

/// What every scenario needs.
#[derive(Debug)]
pub struct Ctx {
    pub bins: Bins,
    /// Admin URL of the Postgres server new databases are created on.
    pub pg_admin: String,
    pub sizes: Sizes,
    /// Process logs and scratch files of this run.
    pub work: PathBuf,
}

impl Ctx {
    /// A log file path for one process of one scenario.
    pub fn log(&self, scenario: &str, backend: Backend, what: &str) -> PathBuf {
        self.work
            .join(format!("{scenario}-{}-{what}.log", backend.name()))
    }
}

/// A coordinator on a fresh database plus the runner processes started for
/// it; `shutdown` stops them and drops the database.
#[derive(Debug)]
pub struct Stack {
    pub backend: Backend,
    scenario: &'static str,
    pub coord: CoordinatorProcess,
    pub runners: Vec<Proc>,
    db: Option<Db>,
}

impl Stack {
    pub async fn start(
        ctx: &Ctx,
        backend: Backend,
        scenario: &'static str,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let db = procs::database(backend, &ctx.pg_admin).await?;
        // On an error the database is dropped with `db`.
        let coord = procs::coordinator(
            &ctx.bins,
            &db.url,
            extra,
            ctx.log(scenario, backend, "coordinator"),
        )?;
        Ok(Self {
            backend,
            scenario,
            coord,
            runners: Vec::new(),
            db: Some(db),
        })
    }

    /// Starts a runner process attached to this coordinator.
    pub fn runner(&mut self, ctx: &Ctx, name: &str, slots: u32) -> anyhow::Result<()> {
        let log = ctx.log(self.scenario, self.backend, &format!("runner-{name}"));
        let proc = procs::runner(&ctx.bins, &self.coord.runner_url(), name, slots, log)?;
        self.runners.push(proc);
        Ok(())
    }

    /// Stops everything; on error, shows the end of the coordinator's log.
    pub async fn shutdown<T>(mut self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if result.is_err() {
            eprintln!(
                "  coordinator log ({}), last lines:\n{}",
                self.coord.process.log_path().display(),
                self.coord.process.log_tail(20)
            );
        }
        // Processes first, then the database they used.
        self.runners.clear();
        let db = self.db.take();
        drop(self);
        drop(db);
        result
    }
}

/// `n` trivial passing test files.
pub fn trivial_files(prefix: &str, n: usize) -> Vec<testrunner_proto::v1::TestFile> {
    (0..n)
        .map(|i| crate::api::file(format!("{prefix}{i:05}.sh"), "exit 0\n"))
        .collect()
}

/// Value at quantile `q` (0..=1) of sorted `values`.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A generous bound for a wait: `per_item` × items + `base`.
pub fn limit_for(items: usize, per_item: Duration, base: Duration) -> Duration {
    base + per_item * items as u32
}

/// Runs `fut` with a time limit.
pub async fn bounded<T>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .with_context(|| format!("{what} did not finish within {}s", limit.as_secs()))?
}
