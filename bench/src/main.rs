//! `testrunner-bench`: runs the real coordinator and runner processes through
//! seven scenarios on SQLite and Postgres, each against a baseline measured
//! in the same run, and prints a Markdown table (see bench/README.md).

mod api;
mod echo;
mod procs;
mod report;
mod scenarios;
mod sim;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use procs::{Backend, Bins};
use report::{Row, Verdict};
use scenarios::{Ctx, Sizes, bounded};

/// Benchmarks of TestRunner's coordinator and runner against same-run
/// baselines. Only loopback addresses are used.
#[derive(Debug, Parser)]
#[command(name = "testrunner-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    helper: Option<Helper>,

    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Scenario>,

    /// Stores to run on.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    backend: BackendChoice,

    /// Small sizes: every scenario on both stores in about a minute.
    #[arg(long)]
    quick: bool,

    /// Directory holding the `coordinator` and `runner` binaries (default:
    /// next to this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,

    /// Where results are written (`latest.json`, `latest.md`, and a
    /// timestamped JSON copy).
    #[arg(long, default_value = "bench/results")]
    results_dir: PathBuf,

    /// Postgres server to create the bench databases on (default:
    /// $TESTRUNNER_TEST_POSTGRES, else postgres://postgres@127.0.0.1:5432/postgres).
    #[arg(long)]
    postgres: Option<String>,

    /// Exit with status 1 when a row misses its target (errors always do).
    #[arg(long)]
    strict: bool,

    /// Scenario 1: number of tests.
    #[arg(long)]
    dispatch_tests: Option<usize>,
    /// Scenario 1: runner processes.
    #[arg(long)]
    runners: Option<usize>,
    /// Scenario 1: slots per runner.
    #[arg(long)]
    slots: Option<u32>,
    /// Scenario 2: lines printed.
    #[arg(long)]
    log_lines: Option<usize>,
    /// Scenario 3: timestamped lines printed (one per 10 ms).
    #[arg(long)]
    latency_lines: Option<usize>,
    /// Scenario 4: simulated runners.
    #[arg(long)]
    sim_runners: Option<usize>,
    /// Scenario 4: tests in the Testrun.
    #[arg(long)]
    scale_tests: Option<usize>,
    /// Scenario 5: concurrent watchers.
    #[arg(long)]
    watchers: Option<usize>,
    /// Scenario 5: lines printed by the watched test.
    #[arg(long)]
    watch_lines: Option<usize>,
    /// Scenario 6: cases in the test's JUnit report.
    #[arg(long)]
    cases: Option<usize>,
    /// Scenario 1b: tests per Testrun.
    #[arg(long)]
    print_tests: Option<usize>,
}

/// Helper processes the scenarios start (not for direct use).
#[derive(Debug, Subcommand)]
enum Helper {
    /// In-memory runner-protocol server: scenario 4's baseline.
    #[command(hide = true)]
    EchoServer {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        tests: usize,
    },
    /// Simulated runners in this process, until killed.
    #[command(hide = true)]
    SimRunners {
        #[arg(long)]
        coordinator: String,
        #[arg(long)]
        token: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Dispatch,
    /// Scenario 1b: tests that print 0, 1 and 100 lines.
    Printing,
    Logs,
    Latency,
    Scale,
    Watchers,
    Cases,
    Workspace,
    Makespan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

impl BackendChoice {
    fn backends(self) -> Vec<Backend> {
        match self {
            BackendChoice::Sqlite => vec![Backend::Sqlite],
            BackendChoice::Postgres => vec![Backend::Postgres],
            BackendChoice::Both => vec![Backend::Sqlite, Backend::Postgres],
        }
    }
}

impl Cli {
    fn sizes(&self) -> Sizes {
        let mut s = if self.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        };
        let set = |field: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *field = v.max(1);
            }
        };
        set(&mut s.dispatch_tests, self.dispatch_tests);
        set(&mut s.print_tests, self.print_tests);
        set(&mut s.runners, self.runners);
        set(&mut s.log_lines, self.log_lines);
        set(&mut s.latency_lines, self.latency_lines);
        set(&mut s.sim_runners, self.sim_runners);
        set(&mut s.scale_tests, self.scale_tests);
        set(&mut s.watchers, self.watchers);
        set(&mut s.watch_lines, self.watch_lines);
        set(&mut s.cases, self.cases);
        if let Some(v) = self.slots {
            s.slots = v.clamp(1, 1024);
        }
        s
    }
}

