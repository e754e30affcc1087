//! The statements both stores run, written once.
//!
//! sqlx's SQLite driver takes `$N` placeholders like Postgres, so one text
//! serves both; `sql_store!` expands this code once per backend with its
//! database type, because sqlx's traits make a generic version need a
//! where-clause per bound type at every function (and the two concrete
//! expansions compile to the same code a generic one would). What differs
//! stays in each backend as an inherent method the expansion calls:
//!
//! - `insert_tests`: the bulk insert of a Testrun's tests (`UNNEST` of
//!   arrays on Postgres, `json_each` of one JSON text on SQLite);
//! - `claim`: the dispatch claim (`FOR UPDATE SKIP LOCKED` on Postgres, the
//!   single writer on SQLite);
//! - `lock_tests_of`, `lock_results`, `lock_taken_back`: the row locks that
//!   keep Postgres' lock order (tests by id, then their Testruns by id);
//!   SQLite's one writer needs none;
//! - `list`: how a list of values is bound, matched by the fragments the
//!   invocation passes: `in_list` to test membership (`= ANY($1)` against
//!   `IN (SELECT value FROM json_each($1))`) and `each_text` to expand a
//!   list of texts into `(key, value)` rows, key from 0;
//! - `shared`: the pool other coordinators share (Postgres only).
//!
//! Status spellings come from the enums (`TestStatus::sql`); they are
//! literals in the text, not parameters, so the partial indexes on
//! `status` stay usable.
//!
//! This file is longer than 500 lines on purpose: it is one macro holding
//! every shared statement of the `Store` contract, and splitting it would
//! only spread one `impl` over several macros.

