//! The Postgres store: what a fleet of coordinators shares. Only what
//! Postgres does differently is here; the rest is `sql.rs`.

use std::str::FromStr;

use const_format::concatcp;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::contract::Claim;
use super::rows::{
    ASSIGNMENT_COLUMNS, AssignmentRow, CLAIM_SET, CLAIMED_COUNTS, QUEUE_ORDER, QUEUED, RUNNING,
    SELECTOR_CLOSE, SELECTOR_OPEN, SKIP_FAILED_SETUP, TESTRUN_COLUMNS, TestrunRow, claimed,
    per_testrun,
};
use crate::domain::pools::label_texts;
use crate::domain::{Millis, NewTestrun, RunnerInfo, TestResult};
use crate::error::Result;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Store on a Postgres database.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// One pool serves both: Postgres has no single writer.
    pub(super) write: PgPool,
    pub(super) read: PgPool,
}

sql_store!(
    PgStore,
    Postgres,
    in_list("= ANY(", ")"),
    each_text(
        "(SELECT o - 1 AS key, l AS value FROM UNNEST(",
        "::text[]) WITH ORDINALITY AS u(l, o)) AS lines"
    ),
    lock_cursor("FOR UPDATE")
);

blob_content!(
    PgStore,
    Postgres,
    in_list("= ANY(", ")"),
    each("UNNEST(", "::text[]) AS u(value)"),
    lock("FOR UPDATE")
);

fleet_store!(PgStore);
history_store!(PgStore, Postgres, in_list("= ANY(", ")"));