/// Longest any one measurement (scenario × backend) may take.
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(20 * 60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.helper {
        Some(Helper::EchoServer { listen, tests }) => return echo::serve(*listen, *tests).await,
        Some(Helper::SimRunners {
            coordinator,
            token,
            count,
        }) => {
            let fleet = sim::Fleet::start(coordinator, token, *count, "minimal");
            fleet.park().await;
            return Ok(());
        }
        None => {}
    }
    std::process::exit(run(cli).await?);
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let scenarios = if cli.only.is_empty() {
        vec![
            Scenario::Dispatch,
            Scenario::Printing,
            Scenario::Logs,
            Scenario::Latency,
            Scenario::Scale,
            Scenario::Watchers,
            Scenario::Cases,
            Scenario::Workspace,
            Scenario::Makespan,
        ]
    } else {
        cli.only.clone()
    };
    let backends = cli.backend.backends();
    let pg_admin = cli.postgres.clone().unwrap_or_else(|| {
        std::env::var("TESTRUNNER_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    });
    let work = std::env::temp_dir().join(format!(
        "testrunner-bench-{}",
        report::utc_stamp(started, false)
    ));
    std::fs::create_dir_all(&work)?;
    let ctx = Ctx {
        bins: Bins::locate(cli.bin_dir.as_deref())?,
        pg_admin,
        sizes: cli.sizes(),
        work,
    };
    let hw = report::hardware();
    let pg_version = if backends.contains(&Backend::Postgres) {
        procs::postgres_version(&ctx.pg_admin).await
    } else {
        None
    };
    println!("{}", report::hardware_line(&hw, pg_version.as_deref()));
    println!(
        "Scenarios: {:?}; backends: {:?}; sizes: {:?}{}\n",
        scenarios,
        backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
        ctx.sizes,
        if cli.quick { " (--quick)" } else { "" }
    );

    let mut rows: Vec<Row> = Vec::new();
    for scenario in &scenarios {
        let name = format!("{scenario:?}").to_lowercase();
        let t = Instant::now();
        eprintln!("== {name}");
        let new_rows = if *scenario == Scenario::Workspace {
            let mut rows = match bounded(
                "7. workspace",
                MEASUREMENT_LIMIT,
                scenarios::workspace::measure(&ctx, cli.quick),
            )
            .await
            {
                Ok(rows) => rows,
                Err(err) => vec![Row::error("7. workspace", "runner", &err)],
            };
            for &backend in &backends {
                match bounded(
                    "7. workspace upload and fetch",
                    MEASUREMENT_LIMIT,
                    scenarios::workspace::measure_e2e(&ctx, backend, cli.quick),
                )
                .await
                {
                    Ok(r) => rows.extend(r),
                    Err(err) => rows.push(Row::error("7. workspace", backend.name(), &err)),
                }
                match bounded(
                    "7. workspace real suite",
                    MEASUREMENT_LIMIT,
                    scenarios::suite::measure(&ctx, backend, cli.quick),
                )
                .await
                {
                    Ok(r) => rows.extend(r),
                    Err(err) => rows.push(Row::error("7. workspace", backend.name(), &err)),
                }
            }
            rows
        } else {
            run_scenario(&ctx, *scenario, &backends).await
        };
        for row in &new_rows {
            eprintln!("   {}", one_line(row));
        }
        eprintln!("   ({:.1}s)", t.elapsed().as_secs_f64());
        rows.extend(new_rows);
    }

    let table = report::markdown(&rows);
    println!("\n{}", report::hardware_line(&hw, pg_version.as_deref()));
    println!();
    print!("{table}");
    let doc = json!({
        "started_at": report::utc_stamp(started, true),
        "seconds": clock.elapsed().as_secs_f64(),
        "quick": cli.quick,
        "scenarios": scenarios.iter().map(|s| format!("{s:?}").to_lowercase()).collect::<Vec<_>>(),
        "backends": backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
        "sizes": format!("{:?}", ctx.sizes),
        "hardware": hw,
        "postgres_version": pg_version,
        "rows": report::rows_json(&rows),
        "markdown": table,
    });
    let hw_md = format!(
        "{}\n\n{table}",
        report::hardware_line(&hw, pg_version.as_deref())
    );
    let saved = report::save(&cli.results_dir, started, &doc, &hw_md)?;
    println!(
        "\nResults: {}/latest.json (and {saved}); took {:.0}s.",
        cli.results_dir.display(),
        clock.elapsed().as_secs_f64()
    );

    let errors = rows.iter().filter(|r| r.verdict == Verdict::Error).count();
    let misses = rows.iter().filter(|r| r.verdict == Verdict::Fail).count();
    if errors > 0 {
        println!(
            "{errors} measurement(s) failed; process logs kept in {}",
            ctx.work.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&ctx.work);
    }
    if misses > 0 {
        println!("{misses} row(s) missed their target.");
    }
    Ok(if errors > 0 || (cli.strict && misses > 0) {
        1
    } else {
        0
    })
}

fn one_line(row: &Row) -> String {
    let table = report::markdown(std::slice::from_ref(row));
    table.lines().last().unwrap_or_default().to_owned()
}

/// Baseline once, then each backend; a failure becomes an error row.
async fn run_scenario(ctx: &Ctx, scenario: Scenario, backends: &[Backend]) -> Vec<Row> {
    let mut rows = Vec::new();
    let label = |s: Scenario| match s {
        Scenario::Dispatch => "1. dispatch",
        Scenario::Printing => "1b. tests that print",
        Scenario::Logs => "2. log ingestion",
        Scenario::Latency => "3. live latency",
        Scenario::Scale => "4. scale",
        Scenario::Watchers => "5. many watchers",
        Scenario::Cases => "6. JUnit cases",
        Scenario::Workspace => "7. workspace",
        Scenario::Makespan => "8. makespan",
    };
    macro_rules! per_backend {
        ($baseline:expr, |$b:ident, $base:ident| $measure:expr) => {{
            match bounded("the baseline", MEASUREMENT_LIMIT, $baseline).await {
                Err(err) => rows.push(Row::error(label(scenario), "baseline", &err)),
                Ok($base) => {
                    for &$b in backends {
                        let what = format!("{} on {}", label(scenario), $b.name());
                        match bounded(&what, MEASUREMENT_LIMIT, $measure).await {
                            Ok(r) => rows.extend(r),
                            Err(err) => rows.push(Row::error(label(scenario), $b.name(), &err)),
                        }
                    }
                }
            }
        }};
    }
    match scenario {
        Scenario::Dispatch => per_backend!(scenarios::dispatch::baseline(ctx), |b, base| {
            scenarios::dispatch::measure(ctx, b, &base)
        }),
        Scenario::Printing => per_backend!(scenarios::printing::baseline(ctx), |b, base| {
            scenarios::printing::measure(ctx, b, &base)
        }),
        Scenario::Logs => per_backend!(scenarios::logs::baseline(ctx), |b, base| {
            scenarios::logs::measure(ctx, b, &base)
        }),
        Scenario::Latency => per_backend!(scenarios::latency::baseline(ctx), |b, base| {
            scenarios::latency::measure(ctx, b, &base)
        }),
        Scenario::Scale => per_backend!(scenarios::scale::baseline(ctx), |b, base| {
            scenarios::scale::measure(ctx, b, &base)
        }),
        Scenario::Cases => per_backend!(scenarios::cases::baseline(ctx), |b, base| {
            scenarios::cases::measure(ctx, b, &base)
        }),
        Scenario::Watchers => per_backend!(async { anyhow::Ok(()) }, |b, base| {
            {
                let () = base;
                scenarios::watchers::measure(ctx, b)
            }
        }),
        // Its baseline (submission order) is measured on each store.
        Scenario::Makespan => per_backend!(async { anyhow::Ok(()) }, |b, base| {
            {
                let () = base;
                scenarios::makespan::measure(ctx, b)
            }
        }),
        // Not per store: run from `run` directly.
        Scenario::Workspace => {}
    }
    rows
}
