//! The Postgres store: what a fleet of coordinators shares.

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;

use super::{
    AppendOutcome, AssignmentRow, CancelOutcome, Claim, FinishOutcome, LogCursorRow, LogLineRow,
    QueueStats, Registration, ResumeRow, Resumed, Store, TakeBack, TestRow, TestrunRow,
    cancel_outcome, claimed, decided_status, new_lines, per_testrun, sanitize_line, stored_lines,
    tally_finished, tally_moved,
};
use crate::domain::{
    ListFilter, LogLine, Millis, NewTestrun, RunnerInfo, Test, TestResult, Testrun,
};
use crate::error::{Error, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Store on a Postgres database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let store = Self::open(url).await?;
        MIGRATOR
            .run(&store.pool)
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
        Ok(Self { pool })
    }

    /// The pool, for LISTEN/NOTIFY and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn testrun_in(tx: &mut Transaction<'_, Postgres>, id: i64) -> Result<Testrun> {
        let row: TestrunRow = sqlx::query_as(concat!(
            "SELECT ",
            testrun_columns!(),
            " FROM testruns WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
        row.into_domain()
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_testrun(&self, run: &NewTestrun, now: Millis) -> Result<Testrun> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO testruns (username, status, command, timeout_ms, created_at, tests_total) \
             VALUES ($1, 'CREATED', $2, $3, $4, $5) RETURNING id",
        )
        .bind(&run.username)
        .bind(&run.command)
        .bind(run.timeout_ms)
        .bind(now)
        .bind(run.tests.len() as i64)
        .fetch_one(&mut *tx)
        .await?;
        // One statement for all tests: arrays unnested server-side.
        let positions: Vec<i32> = (0..run.tests.len() as i32).collect();
        let names: Vec<&str> = run.tests.iter().map(|t| t.name.as_str()).collect();
        let contents: Vec<&str> = run.tests.iter().map(|t| t.content.as_str()).collect();
        sqlx::query(
            "INSERT INTO tests (testrun_id, position, name, content, size_bytes, status, queued_at) \
             SELECT $1, p, n, c, octet_length(c), 'QUEUED', $2 \
             FROM UNNEST($3::int[], $4::text[], $5::text[]) AS t(p, n, c)",
        )
        .bind(id)
        .bind(now)
        .bind(&positions)
        .bind(&names)
        .bind(&contents)
        .execute(&mut *tx)
        .await?;
        let mut testrun = Self::testrun_in(&mut tx, id).await?;
        tx.commit().await?;
        testrun.tests = self.tests_of(id).await?;
        Ok(testrun)
    }

    async fn get_testrun(&self, id: i64, with_tests: bool) -> Result<Option<Testrun>> {
        let row: Option<TestrunRow> = sqlx::query_as(concat!(
            "SELECT ",
            testrun_columns!(),
            " FROM testruns WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut run = row.into_domain()?;
        if with_tests {
            run.tests = self.tests_of(id).await?;
        }
        Ok(Some(run))
    }

    async fn list_testruns(
        &self,
        filter: &ListFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<Testrun>, i64)> {
        let status = filter.status.map(|s| s.as_str());
        let rows: Vec<TestrunRow> = sqlx::query_as(concat!(
            "SELECT ",
            testrun_columns!(),
            " FROM testruns WHERE ($1::text IS NULL OR status = $1) \
             AND ($2::text IS NULL OR username = $2) AND ($3::bigint IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(status)
        .bind(&filter.username)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM testruns WHERE ($1::text IS NULL OR status = $1) \
             AND ($2::text IS NULL OR username = $2)",
        )
        .bind(status)
        .bind(&filter.username)
        .fetch_one(&self.pool)
        .await?;
        let runs = rows
            .into_iter()
            .map(TestrunRow::into_domain)
            .collect::<Result<_>>()?;
        Ok((runs, total))
    }

    async fn cancel_testrun(&self, id: i64, now: Millis) -> Result<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        // Queued tests first, then the Testrun row: the same lock order as a
        // claim (tests, then testruns), so the two never deadlock.
        let cancelled = sqlx::query(
            "UPDATE tests SET status = 'CANCELLED', finished_at = $2 \
             WHERE testrun_id = $1 AND status = 'QUEUED'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        let updated = sqlx::query(
            "UPDATE testruns SET status = 'CANCELLED', finished_at = $2, \
             tests_cancelled = tests_cancelled + $3 \
             WHERE id = $1 AND status IN ('CREATED', 'RUNNING')",
        )
        .bind(id)
        .bind(now)
        .bind(cancelled)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM testruns WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match status {
                None => Error::testrun_not_found(id),
                Some(s) => {
                    Error::FailedPrecondition(format!("testrun {id} already ended with status {s}"))
                }
            });
        }
        let running: Vec<(String, String)> = sqlx::query_as(
            "SELECT assignment_id, runner_id FROM tests \
             WHERE testrun_id = $1 AND status = 'RUNNING' AND assignment_id IS NOT NULL",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let testrun = Self::testrun_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(cancel_outcome(testrun, running))
    }

    async fn delete_testrun(&self, id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Every writer locks a test row before its Testrun row; the cascade
        // would go the other way round, so take the tests' locks first.
        sqlx::query("SELECT id FROM tests WHERE testrun_id = $1 ORDER BY id FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // log_lines has no foreign key (migration 0003): delete them here.
        sqlx::query("DELETE FROM log_lines WHERE testrun_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM testruns WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::testrun_not_found(id));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_tests(
        &self,
        runner: &RunnerInfo,
        epoch: i64,
        n: i64,
        now: Millis,
    ) -> Result<Claim> {
        // A claim need not wait for its commit to reach the disk: if the
        // server crashes before it does, the tests are simply queued again
        // and whatever the runner then says about them is refused. Nothing
        // durable can depend on a lost claim, because the write-ahead log
        // is flushed in order: a result or log line committed later flushes
        // the claim with it. This saves a disk flush per claim, which in
        // the dispatch bench was a large part of Postgres' time. (Sent with
        // BEGIN: one round trip.)
        let mut tx = self
            .pool
            .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
            .await?;
        // The runner row first (shared): a registration of the same runner
        // (which bumps the epoch) waits for this claim, or this claim sees
        // the new epoch and takes nothing for a stream that is gone.
        let current: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM runners WHERE id = $1 FOR SHARE")
                .bind(&runner.id)
                .fetch_optional(&mut *tx)
                .await?;
        if current != Some(epoch) {
            return Ok(Claim::stale());
        }
        // SKIP LOCKED: coordinators sharing the database never wait on, or
        // hand out, a row another one is claiming.
        let rows: Vec<AssignmentRow> = sqlx::query_as(
            "UPDATE tests SET status = 'RUNNING', attempt = attempt + 1, \
                 assignment_id = gen_random_uuid()::text, runner_id = $1, runner_name = $2, \
                 started_at = $3, log_seq = 0 \
             WHERE id IN (SELECT id FROM tests WHERE status = 'QUEUED' \
                          ORDER BY testrun_id, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING assignment_id, testrun_id, id AS test_id, name, content, attempt, queued_at, \
                       log_lines, size_bytes",
        )
        .bind(&runner.id)
        .bind(&runner.name)
        .bind(now)
        .bind(n)
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
        let runs: Vec<TestrunRow> = sqlx::query_as(
            "UPDATE testruns SET \
                 tests_running = tests_running + CASE WHEN status = 'CANCELLED' THEN 0 ELSE c.n END, \
                 tests_cancelled = tests_cancelled + CASE WHEN status = 'CANCELLED' THEN c.n ELSE 0 END, \
                 status = CASE WHEN status = 'CREATED' THEN 'RUNNING' ELSE status END, \
                 started_at = CASE WHEN status = 'CANCELLED' THEN started_at \
                                   ELSE COALESCE(started_at, $3) END \
             FROM UNNEST($1::bigint[], $2::bigint[]) AS c(id, n) WHERE testruns.id = c.id \
             RETURNING testruns.id, testruns.username, testruns.status, testruns.command, \
                 testruns.timeout_ms, testruns.created_at, testruns.started_at, \
                 testruns.finished_at, testruns.tests_total, testruns.tests_running, \
                 testruns.tests_passed, testruns.tests_failed, testruns.tests_cancelled, \
                 testruns.log_seq",
        )
        .bind(&ids)
        .bind(&counts)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let claim = claimed(rows, runs)?;
        if !claim.cancelled.is_empty() {
            // Ending tests is not a claim: watchers see them CANCELLED, so
            // this commit waits for the disk like every other.
            sqlx::query("SET LOCAL synchronous_commit = on")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE tests SET status = 'CANCELLED', finished_at = $2, assignment_id = NULL, \
                     runner_id = NULL WHERE assignment_id = ANY($1)",
            )
            .bind(&claim.cancelled)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(claim)
    }

    async fn release_assignment(&self, assignment_id: &str, now: Millis) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM tests WHERE assignment_id = $1")
            .bind(assignment_id)
            .fetch_all(&mut *tx)
            .await?;
        let touched = take_back(&mut tx, &ids, TakeBack::Release, now).await?;
        tx.commit().await?;
        Ok(touched.first().copied())
    }

    async fn append_logs(
        &self,
        assignment_id: &str,
        first_seq: i64,
        lines: &[String],
    ) -> Result<AppendOutcome> {
        let mut tx = self.pool.begin().await?;
        let cursor: Option<LogCursorRow> = sqlx::query_as(
            "SELECT id, testrun_id, attempt, log_seq, log_lines FROM tests \
             WHERE assignment_id = $1 AND status = 'RUNNING' FOR UPDATE",
        )
        .bind(assignment_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(cursor) = cursor else {
            return Ok(AppendOutcome::Refused);
        };
        let fresh = new_lines(cursor.log_seq, first_seq, lines)?;
        if fresh.is_empty() {
            return Ok(AppendOutcome::Stored {
                last_seq: cursor.log_seq,
                lines: Vec::new(),
            });
        }
        let n = fresh.len() as i64;
        let last_seq = cursor.log_seq + n;
        sqlx::query("UPDATE tests SET log_seq = $2, log_lines = log_lines + $3 WHERE id = $1")
            .bind(cursor.id)
            .bind(last_seq)
            .bind(n)
            .execute(&mut *tx)
            .await?;
        let run_end: i64 = sqlx::query_scalar(
            "UPDATE testruns SET log_seq = log_seq + $2 WHERE id = $1 RETURNING log_seq",
        )
        .bind(cursor.testrun_id)
        .bind(n)
        .fetch_one(&mut *tx)
        .await?;
        let run_start = run_end - n + 1;
        let texts: Vec<String> = fresh.iter().map(|l| sanitize_line(l)).collect();
        // One statement per batch: the arrays are unnested server-side.
        sqlx::query(
            "INSERT INTO log_lines (testrun_id, run_seq, test_id, line_no, attempt, line) \
             SELECT $1, $2 + o - 1, $3, $4 + o - 1, $5, l \
             FROM UNNEST($6::text[]) WITH ORDINALITY AS t(l, o)",
        )
        .bind(cursor.testrun_id)
        .bind(run_start)
        .bind(cursor.id)
        .bind(cursor.log_lines)
        .bind(cursor.attempt)
        .bind(&texts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AppendOutcome::Stored {
            last_seq,
            lines: stored_lines(&cursor, run_start, texts),
        })
    }

    async fn finish_tests(
        &self,
        results: &[(String, TestResult)],
        now: Millis,
    ) -> Result<FinishOutcome> {
        // One transaction for every result that arrived together (see
        // `finisher`). Lock order as everywhere: the tests by id first (a
        // batch arrives in any order; delete and lease expiry lock by id),
        // then their Testruns by id.
        let mut tx = self.pool.begin().await?;
        if results.len() > 1 {
            let ids: Vec<&str> = results.iter().map(|(a, _)| a.as_str()).collect();
            // By assignment id alone (only running tests have one; each
            // update below checks the status again): with `status` in the
            // condition, Postgres' cached plan for this statement also read
            // the running-tests index, thousands of dead entries each time.
            sqlx::query(
                "SELECT id FROM tests WHERE assignment_id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
        let mut tests = Vec::with_capacity(results.len());
        for (assignment_id, result) in results {
            let row: Option<TestRow> = sqlx::query_as(concat!(
                "UPDATE tests SET status = $2, exit_code = $3, error = $4, duration_ms = $5, \
                     finished_at = $6, assignment_id = NULL \
                 WHERE assignment_id = $1 AND status = 'RUNNING' RETURNING ",
                test_columns!()
            ))
            .bind(assignment_id)
            .bind(result.status.as_str())
            .bind(result.exit_code)
            .bind(&result.error)
            .bind(result.duration_ms)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            tests.push(row.map(TestRow::into_domain).transpose()?);
        }
        let mut testruns = Vec::new();
        for (testrun_id, t) in tally_finished(&tests) {
            // Counts and reads back in one statement.
            let mut testrun = sqlx::query_as::<_, TestrunRow>(concat!(
                "UPDATE testruns SET tests_running = tests_running - $2, \
                     tests_passed = tests_passed + $3, tests_failed = tests_failed + $4, \
                     tests_cancelled = tests_cancelled + $5 WHERE id = $1 RETURNING ",
                testrun_columns!()
            ))
            .bind(testrun_id)
            .bind(t.finished)
            .bind(t.passed)
            .bind(t.failed)
            .bind(t.cancelled)
            .fetch_one(&mut *tx)
            .await?
            .into_domain()?;
            if let Some(status) = decided_status(testrun.status, &testrun.counts) {
                sqlx::query("UPDATE testruns SET status = $2, finished_at = $3 WHERE id = $1")
                    .bind(testrun.id)
                    .bind(status.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                testrun.status = status;
                testrun.finished_at = Some(now);
            }
            testruns.push(testrun);
        }
        tx.commit().await?;
        Ok(FinishOutcome { tests, testruns })
    }

    async fn register_runner(
        &self,
        runner: &RunnerInfo,
        lease_until: Millis,
        resume: &[String],
        now: Millis,
    ) -> Result<Registration> {
        let mut tx = self.pool.begin().await?;
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO runners (id, name, slots, version, registered_at, lease_until, epoch) \
             VALUES ($1, $2, $3, $4, $5, $5, 1) \
             ON CONFLICT (id) DO UPDATE SET name = $2, slots = $3, version = $4, \
                 lease_until = $5, epoch = runners.epoch + 1 \
             RETURNING epoch",
        )
        .bind(&runner.id)
        .bind(&runner.name)
        .bind(runner.slots)
        .bind(&runner.version)
        .bind(lease_until)
        .fetch_one(&mut *tx)
        .await?;
        let rows: Vec<ResumeRow> = sqlx::query_as(
            "SELECT assignment_id, testrun_id, name, \
                 (SELECT status FROM testruns r WHERE r.id = tests.testrun_id) = 'CANCELLED' \
                     AS cancelled \
             FROM tests WHERE assignment_id = ANY($1) AND runner_id = $2 AND status = 'RUNNING'",
        )
        .bind(resume)
        .bind(&runner.id)
        .fetch_all(&mut *tx)
        .await?;
        // Tests the database says this runner holds but the runner does not
        // list: their Assign never reached it. Hand them back.
        let orphans: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM tests WHERE runner_id = $1 AND status = 'RUNNING' \
                 AND NOT (assignment_id = ANY($2))",
        )
        .bind(&runner.id)
        .bind(resume)
        .fetch_all(&mut *tx)
        .await?;
        let requeued = take_back(&mut tx, &orphans, TakeBack::Release, now).await?;
        tx.commit().await?;
        Ok(Registration {
            epoch,
            resumed: rows.into_iter().map(Resumed::from).collect(),
            requeued,
        })
    }

    async fn renew_lease(&self, runner_id: &str, lease_until: Millis) -> Result<()> {
        sqlx::query("UPDATE runners SET lease_until = GREATEST(lease_until, $2) WHERE id = $1")
            .bind(runner_id)
            .bind(lease_until)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn expire_leases(&self, now: Millis, max_attempts: i32) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM tests WHERE status = 'RUNNING' AND runner_id IN \
                 (SELECT id FROM runners WHERE lease_until < $1)",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let touched = take_back(&mut tx, &ids, TakeBack::Lost { max_attempts }, now).await?;
        sqlx::query("DELETE FROM runners WHERE lease_until < $1 - 86400000")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(touched)
    }

    async fn get_test(&self, test_id: i64) -> Result<Option<Test>> {
        let row: Option<TestRow> = sqlx::query_as(concat!(
            "SELECT ",
            test_columns!(),
            " FROM tests WHERE id = $1"
        ))
        .bind(test_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TestRow::into_domain).transpose()
    }

    async fn find_test(&self, testrun_id: i64, name: &str) -> Result<Option<Test>> {
        let row: Option<TestRow> = sqlx::query_as(concat!(
            "SELECT ",
            test_columns!(),
            " FROM tests WHERE testrun_id = $1 AND name = $2"
        ))
        .bind(testrun_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TestRow::into_domain).transpose()
    }

    async fn read_run_log(&self, testrun_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>> {
        let rows: Vec<LogLineRow> = sqlx::query_as(
            "SELECT test_id, attempt, line_no, run_seq, line FROM log_lines \
             WHERE testrun_id = $1 AND run_seq > $2 ORDER BY run_seq LIMIT $3",
        )
        .bind(testrun_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(LogLine::from).collect())
    }

    async fn read_test_log(&self, test_id: i64, offset: i64, limit: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT line FROM log_lines WHERE test_id = $1 AND line_no >= $2 \
             ORDER BY line_no LIMIT $3",
        )
        .bind(test_id)
        .bind(offset)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    fn shared_pool(&self) -> Option<PgPool> {
        Some(self.pool.clone())
    }

    async fn queue_stats(&self) -> Result<QueueStats> {
        let (queued, running, oldest): (i64, i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'QUEUED'), \
                    count(*) FILTER (WHERE status = 'RUNNING'), \
                    min(queued_at) FILTER (WHERE status = 'QUEUED') \
             FROM tests WHERE status IN ('QUEUED', 'RUNNING')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            queued,
            running,
            oldest_queued_at: oldest,
        })
    }
}

impl PgStore {
    async fn tests_of(&self, testrun_id: i64) -> Result<Vec<Test>> {
        let rows: Vec<TestRow> = sqlx::query_as(concat!(
            "SELECT ",
            test_columns!(),
            " FROM tests WHERE testrun_id = $1 ORDER BY position"
        ))
        .bind(testrun_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TestRow::into_domain).collect()
    }
}

/// Takes running tests back from their runners: a test of a cancelled
/// Testrun ends CANCELLED; otherwise a hand-back requeues it without using an
/// attempt, and a lost runner's test is requeued or, attempts used up, ends
/// in ERROR. Counters follow, and a Testrun whose last test just ended is
/// settled. Returns the Testruns touched.
async fn take_back(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[i64],
    why: TakeBack,
    now: Millis,
) -> Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Lock order as everywhere: the tests (by id), then their Testruns (by
    // id), so the Testrun status read below is current.
    let runs: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT testrun_id FROM \
             (SELECT id, testrun_id FROM tests WHERE id = ANY($1) AND status = 'RUNNING' \
              ORDER BY id FOR UPDATE) AS locked",
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query("SELECT id FROM testruns WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&runs)
        .execute(&mut **tx)
        .await?;
    let (consume, max_attempts) = why.attempts();
    let moved: Vec<(i64, String)> = sqlx::query_as(
        "UPDATE tests t SET \
             status = CASE WHEN r.status = 'CANCELLED' THEN 'CANCELLED' \
                           WHEN $2 AND t.attempt >= $3 THEN 'ERROR' ELSE 'QUEUED' END, \
             attempt = CASE WHEN NOT $2 AND r.status <> 'CANCELLED' THEN t.attempt - 1 \
                            ELSE t.attempt END, \
             error = CASE WHEN r.status <> 'CANCELLED' AND $2 AND t.attempt >= $3 \
                          THEN 'runner lost on every one of ' || t.attempt || ' attempts' \
                          ELSE t.error END, \
             finished_at = CASE WHEN r.status = 'CANCELLED' OR ($2 AND t.attempt >= $3) \
                                THEN $4 ELSE NULL END, \
             started_at = CASE WHEN r.status = 'CANCELLED' OR ($2 AND t.attempt >= $3) \
                               THEN t.started_at ELSE NULL END, \
             queued_at = $4, assignment_id = NULL, runner_id = NULL \
         FROM testruns r \
         WHERE t.testrun_id = r.id AND t.id = ANY($1) AND t.status = 'RUNNING' \
         RETURNING t.testrun_id, t.status",
    )
    .bind(ids)
    .bind(consume)
    .bind(max_attempts)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    for (id, tally) in tally_moved(&moved) {
        sqlx::query(
            "UPDATE testruns SET tests_running = tests_running - $2, \
                 tests_cancelled = tests_cancelled + $3, tests_failed = tests_failed + $4 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(tally.all)
        .bind(tally.cancelled)
        .bind(tally.errored)
        .execute(&mut **tx)
        .await?;
        let run = PgStore::testrun_in(tx, id).await?;
        if let Some(status) = decided_status(run.status, &run.counts) {
            sqlx::query("UPDATE testruns SET status = $2, finished_at = $3 WHERE id = $1")
                .bind(id)
                .bind(status.as_str())
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(runs)
}
