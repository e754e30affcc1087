//! The SQLite store: the zero-set-up default for one machine.
//!
//! SQLite has one writer at a time, so writes go through a pool of exactly
//! one connection: transactions queue in-process instead of failing with
//! SQLITE_BUSY, and no claim needs SKIP LOCKED. Reads use their own pool and
//! never wait for writes (WAL mode). Bulk inserts pass a JSON array and
//! expand it with `json_each`, so a batch of any size is one statement.
//! Only what SQLite does differently is here; the rest is `sql.rs`.

use std::str::FromStr;
use std::time::Duration;

use const_format::concatcp;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::contract::Claim;
use super::rows::{
    ASSIGNMENT_COLUMNS, AssignmentRow, CLAIM_SET, CLAIMED_COUNTS, QUEUE_ORDER, QUEUED,
    SELECTOR_CLOSE, SELECTOR_OPEN, SKIP_FAILED_SETUP, TESTRUN_COLUMNS, TestrunRow, claimed,
    per_testrun,
};
use crate::domain::pools::label_texts;
use crate::domain::{Millis, NewTestrun, RunnerInfo, TestResult};
use crate::error::Result;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Store in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) write: SqlitePool,
    pub(super) read: SqlitePool,
}

sql_store!(
    SqliteStore,
    Sqlite,
    in_list("IN (SELECT value FROM json_each(", "))"),
    each_text("json_each(", ")"),
    lock_cursor("")
);

blob_content!(
    SqliteStore,
    Sqlite,
    in_list("IN (SELECT value FROM json_each(", "))"),
    each("json_each(", ")"),
    lock("")
);

fleet_store!(SqliteStore);
history_store!(
    SqliteStore,
    Sqlite,
    in_list("IN (SELECT value FROM json_each(", "))")
);

impl SqliteStore {
    /// Opens (creating if missing) and migrates the file the URL names.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("parsing the SQLite url {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a power cut may lose the last commits, never
            // corrupt the file; an application crash loses nothing.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        // One writer, opened now and kept for good: its worker thread takes
        // the priority of the thread that opens it, which must be this one,
        // not a lower-priority API thread later (see `runtime`).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening SQLite database {url:?}"))?;
        MIGRATOR
            .run(&write)
            .await
            .context("applying SQLite migrations")?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await
            .context("opening SQLite read pool")?;
        Ok(Self { write, read })
    }

    fn shared(&self) -> Option<sqlx::PgPool> {
        None
    }

    /// Lists bind as one JSON array, expanded by `json_each`.
    fn list<T: serde::Serialize>(values: &[T]) -> String {
        json(values)
    }

    async fn insert_tests(
        tx: &mut Transaction<'_, Sqlite>,
        id: i64,
        run: &NewTestrun,
        suite_median: Option<i64>,
        now: Millis,
    ) -> Result<()> {
        let files: Vec<[&str; 2]> = run
            .tests
            .iter()
            .map(|t| [t.name.as_str(), t.content.as_str()])
            .collect();
        // Each test's expected duration is its median in the suite's
        // history, else the suite's median ($5).
        sqlx::query(concatcp!(
            "INSERT INTO tests \
                 (testrun_id, position, name, content, size_bytes, status, queued_at, expected_ms) \
             SELECT $1, key, json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
                    length(CAST(json_extract(value, '$[1]') AS BLOB)), ",
            QUEUED,
            ", $2, COALESCE((SELECT s.median_ms FROM test_stats s \
                             WHERE s.suite = $4 AND s.name = json_extract(value, '$[0]')), $5) \
             FROM json_each($3)"
        ))
        .bind(id)
        .bind(now)
        .bind(json(&files))
        .bind(&run.suite)
        .bind(suite_median)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    // The single writer connection means no lock order to keep.
    async fn lock_tests_of(_: &mut Transaction<'_, Sqlite>, _: i64) -> Result<()> {
        Ok(())
    }

    async fn lock_results(
        _: &mut Transaction<'_, Sqlite>,
        _: &[(String, TestResult)],
    ) -> Result<()> {
        Ok(())
    }

    async fn lock_taken_back(_: &mut Transaction<'_, Sqlite>, _: &[i64]) -> Result<()> {
        Ok(())
    }

    async fn lock_history(_: &mut Transaction<'_, Sqlite>, _: &[i64], _: Millis) -> Result<()> {
        Ok(())
    }

    async fn claim(&self, runner: &RunnerInfo, epoch: i64, n: i64, now: Millis) -> Result<Claim> {
        let mut tx = self.write.begin().await?;
        // The epoch check rides in the claim itself (one round trip to the
        // worker thread fewer per claim); only an empty claim asks why.
        let rows: Vec<AssignmentRow> = sqlx::query_as(concatcp!(
            "UPDATE tests SET ",
            CLAIM_SET,
            ", assignment_id = lower(hex(randomblob(16))) \
             WHERE id IN (SELECT id FROM tests WHERE status = ",
            QUEUED,
            SKIP_FAILED_SETUP,
            SELECTOR_OPEN,
            "IN (SELECT value FROM json_each($6))",
            SELECTOR_CLOSE,
            QUEUE_ORDER,
            " LIMIT $4) \
                 AND EXISTS (SELECT 1 FROM runners WHERE id = $1 AND epoch = $5 \
                     AND drained_at IS NULL) \
             RETURNING ",
            ASSIGNMENT_COLUMNS
        ))
        .bind(&runner.id)
        .bind(&runner.name)
        .bind(now)
        .bind(n)
        .bind(epoch)
        .bind(json(&label_texts(&runner.labels)))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            let current: Option<(i64, bool)> =
                sqlx::query_as("SELECT epoch, drained_at IS NOT NULL FROM runners WHERE id = $1")
                    .bind(&runner.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Ok(match current {
                Some((current, _)) if current != epoch => Claim::stale(),
                None => Claim::stale(),
                Some((_, true)) => Claim::drained(),
                Some((_, false)) => Claim::default(),
            });
        }
        let runs: Vec<TestrunRow> = sqlx::query_as(concatcp!(
            "UPDATE testruns SET ",
            CLAIMED_COUNTS,
            " FROM (SELECT json_extract(value, '$[0]') AS cid, json_extract(value, '$[1]') AS n \
                    FROM json_each($1)) AS c \
             WHERE testruns.id = c.cid RETURNING ",
            TESTRUN_COLUMNS
        ))
        .bind(json(&per_testrun(&rows)))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let claim = claimed(rows, runs)?;
        if !claim.cancelled.is_empty() {
            Self::cancel_claimed(&mut tx, &claim.cancelled, now).await?;
        }
        tx.commit().await?;
        Ok(claim)
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}