macro_rules! sql_store {
    (
        $store:ty,
        $db:ty,
        in_list($open:literal, $close:literal),
        each_text($each_open:literal, $each_close:literal),
        lock_cursor($lock:literal)
    ) => {
        const _: () = {
            use async_trait::async_trait;
            use const_format::concatcp;
            use sqlx::Transaction;

            use crate::domain::{
                Labels, ListFilter, LogLine, Millis, NewTestrun, RunnerInfo, Test, TestResult,
                Testrun, TestrunStatus, log, pools,
            };
            use crate::error::{Error, Result};
            use crate::store::rows::{
                CANCELLED, CANCELLED_RUN, CREATED, ERROR, LogCursorRow, LogLineRow, QUEUED,
                RUNNING, RUNNING_RUN, ResumeRow, TEST_COLUMNS, TESTRUN_COLUMNS, TestRow,
                Tally, TestrunRow, cancel_outcome, stored_lines, tally_finished, tally_moved,
            };
            use crate::store::contract::{
                AppendOutcome, CancelOutcome, Claim, FinishOutcome, QueueStats, Registration,
                Resumed, SelectorQueue, Store, TakeBack,
            };

            impl $store {
                async fn testrun_in(tx: &mut Transaction<'_, $db>, id: i64) -> Result<Testrun> {
                    let row: TestrunRow = sqlx::query_as(concatcp!(
                        "SELECT ", TESTRUN_COLUMNS, " FROM testruns WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_one(&mut **tx)
                    .await?;
                    row.into_domain()
                }

                async fn tests_of(&self, testrun_id: i64) -> Result<Vec<Test>> {
                    let rows: Vec<TestRow> = sqlx::query_as(concatcp!(
                        "SELECT ", TEST_COLUMNS,
                        " FROM tests WHERE testrun_id = $1 ORDER BY position"
                    ))
                    .bind(testrun_id)
                    .fetch_all(&self.read)
                    .await?;
                    rows.into_iter().map(TestRow::into_domain).collect()
                }

                /// Takes running tests back from their runners: a test of a
                /// cancelled Testrun ends CANCELLED; otherwise a hand-back
                /// requeues it without using an attempt, and a lost runner's
                /// test is requeued or, attempts used up, ends in ERROR.
                /// Counters follow, and a Testrun whose last test just ended
                /// is settled. Returns the Testruns whose tests moved, in id
                /// order.
                async fn take_back(
                    tx: &mut Transaction<'_, $db>,
                    ids: &[i64],
                    why: TakeBack,
                    now: Millis,
                ) -> Result<Vec<i64>> {
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    Self::lock_taken_back(tx, ids).await?;
                    let (consume, max_attempts) = why.attempts();
                    let moved: Vec<(i64, String)> = sqlx::query_as(concatcp!(
                        "UPDATE tests SET \
                             status = CASE WHEN r.status = ", CANCELLED_RUN, " THEN ", CANCELLED,
                                 " WHEN $2 AND tests.attempt >= $3 THEN ", ERROR,
                                 " ELSE ", QUEUED, " END, \
                             attempt = CASE WHEN NOT $2 AND r.status <> ", CANCELLED_RUN,
                                 " THEN tests.attempt - 1 ELSE tests.attempt END, \
                             error = CASE WHEN r.status <> ", CANCELLED_RUN,
                                 " AND $2 AND tests.attempt >= $3 \
                                 THEN 'runner lost on every one of ' || tests.attempt || ' attempts' \
                                 ELSE tests.error END, \
                             finished_at = CASE WHEN r.status = ", CANCELLED_RUN,
                                 " OR ($2 AND tests.attempt >= $3) THEN $4 ELSE NULL END, \
                             started_at = CASE WHEN r.status = ", CANCELLED_RUN,
                                 " OR ($2 AND tests.attempt >= $3) THEN tests.started_at ELSE NULL END, \
                             queued_at = $4, assignment_id = NULL, runner_id = NULL \
                         FROM testruns AS r \
                         WHERE tests.testrun_id = r.id AND tests.id ", $open, "$1", $close,
                             " AND tests.status = ", RUNNING,
                         " RETURNING tests.testrun_id, tests.status"
                    ))
                    .bind(Self::list(ids))
                    .bind(consume)
                    .bind(max_attempts)
                    .bind(now)
                    .fetch_all(&mut **tx)
                    .await?;
                    let tallies = tally_moved(&moved);
                    for (id, tally) in &tallies {
                        let run = Self::recount(tx, *id, tally).await?;
                        Self::settle(tx, run, now).await?;
                    }
                    Ok(tallies.into_iter().map(|(id, _)| id).collect())
                }

                /// Ends the tests a claim took from Testruns cancelled
                /// meanwhile, instead of handing them out.
                async fn cancel_claimed(
                    tx: &mut Transaction<'_, $db>,
                    assignment_ids: &[String],
                    now: Millis,
                ) -> Result<()> {
                    sqlx::query(concatcp!(
                        "UPDATE tests SET status = ", CANCELLED,
                        ", finished_at = $2, assignment_id = NULL, runner_id = NULL \
                         WHERE assignment_id ", $open, "$1", $close
                    ))
                    .bind(Self::list(assignment_ids))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                }

                /// Stores a batch's new lines, numbered from the cursor.
                async fn insert_lines(
                    tx: &mut Transaction<'_, $db>,
                    cursor: &LogCursorRow,
                    run_start: i64,
                    texts: &[String],
                ) -> Result<()> {
                    // One statement per batch, whatever its size: the list is
                    // expanded server-side into (key, value) rows.
                    sqlx::query(concatcp!(
                        "INSERT INTO log_lines (testrun_id, run_seq, test_id, line_no, attempt, line) \
                         SELECT $1, $2 + key, $3, $4 + key, $5, value FROM ",
                        $each_open, "$6", $each_close
                    ))
                    .bind(cursor.testrun_id)
                    .bind(run_start)
                    .bind(cursor.id)
                    .bind(cursor.log_lines)
                    .bind(cursor.attempt)
                    .bind(Self::list(texts))
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                }

                /// Applies a tally to a Testrun's counters; the Testrun after.
                async fn recount(
                    tx: &mut Transaction<'_, $db>,
                    id: i64,
                    t: &Tally,
                ) -> Result<Testrun> {
                    sqlx::query_as::<_, TestrunRow>(concatcp!(
                        "UPDATE testruns SET tests_running = tests_running - $2, \
                             tests_passed = tests_passed + $3, \
                             tests_failed = tests_failed + $4, \
                             tests_cancelled = tests_cancelled + $5 \
                         WHERE id = $1 RETURNING ", TESTRUN_COLUMNS
                    ))
                    .bind(id)
                    .bind(t.left_running)
                    .bind(t.passed)
                    .bind(t.failed)
                    .bind(t.cancelled)
                    .fetch_one(&mut **tx)
                    .await?
                    .into_domain()
                }

                /// Ends a Testrun whose last test just got its result.
                async fn settle(
                    tx: &mut Transaction<'_, $db>,
                    mut run: Testrun,
                    now: Millis,
                ) -> Result<Testrun> {
                    if let Some(status) = run.status.decided(&run.counts) {
                        sqlx::query(
                            "UPDATE testruns SET status = $2, finished_at = $3 WHERE id = $1",
                        )
                        .bind(run.id)
                        .bind(status.as_str())
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                        run.status = status;
                        run.finished_at = Some(now);
                    }
                    Ok(run)
                }
            }

            #[async_trait]
            impl Store for $store {
                async fn create_testrun(&self, run: &NewTestrun, now: Millis) -> Result<Testrun> {
                    let mut tx = self.write.begin().await?;
                    let id: i64 = sqlx::query_scalar(concatcp!(
                        "INSERT INTO testruns \
                             (username, status, command, timeout_ms, created_at, tests_total, \
                              test_memory_bytes, test_pids, suite, selector) \
                         VALUES ($1, ", CREATED, ", $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"
                    ))
                    .bind(&run.username)
                    .bind(&run.command)
                    .bind(run.timeout_ms)
                    .bind(now)
                    .bind(run.tests.len() as i64)
                    .bind(run.limits.memory_bytes)
                    .bind(run.limits.pids)
                    .bind(&run.suite)
                    .bind(testrunner_content::label::canonical(&run.selector))
                    .fetch_one(&mut *tx)
                    .await?;
                    // Longest first: each test is stored with the duration
                    // its suite's history expects (see `store::history`).
                    let suite_median = Self::suite_median(&mut tx, &run.suite).await?;
                    Self::insert_tests(&mut tx, id, run, suite_median, now).await?;
                    if !run.selector.is_empty() {
                        sqlx::query(concatcp!(
                            "INSERT INTO testrun_labels (testrun_id, label) SELECT $1, value FROM ",
                            $each_open, "$2", $each_close
                        ))
                        .bind(id)
                        .bind(Self::list(&pools::label_texts(&run.selector)))
                        .execute(&mut *tx)
                        .await?;
                    }
                    if let Some(ws) = &run.workspace {
                        Self::insert_workspace(&mut tx, id, ws, now).await?;
                    }
                    let mut testrun = Self::testrun_in(&mut tx, id).await?;
                    tx.commit().await?;
                    testrun.tests = self.tests_of(id).await?;
                    Ok(testrun)
                }

                async fn get_testrun(&self, id: i64, with_tests: bool) -> Result<Option<Testrun>> {
                    let row: Option<TestrunRow> = sqlx::query_as(concatcp!(
                        "SELECT ", TESTRUN_COLUMNS, " FROM testruns WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.read)
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
                    // CASTs type the NULL parameters for Postgres.
                    const MATCHES: &str = "(CAST($1 AS TEXT) IS NULL OR status = $1) \
                         AND (CAST($2 AS TEXT) IS NULL OR username = $2)";
                    let status = filter.status.map(|s| s.as_str());
                    let rows: Vec<TestrunRow> = sqlx::query_as(concatcp!(
                        "SELECT ", TESTRUN_COLUMNS, " FROM testruns WHERE ", MATCHES,
                        " AND (CAST($3 AS BIGINT) IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
                    ))
                    .bind(status)
                    .bind(&filter.username)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?;
                    let total: i64 =
                        sqlx::query_scalar(concatcp!("SELECT count(*) FROM testruns WHERE ", MATCHES))
                            .bind(status)
                            .bind(&filter.username)
                            .fetch_one(&self.read)
                            .await?;
                    let runs = rows
                        .into_iter()
                        .map(TestrunRow::into_domain)
                        .collect::<Result<_>>()?;
                    Ok((runs, total))
                }

                async fn cancel_testrun(&self, id: i64, now: Millis) -> Result<CancelOutcome> {
                    let mut tx = self.write.begin().await?;
                    // Queued tests first, then the Testrun row: the same lock
                    // order as a claim (tests, then testruns), so the two never
                    // deadlock on Postgres.
                    let cancelled = sqlx::query(concatcp!(
                        "UPDATE tests SET status = ", CANCELLED, ", finished_at = $2 \
                         WHERE testrun_id = $1 AND status = ", QUEUED
                    ))
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() as i64;
                    let updated = sqlx::query(concatcp!(
                        "UPDATE testruns SET status = ", CANCELLED_RUN, ", finished_at = $2, \
                             tests_cancelled = tests_cancelled + $3, waiting = '' \
                         WHERE id = $1 AND status IN (", CREATED, ", ", RUNNING_RUN, ")"
                    ))
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
                        let Some(status) = status else {
                            return Err(Error::testrun_not_found(id));
                        };
                        let refused = TestrunStatus::parse(&status).and_then(|s| s.cancel().err());
                        return Err(match refused {
                            Some(cause) => Error::testrun_transition(id, cause),
                            None => Error::Internal(anyhow::anyhow!(
                                "testrun {id} with status {status:?} was not cancelled"
                            )),
                        });
                    }
                    let running: Vec<(String, String)> = sqlx::query_as(concatcp!(
                        "SELECT assignment_id, runner_id FROM tests \
                         WHERE testrun_id = $1 AND status = ", RUNNING,
                        " AND assignment_id IS NOT NULL"
                    ))
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                    let testrun = Self::testrun_in(&mut tx, id).await?;
                    tx.commit().await?;
                    Ok(cancel_outcome(testrun, running))
                }

                async fn delete_testrun(&self, id: i64) -> Result<()> {
                    let mut tx = self.write.begin().await?;
                    Self::lock_tests_of(&mut tx, id).await?;
                    // Explicitly on both: Postgres' log_lines has no foreign
                    // key (migration 0003), and a cascade on SQLite would be a
                    // second way of doing the same thing.
                    sqlx::query("DELETE FROM log_lines WHERE testrun_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM test_cases WHERE testrun_id = $1")
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
                    self.claim(runner, epoch, n, now).await
                }

                async fn release_assignment(
                    &self,
                    assignment_id: &str,
                    now: Millis,
                ) -> Result<Option<i64>> {
                    let mut tx = self.write.begin().await?;
                    let ids: Vec<i64> =
                        sqlx::query_scalar("SELECT id FROM tests WHERE assignment_id = $1")
                            .bind(assignment_id)
                            .fetch_all(&mut *tx)
                            .await?;
                    let touched = Self::take_back(&mut tx, &ids, TakeBack::Release, now).await?;
                    tx.commit().await?;
                    Ok(touched.first().copied())
                }

                async fn append_logs(
                    &self,
                    assignment_id: &str,
                    first_seq: i64,
                    lines: &[String],
                ) -> Result<AppendOutcome> {
                    let mut tx = self.write.begin().await?;
                    let cursor: Option<LogCursorRow> = sqlx::query_as(concatcp!(
                        "SELECT id, testrun_id, attempt, log_seq, log_lines FROM tests \
                         WHERE assignment_id = $1 AND status = ", RUNNING, " ", $lock
                    ))
                    .bind(assignment_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(cursor) = cursor else {
                        return Ok(AppendOutcome::Refused);
                    };
                    let fresh = log::new_lines(cursor.log_seq, first_seq, lines)?;
                    if fresh.is_empty() {
                        return Ok(AppendOutcome::Stored {
                            last_seq: cursor.log_seq,
                            lines: Vec::new(),
                        });
                    }
                    let n = fresh.len() as i64;
                    let last_seq = cursor.log_seq + n;
                    sqlx::query(
                        "UPDATE tests SET log_seq = $2, log_lines = log_lines + $3 WHERE id = $1",
                    )
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
                    let texts: Vec<String> = fresh.iter().map(|l| log::sanitize(l)).collect();
                    Self::insert_lines(&mut tx, &cursor, run_start, &texts).await?;
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
                    // One transaction for every result that arrived together
                    // (see `engine::finisher`).
                    let mut tx = self.write.begin().await?;
                    Self::lock_results(&mut tx, results).await?;
                    let mut tests = Vec::with_capacity(results.len());
                    for (assignment_id, result) in results {
                        let row: Option<TestRow> = sqlx::query_as(concatcp!(
                            "UPDATE tests SET status = $2, exit_code = $3, error = $4, \
                                 duration_ms = $5, finished_at = $6, assignment_id = NULL \
                             WHERE assignment_id = $1 AND status = ", RUNNING,
                            " RETURNING ", TEST_COLUMNS
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
                    // History: every test that reached its final result.
                    Self::record_outcomes(&mut tx, &tests, now).await?;
                    let mut testruns = Vec::new();
                    for (testrun_id, tally) in tally_finished(&tests) {
                        let run = Self::recount(&mut tx, testrun_id, &tally).await?;
                        testruns.push(Self::settle(&mut tx, run, now).await?);
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
                    let mut tx = self.write.begin().await?;
                    let epoch: i64 = sqlx::query_scalar(
                        "INSERT INTO runners \
                             (id, name, slots, version, registered_at, lease_until, epoch, \
                              labels, token_name) \
                         VALUES ($1, $2, $3, $4, $8, $5, 1, $6, $7) \
                         ON CONFLICT (id) DO UPDATE SET name = $2, slots = $3, version = $4, \
                             lease_until = $5, epoch = runners.epoch + 1, labels = $6, \
                             token_name = $7 \
                         RETURNING epoch",
                    )
                    .bind(&runner.id)
                    .bind(&runner.name)
                    .bind(runner.slots)
                    .bind(&runner.version)
                    .bind(lease_until)
                    .bind(serde_json::to_string(&runner.labels).unwrap_or_else(|_| "{}".into()))
                    .bind(&runner.token_name)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    let rows: Vec<ResumeRow> = sqlx::query_as(concatcp!(
                        "SELECT assignment_id, testrun_id, name, \
                             (SELECT status FROM testruns r WHERE r.id = tests.testrun_id) = ",
                             CANCELLED_RUN, " AS cancelled \
                         FROM tests WHERE assignment_id ", $open, "$1", $close,
                        " AND runner_id = $2 AND status = ", RUNNING
                    ))
                    .bind(Self::list(resume))
                    .bind(&runner.id)
                    .fetch_all(&mut *tx)
                    .await?;
                    // Tests the database says this runner holds but the runner
                    // does not list: their Assign never reached it. Hand them
                    // back.
                    let orphans: Vec<i64> = sqlx::query_scalar(concatcp!(
                        "SELECT id FROM tests WHERE runner_id = $1 AND status = ", RUNNING,
                        " AND NOT (assignment_id ", $open, "$2", $close, ")"
                    ))
                    .bind(&runner.id)
                    .bind(Self::list(resume))
                    .fetch_all(&mut *tx)
                    .await?;
                    let requeued = Self::take_back(&mut tx, &orphans, TakeBack::Release, now).await?;
                    tx.commit().await?;
                    Ok(Registration {
                        epoch,
                        resumed: rows.into_iter().map(Resumed::from).collect(),
                        requeued,
                    })
                }

                async fn renew_lease(&self, runner_id: &str, lease_until: Millis) -> Result<()> {
                    sqlx::query(
                        "UPDATE runners SET lease_until = \
                             CASE WHEN lease_until < $2 THEN $2 ELSE lease_until END \
                         WHERE id = $1",
                    )
                    .bind(runner_id)
                    .bind(lease_until)
                    .execute(&self.write)
                    .await?;
                    Ok(())
                }

                async fn expire_leases(&self, now: Millis, max_attempts: i32) -> Result<Vec<i64>> {
                    let mut tx = self.write.begin().await?;
                    let ids: Vec<i64> = sqlx::query_scalar(concatcp!(
                        "SELECT id FROM tests WHERE status = ", RUNNING, " AND runner_id IN \
                             (SELECT id FROM runners WHERE lease_until < $1)"
                    ))
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                    let touched =
                        Self::take_back(&mut tx, &ids, TakeBack::Lost { max_attempts }, now)
                            .await?;
                    sqlx::query("DELETE FROM runners WHERE lease_until < $1 - 86400000")
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(touched)
                }

                async fn get_test(&self, test_id: i64) -> Result<Option<Test>> {
                    let row: Option<TestRow> = sqlx::query_as(concatcp!(
                        "SELECT ", TEST_COLUMNS, " FROM tests WHERE id = $1"
                    ))
                    .bind(test_id)
                    .fetch_optional(&self.read)
                    .await?;
                    row.map(TestRow::into_domain).transpose()
                }

                async fn find_test(&self, testrun_id: i64, name: &str) -> Result<Option<Test>> {
                    let row: Option<TestRow> = sqlx::query_as(concatcp!(
                        "SELECT ", TEST_COLUMNS, " FROM tests WHERE testrun_id = $1 AND name = $2"
                    ))
                    .bind(testrun_id)
                    .bind(name)
                    .fetch_optional(&self.read)
                    .await?;
                    row.map(TestRow::into_domain).transpose()
                }

                async fn read_run_log(
                    &self,
                    testrun_id: i64,
                    after: i64,
                    limit: i64,
                ) -> Result<Vec<LogLine>> {
                    let rows: Vec<LogLineRow> = sqlx::query_as(
                        "SELECT test_id, attempt, line_no, run_seq, line FROM log_lines \
                         WHERE testrun_id = $1 AND run_seq > $2 ORDER BY run_seq LIMIT $3",
                    )
                    .bind(testrun_id)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?;
                    Ok(rows.into_iter().map(LogLine::from).collect())
                }

                async fn read_test_log(
                    &self,
                    test_id: i64,
                    offset: i64,
                    limit: i64,
                ) -> Result<Vec<String>> {
                    Ok(sqlx::query_scalar(
                        "SELECT line FROM log_lines WHERE test_id = $1 AND line_no >= $2 \
                         ORDER BY line_no LIMIT $3",
                    )
                    .bind(test_id)
                    .bind(offset)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?)
                }

                async fn queue_stats(&self) -> Result<QueueStats> {
                    // Per selector (issue 16), so each runner pool scales on
                    // its own queue; the totals are their sums.
                    let rows: Vec<(String, i64, i64, Option<i64>)> =
                        sqlx::query_as(concatcp!(
                            "SELECT r.selector, \
                                 count(*) FILTER (WHERE t.status = ", QUEUED, "), \
                                 count(*) FILTER (WHERE t.status = ", RUNNING, "), \
                                 min(t.queued_at) FILTER (WHERE t.status = ", QUEUED, ") \
                             FROM tests t JOIN testruns r ON r.id = t.testrun_id \
                             WHERE t.status IN (", QUEUED, ", ", RUNNING, ") \
                             GROUP BY r.selector"
                        ))
                        .fetch_all(&self.read)
                        .await?;
                    Ok(QueueStats {
                        queued: rows.iter().map(|r| r.1).sum(),
                        running: rows.iter().map(|r| r.2).sum(),
                        oldest_queued_at: rows.iter().filter_map(|r| r.3).min(),
                        by_selector: rows
                            .into_iter()
                            .map(|(selector, queued, running, _)| SelectorQueue {
                                selector,
                                queued,
                                running,
                            })
                            .collect(),
                    })
                }

                async fn refresh_waiting(&self, now: Millis) -> Result<Vec<Testrun>> {
                    let labels: Vec<String> =
                        sqlx::query_scalar(
                            // A drained runner takes no tests: it covers no selector.
                            "SELECT labels FROM runners WHERE lease_until >= $1 AND drained_at IS NULL",
                        )
                            .bind(now)
                            .fetch_all(&self.read)
                            .await?;
                    let runners: Vec<Labels> = labels
                        .iter()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect();
                    // Open Testruns with a selector, and any that still says
                    // it waits (to clear it): two halves, each served by an
                    // index (by status; the partial one on `waiting`), since
                    // an OR of the two would read every Testrun ever.
                    let rows: Vec<TestrunRow> = sqlx::query_as(concatcp!(
                        "SELECT ", TESTRUN_COLUMNS, " FROM testruns \
                         WHERE status IN (", CREATED, ", ", RUNNING_RUN, ") AND selector <> '' \
                         UNION SELECT ", TESTRUN_COLUMNS, " FROM testruns WHERE waiting <> ''"
                    ))
                    .fetch_all(&self.read)
                    .await?;
                    let mut changed = Vec::new();
                    for row in rows {
                        let run = row.into_domain()?;
                        let reason = pools::waiting_reason(&run, &runners);
                        if reason == run.waiting {
                            continue;
                        }
                        // One row at a time, outside any transaction: it
                        // holds no other lock while it waits for this one.
                        let updated: Option<TestrunRow> = sqlx::query_as(concatcp!(
                            "UPDATE testruns SET waiting = $2 WHERE id = $1 AND waiting <> $2 \
                             RETURNING ", TESTRUN_COLUMNS
                        ))
                        .bind(run.id)
                        .bind(&reason)
                        .fetch_optional(&self.write)
                        .await?;
                        if let Some(row) = updated {
                            changed.push(row.into_domain()?);
                        }
                    }
                    Ok(changed)
                }

                fn shared_pool(&self) -> Option<sqlx::PgPool> {
                    self.shared()
                }
            }
        };
    };
}
