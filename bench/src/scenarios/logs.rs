//! Scenario 2, log ingestion: one test printing N short lines as fast as
//! it can (`seq 1 N`), stored and acknowledged; create to SUCCESS, with the
//! stored count checked through GetTestLog.
//!
//! Baselines: the same program writing to a file, and the store's own
//! limit for the same lines: a bare `COPY` into an equivalent keyed table on
//! Postgres, batched multi-row inserts in one transaction on SQLite (with
//! the coordinator's WAL settings), on a fresh database of its own.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use sqlx::Connection as _;

use super::{Ctx, Stack, limit_for};
use crate::api;
use crate::procs::{self, Backend, cpu_seconds};
use crate::report::{Row, Verdict};

const NAME: &str = "2. log ingestion";
const USER: &str = "bench-logs";
/// The target, for Postgres.
const TARGET: f64 = 200_000.0;
/// Issue 18: ingestion at ≥ 0.75× what the store itself takes.
const STORE_TARGET: f64 = 0.75;

/// The keyed table the coordinator stores lines in (`log_lines`: primary
/// key on the run's sequence, unique index on the test's), without the
/// coordinator: what the store's own insertion path costs.
const LINES_TABLE: &str = "CREATE TABLE bench_lines (
    testrun_id BIGINT NOT NULL,
    run_seq    BIGINT NOT NULL,
    test_id    BIGINT NOT NULL,
    line_no    BIGINT NOT NULL,
    attempt    INTEGER NOT NULL,
    line       TEXT NOT NULL,
    PRIMARY KEY (testrun_id, run_seq)
)";
const LINES_INDEX: &str =
    "CREATE UNIQUE INDEX bench_lines_by_test ON bench_lines (test_id, line_no)";

/// Stores `seq 1 n`'s lines straight into `bench_lines` on a fresh database
/// of `backend`: `COPY` on Postgres, multi-row inserts in one transaction
/// on SQLite. Returns lines per second.
async fn store_limit(ctx: &Ctx, backend: Backend, n: usize) -> anyhow::Result<f64> {
    let db = procs::database(backend, &ctx.pg_admin).await?;
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::query(LINES_TABLE).execute(&mut conn).await?;
            sqlx::query(LINES_INDEX).execute(&mut conn).await?;
            let start = Instant::now();
            let mut copy = conn
                .copy_in_raw("COPY bench_lines (testrun_id, run_seq, test_id, line_no, attempt, line) FROM STDIN")
                .await?;
            let mut buf = String::with_capacity(1 << 20);
            for i in 1..=n {
                use std::fmt::Write as _;
                let _ = writeln!(buf, "1\t{i}\t1\t{}\t1\t{i}", i - 1);
                if buf.len() >= 1 << 20 {
                    copy.send(buf.as_bytes()).await?;
                    buf.clear();
                }
            }
            copy.send(buf.as_bytes()).await?;
            copy.finish().await?;
            let seconds = start.elapsed().as_secs_f64();
            let _ = conn.close().await;
            Ok(n as f64 / seconds)
        }
        Backend::Sqlite => {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
            use std::str::FromStr as _;
            let options = SqliteConnectOptions::from_str(&db.url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            sqlx::query(LINES_TABLE).execute(&mut conn).await?;
            sqlx::query(LINES_INDEX).execute(&mut conn).await?;
            // 6 parameters a row, under SQLite's 32,766-parameter limit.
            const ROWS: usize = 5_000;
            let start = Instant::now();
            let mut tx = conn.begin().await?;
            let mut first = 1;
            while first <= n {
                let last = (first + ROWS - 1).min(n);
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO bench_lines (testrun_id, run_seq, test_id, line_no, attempt, line) ",
                );
                q.push_values(first..=last, |mut b, i| {
                    b.push_bind(1_i64)
                        .push_bind(i as i64)
                        .push_bind(1_i64)
                        .push_bind(i as i64 - 1)
                        .push_bind(1_i32)
                        .push_bind(i.to_string());
                });
                q.build().execute(&mut *tx).await?;
                first = last + 1;
            }
            tx.commit().await?;
            let seconds = start.elapsed().as_secs_f64();
            let _ = conn.close().await;
            Ok(n as f64 / seconds)
        }
    }
}

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
    let limit = store_limit(ctx, stack.backend, n)
        .await
        .context("measuring the store's own insert rate")?;
    let store_row = Row::new(
        NAME,
        stack.backend.name(),
        &format!("lines/s stored + acked, `seq 1 {n}`, against the store itself"),
    )
    .measured(rate, "lines/s")
    .baseline(limit, "lines/s")
    .target(
        format!("≥ {STORE_TARGET:.2}× baseline"),
        Verdict::of(rate / limit >= STORE_TARGET),
    )
    .details(json!({
        "lines": n,
        "baseline": match stack.backend {
            Backend::Postgres => "bare COPY of the same lines into an equivalent keyed table, fresh database",
            Backend::Sqlite => "multi-row INSERTs of the same lines in one transaction into an equivalent keyed table, WAL, fresh file",
        },
    }));
    Ok(vec![row, store_row])
}