impl PgStore {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let store = Self::open(url).await?;
        MIGRATOR
            .run(&store.write)
            .await
            .context("applying Postgres migrations")?;
        Ok(store)
    }

    /// A pool of its own on a database `connect` has migrated.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let options = PgConnectOptions::from_str(url).context("parsing the Postgres url")?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .context("connecting to Postgres")?;
        Ok(Self {
            write: pool.clone(),
            read: pool,
        })
    }

    /// The pool, for LISTEN/NOTIFY and tests.
    pub fn pool(&self) -> &PgPool {
        &self.write
    }

    fn shared(&self) -> Option<PgPool> {
        Some(self.write.clone())
    }

    /// Lists bind as arrays.
    fn list<T>(values: &[T]) -> &[T] {
        values
    }

    async fn insert_tests(
        tx: &mut Transaction<'_, Postgres>,
        id: i64,
        run: &NewTestrun,
        suite_median: Option<i64>,
        now: Millis,
    ) -> Result<()> {
        // One statement for all tests: arrays unnested server-side. Each
        // test's expected duration is its median in the suite's history,
        // else the suite's median ($7).
        let positions: Vec<i32> = (0..run.tests.len() as i32).collect();
        let names: Vec<&str> = run.tests.iter().map(|t| t.name.as_str()).collect();
        let contents: Vec<&str> = run.tests.iter().map(|t| t.content.as_str()).collect();
        sqlx::query(concatcp!(
            "INSERT INTO tests \
                 (testrun_id, position, name, content, size_bytes, status, queued_at, expected_ms) \
             SELECT $1, p, n, c, octet_length(c), ",
            QUEUED,
            ", $2, COALESCE((SELECT s.median_ms FROM test_stats s WHERE s.suite = $6 AND s.name = n), \
                            $7::bigint) \
             FROM UNNEST($3::int[], $4::text[], $5::text[]) AS t(p, n, c)"
        ))
        .bind(id)
        .bind(now)
        .bind(&positions)
        .bind(&names)
        .bind(&contents)
        .bind(&run.suite)
        .bind(suite_median)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Every writer locks a test row before its Testrun row; deleting the
    /// Testrun (and the cascade to its tests) would go the other way round,
    /// so take the tests' locks first.
    async fn lock_tests_of(tx: &mut Transaction<'_, Postgres>, testrun_id: i64) -> Result<()> {
        sqlx::query("SELECT id FROM tests WHERE testrun_id = $1 ORDER BY id FOR UPDATE")
            .bind(testrun_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// A batch of results arrives in any order; delete and lease expiry
    /// lock tests by id: lock them by id first, then their Testruns by id.
    async fn lock_results(
        tx: &mut Transaction<'_, Postgres>,
        results: &[(String, TestResult)],
    ) -> Result<()> {
        if results.len() < 2 {
            return Ok(());
        }
        let ids: Vec<&str> = results.iter().map(|(a, _)| a.as_str()).collect();
        // By assignment id alone (only running tests have one; each update
        // checks the status again): with `status` in the condition,
        // Postgres' cached plan for this statement also read the
        // running-tests index, thousands of dead entries each time.
        sqlx::query("SELECT id FROM tests WHERE assignment_id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Before a batch's outcomes are recorded: the `test_stats` row of each
    /// (suite, name) it adds to, created or touched in key order, so
    /// coordinators recording the same tests at once take turns in one
    /// order (no deadlock) and each recomputes from the other's rows.
    async fn lock_history(
        tx: &mut Transaction<'_, Postgres>,
        test_ids: &[i64],
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO test_stats (suite, name, last_at) \
             SELECT DISTINCT r.suite, t.name, $2::bigint FROM tests t \
                 JOIN testruns r ON r.id = t.testrun_id WHERE t.id = ANY($1) \
             ORDER BY 1, 2 \
             ON CONFLICT (suite, name) DO UPDATE SET last_at = excluded.last_at",
        )
        .bind(test_ids)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Lock order as everywhere: the tests (by id), then their Testruns (by
    /// id), so the Testrun status the take-back reads is current.
    async fn lock_taken_back(tx: &mut Transaction<'_, Postgres>, ids: &[i64]) -> Result<()> {
        let runs: Vec<i64> = sqlx::query_scalar(concatcp!(
            "SELECT DISTINCT testrun_id FROM \
                 (SELECT id, testrun_id FROM tests WHERE id = ANY($1) AND status = ",
            RUNNING,
            " ORDER BY id FOR UPDATE) AS locked"
        ))
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
        sqlx::query("SELECT id FROM testruns WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&runs)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn claim(&self, runner: &RunnerInfo, epoch: i64, n: i64, now: Millis) -> Result<Claim> {
        // A claim need not wait for its commit to reach the disk: if the
        // server crashes before it does, the tests are simply queued again
        // and whatever the runner then says about them is refused. Nothing
        // durable can depend on a lost claim, because the write-ahead log
        // is flushed in order: a result or log line committed later flushes
        // the claim with it. This saves a disk flush per claim, which in
        // the dispatch bench was a large part of Postgres' time. (Sent with
        // BEGIN: one round trip.)
        let mut tx = self
            .write
            .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
            .await?;
        // The runner row first (shared): a registration of the same runner
        // (which bumps the epoch) waits for this claim, or this claim sees
        // the new epoch and takes nothing for a stream that is gone.
        let current: Option<(i64, bool)> = sqlx::query_as(
            "SELECT epoch, drained_at IS NOT NULL FROM runners WHERE id = $1 FOR SHARE",
        )
        .bind(&runner.id)
        .fetch_optional(&mut *tx)
        .await?;
        match current {
            Some((current, _)) if current != epoch => return Ok(Claim::stale()),
            None => return Ok(Claim::stale()),
            // Drained by an operator, maybe through another coordinator.
            Some((_, true)) => return Ok(Claim::drained()),
            Some((_, false)) => {}
        }
        // SKIP LOCKED: coordinators sharing the database never wait on, or
        // hand out, a row another one is claiming.
        let rows: Vec<AssignmentRow> = sqlx::query_as(concatcp!(
            "UPDATE tests SET ",
            CLAIM_SET,
            ", assignment_id = gen_random_uuid()::text \
             WHERE id IN (SELECT id FROM tests WHERE status = ",
            QUEUED,
            SKIP_FAILED_SETUP,
            SELECTOR_OPEN,
            "= ANY($5)",
            SELECTOR_CLOSE,
            QUEUE_ORDER,
            " LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            ASSIGNMENT_COLUMNS
        ))
        .bind(&runner.id)
        .bind(&runner.name)
        .bind(now)
        .bind(n)
        .bind(label_texts(&runner.labels))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Claim::default());
        }
        // Testrun rows in id order: two coordinators claiming at once lock
        // them in the same order and cannot deadlock.
        let per_run = per_testrun(&rows);
        let ids: Vec<i64> = per_run.iter().map(|(id, _)| *id).collect();
        let counts: Vec<i64> = per_run.iter().map(|(_, c)| *c).collect();
        // Under the Testrun row lock the status is current: tests of a run
        // cancelled meanwhile are cancelled, not handed out.
        let runs: Vec<TestrunRow> = sqlx::query_as(concatcp!(
            "UPDATE testruns SET ",
            CLAIMED_COUNTS,
            " FROM UNNEST($1::bigint[], $3::bigint[]) AS c(cid, n) \
             WHERE testruns.id = c.cid RETURNING ",
            TESTRUN_COLUMNS
        ))
        .bind(&ids)
        .bind(now)
        .bind(&counts)
        .fetch_all(&mut *tx)
        .await?;
        let claim = claimed(rows, runs)?;
        if !claim.cancelled.is_empty() {
            // Ending tests is not a claim: watchers see them CANCELLED, so
            // this commit waits for the disk like every other.
            sqlx::query("SET LOCAL synchronous_commit = on")
                .execute(&mut *tx)
                .await?;
            Self::cancel_claimed(&mut tx, &claim.cancelled, now).await?;
        }
        tx.commit().await?;
        Ok(claim)
    }
}
