//! Test history (issue 16): what both stores write when tests end, and the
//! reads behind GetTestHistory, ListSuites and GetSuite. Written once as a
//! macro like `sql.rs`, expanded per backend with how a list binds.
//!
//! Writing (`record_outcomes`, in the transaction that stores a batch of
//! results, so history costs no transaction of its own): for the batch's
//! (suite, name) keys, in four set-based statements whatever the batch's
//! size,
//! 1. on Postgres only (`lock_history`), the keys' `test_stats` rows are
//!    created or touched in key order: a row lock per key, so two
//!    coordinators adding outcomes of the same test take turns (and cannot
//!    deadlock) and each sees the other's rows; SQLite's one writer needs
//!    none;
//! 2. an outcome row per test, `flipped` decided against the earlier ones
//!    on the same workspace;
//! 3. the oldest beyond `KEPT_OUTCOMES` per key are deleted (bounded);
//! 4. each key's median, samples and flips are recomputed from its kept
//!    rows (an upsert).
//!
//! Reading at creation is then one index seek per test (`insert_tests`).

use async_trait::async_trait;
use const_format::concatcp;

use crate::domain::Millis;
use crate::domain::history::{Outcome, Suite, SuiteSummary, TestHistory, TestStats};
use crate::error::Result;

/// History reads.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// A test's stats, its newest `limit` outcomes and the Testruns it
    /// flipped in; `None` when the suite has no such test.
    async fn test_history(
        &self,
        suite: &str,
        name: &str,
        limit: i64,
    ) -> Result<Option<TestHistory>>;
    /// Whether the suite has any history.
    async fn suite_exists(&self, suite: &str) -> Result<bool>;
    /// Suites most recently run first, after `(last_run_at, name)` when
    /// given.
    async fn list_suites(
        &self,
        after: Option<(Millis, String)>,
        limit: i64,
    ) -> Result<Vec<SuiteSummary>>;
    /// A suite's page; `None` when it has no history.
    async fn get_suite(&self, suite: &str, limit: i64) -> Result<Option<Suite>>;
}

/// Statuses that record an outcome: every final one but CANCELLED (a
/// cancelled test says nothing about the test). Written as what they are
/// not, so FLAKY (and any final status added later) is included.
pub(crate) const RECORDED: &str = " NOT IN ('QUEUED', 'RUNNING', 'CANCELLED')";
/// Verdicts a flip compares: passed-ish against failed-ish. ERROR (set-up
/// failures, lost runners) is the infrastructure's, never the test's.
pub(crate) const VERDICT: &str = " IN ('PASSED', 'FLAKY', 'FAILED', 'TIMED_OUT')";
pub(crate) const PASSED_ISH: &str = " IN ('PASSED', 'FLAKY')";
/// Outcomes whose duration is the test's own (TIMED_OUT is the limit's).
pub(crate) const TIMED: &str = " IN ('PASSED', 'FLAKY', 'FAILED')";

/// The columns of `OutcomeRow`.
pub(crate) const OUTCOME_COLUMNS: &str = "name, testrun_id, test_id, status, attempts, duration_ms, \
     runner_name, workspace, finished_at, flipped";

/// The columns of `StatsRow`.
pub(crate) const STATS_COLUMNS: &str = "name, median_ms, samples, flips, last_at";

/// A suite's tests with a median, longest first.
pub(crate) const SLOWEST: &str = concatcp!(
    "SELECT ",
    STATS_COLUMNS,
    " FROM test_stats WHERE suite = $1 AND median_ms IS NOT NULL \
     ORDER BY median_ms DESC, name LIMIT $2"
);
/// A suite's tests that flipped, most flips first.
pub(crate) const FLAKIEST: &str = concatcp!(
    "SELECT ",
    STATS_COLUMNS,
    " FROM test_stats WHERE suite = $1 AND flips > 0 ORDER BY flips DESC, name LIMIT $2"
);

/// A suite's summary row, `$1`-relative parts shared by the list and one
/// suite: grouped over `test_stats`.
pub(crate) const SUMMARY_SELECT: &str = "SELECT suite, COUNT(*) AS tests, \
         SUM(CASE WHEN flips > 0 THEN 1 ELSE 0 END) AS flaky_tests, \
         MAX(last_at) AS last_run_at, \
         (SELECT COUNT(*) FROM testruns r WHERE r.suite = test_stats.suite) AS testruns \
     FROM test_stats";

/// A median over the kept rows of each key (`kept` must be a CTE with
/// suite, name, status, duration_ms, flipped): the mean of the middle one
/// or two, in SQL both databases run (window functions, integer division).
pub(crate) const RECOMPUTE: &str = concatcp!(
    ", timed AS (SELECT suite, name, duration_ms, \
         ROW_NUMBER() OVER (PARTITION BY suite, name ORDER BY duration_ms) AS k, \
         COUNT(*) OVER (PARTITION BY suite, name) AS c \
       FROM kept WHERE duration_ms IS NOT NULL AND status",
    TIMED,
    "), medians AS (SELECT suite, name, SUM(duration_ms) / COUNT(*) AS median_ms, \
         MAX(c) AS samples \
       FROM timed WHERE k IN ((c + 1) / 2, (c + 2) / 2) GROUP BY suite, name), \
     totals AS (SELECT suite, name, COUNT(*) AS outcomes, \
         SUM(CASE WHEN flipped THEN 1 ELSE 0 END) AS flips FROM kept GROUP BY suite, name) \
     INSERT INTO test_stats (suite, name, median_ms, samples, flips, outcomes, last_at) \
     SELECT t.suite, t.name, m.median_ms, COALESCE(m.samples, 0), t.flips, t.outcomes, $2 \
     FROM totals t LEFT JOIN medians m ON m.suite = t.suite AND m.name = t.name WHERE true \
     ON CONFLICT (suite, name) DO UPDATE SET median_ms = excluded.median_ms, \
         samples = excluded.samples, flips = excluded.flips, outcomes = excluded.outcomes, \
         last_at = excluded.last_at"
);

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OutcomeRow {
    name: String,
    testrun_id: i64,
    test_id: i64,
    status: String,
    attempts: i32,
    duration_ms: Option<i64>,
    runner_name: Option<String>,
    workspace: Option<String>,
    finished_at: i64,
    flipped: bool,
}

impl OutcomeRow {
    pub(crate) fn into_domain(self) -> (String, Outcome) {
        (
            self.name,
            Outcome {
                testrun_id: self.testrun_id,
                test_id: self.test_id,
                status: self.status,
                attempts: self.attempts,
                duration_ms: self.duration_ms,
                runner_name: self.runner_name,
                workspace: self.workspace,
                finished_at: self.finished_at,
                flipped: self.flipped,
            },
        )
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StatsRow {
    pub(crate) name: String,
    median_ms: Option<i64>,
    samples: i32,
    flips: i32,
    last_at: i64,
}

impl From<StatsRow> for TestStats {
    fn from(r: StatsRow) -> Self {
        TestStats {
            name: r.name,
            median_ms: r.median_ms,
            samples: i64::from(r.samples),
            flips: i64::from(r.flips),
            last_at: r.last_at,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SummaryRow {
    suite: String,
    tests: i64,
    flaky_tests: Option<i64>,
    last_run_at: Option<i64>,
    testruns: i64,
}

impl From<SummaryRow> for SuiteSummary {
    fn from(r: SummaryRow) -> Self {
        SuiteSummary {
            name: r.suite,
            tests: r.tests,
            testruns: r.testruns,
            last_run_at: r.last_run_at.unwrap_or(0),
            flaky_tests: r.flaky_tests.unwrap_or(0),
        }
    }
}

/// A suite's tests with their kept outcomes (newest first, grouped by
/// name), as the page shows them.
pub(crate) fn suite_tests(
    stats: Vec<StatsRow>,
    outcomes: &[(String, Outcome)],
) -> Vec<crate::domain::history::SuiteTest> {
    use crate::domain::history::{LAST_OUTCOMES, SuiteTest, flipped_in};
    stats
        .into_iter()
        .map(|s| {
            let mine: Vec<Outcome> = outcomes
                .iter()
                .filter(|(n, _)| *n == s.name)
                .map(|(_, o)| o.clone())
                .collect();
            SuiteTest {
                flipped_in: flipped_in(&mine),
                last: mine.into_iter().take(LAST_OUTCOMES).collect(),
                stats: s.into(),
            }
        })
        .collect()
}

macro_rules! history_store {
    (
        $store:ty,
        $db:ty,
        in_list($open:literal, $close:literal)
    ) => {
        const _: () = {
            use async_trait::async_trait;
            use const_format::concatcp;
            use sqlx::Transaction;

            use crate::domain::history::{
                KEPT_OUTCOMES, SUITE_TESTRUNS, Suite, SuiteSummary, TestHistory, flipped_in, median,
            };
            use crate::domain::{Millis, Test};
            use crate::error::Result;
            use crate::store::history::{
                HistoryStore, OUTCOME_COLUMNS, OutcomeRow, PASSED_ISH, RECOMPUTE, RECORDED,
                FLAKIEST, SLOWEST, STATS_COLUMNS, SUMMARY_SELECT, StatsRow, SummaryRow, VERDICT, suite_tests,
            };
            use crate::store::rows::{TESTRUN_COLUMNS, TestrunRow};

            /// The distinct (suite, name) keys of the tests `$1`.
            const KEYS: &str = concatcp!(
                "SELECT DISTINCT r.suite, t.name FROM tests t JOIN testruns r ON r.id = t.testrun_id \
                 WHERE t.id ", $open, "$1", $close
            );

            impl $store {
                /// The median of a suite's tests' medians: what a test
                /// without history of its own is expected to take.
                async fn suite_median(
                    tx: &mut Transaction<'_, $db>,
                    suite: &str,
                ) -> Result<Option<i64>> {
                    let medians: Vec<i64> = sqlx::query_scalar(
                        "SELECT median_ms FROM test_stats \
                         WHERE suite = $1 AND median_ms IS NOT NULL ORDER BY median_ms",
                    )
                    .bind(suite)
                    .fetch_all(&mut **tx)
                    .await?;
                    Ok(median(&medians))
                }

                /// Records the outcome of every test in `tests` that reached
                /// a final result (see the module's comment).
                async fn record_outcomes(
                    tx: &mut Transaction<'_, $db>,
                    tests: &[Option<Test>],
                    now: Millis,
                ) -> Result<()> {
                    let ids: Vec<i64> = tests
                        .iter()
                        .flatten()
                        .filter(|t| {
                            t.status.is_terminal()
                                && t.status != crate::domain::TestStatus::Cancelled
                        })
                        .map(|t| t.id)
                        .collect();
                    if ids.is_empty() {
                        return Ok(());
                    }
                    // 1. Postgres: one row per key, locked in key order.
                    Self::lock_history(tx, &ids, now).await?;
                    // 2. The outcomes; a verdict that differs from an
                    // earlier one on the same workspace is a flip.
                    sqlx::query(concatcp!(
                        "INSERT INTO test_outcomes (suite, name, testrun_id, test_id, status, \
                             attempts, duration_ms, runner_name, workspace, finished_at, flipped) \
                         SELECT r.suite, t.name, t.testrun_id, t.id, t.status, t.attempt, \
                             t.duration_ms, t.runner_name, w.workspace, COALESCE(t.finished_at, $2), \
                             t.status = 'FLAKY' OR (w.workspace IS NOT NULL AND t.status", VERDICT,
                             " AND EXISTS (SELECT 1 FROM test_outcomes p \
                                 WHERE p.suite = r.suite AND p.name = t.name \
                                   AND p.workspace = w.workspace AND p.status", VERDICT,
                                 " AND (p.status", PASSED_ISH, ") <> (t.status", PASSED_ISH, "))) \
                         FROM tests t JOIN testruns r ON r.id = t.testrun_id \
                         LEFT JOIN testrun_workspaces w ON w.testrun_id = t.testrun_id \
                         WHERE t.id ", $open, "$1", $close, " AND t.status", RECORDED,
                        " ORDER BY t.id"
                    ))
                    .bind(Self::list(&ids))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                    // 3. Bounded: the newest KEPT_OUTCOMES per key stay.
                    sqlx::query(concatcp!(
                        "DELETE FROM test_outcomes WHERE id IN (SELECT id FROM \
                             (SELECT o.id, ROW_NUMBER() OVER \
                                  (PARTITION BY o.suite, o.name ORDER BY o.id DESC) AS rn \
                              FROM test_outcomes o JOIN (", KEYS, ") AS k \
                                  ON o.suite = k.suite AND o.name = k.name) AS ranked \
                         WHERE rn > $2)"
                    ))
                    .bind(Self::list(&ids))
                    .bind(KEPT_OUTCOMES)
                    .execute(&mut **tx)
                    .await?;
                    // 4. The keys' summaries from what is kept.
                    sqlx::query(concatcp!(
                        "WITH kept AS (SELECT o.suite, o.name, o.status, o.duration_ms, o.flipped \
                             FROM test_outcomes o JOIN (", KEYS, ") AS k \
                                 ON o.suite = k.suite AND o.name = k.name)",
                        RECOMPUTE
                    ))
                    .bind(Self::list(&ids))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                }

                async fn outcomes_of(
                    &self,
                    suite: &str,
                    names: &[String],
                ) -> Result<Vec<(String, crate::domain::history::Outcome)>> {
                    let rows: Vec<OutcomeRow> = sqlx::query_as(concatcp!(
                        "SELECT ", OUTCOME_COLUMNS, " FROM test_outcomes \
                         WHERE suite = $1 AND name ", $open, "$2", $close,
                        " ORDER BY name, id DESC"
                    ))
                    .bind(suite)
                    .bind(Self::list(names))
                    .fetch_all(&self.read)
                    .await?;
                    Ok(rows.into_iter().map(OutcomeRow::into_domain).collect())
                }

                /// A suite's test summaries by one of the two statements.
                async fn stats_by(
                    &self,
                    sql: &'static str,
                    suite: &str,
                    limit: i64,
                ) -> Result<Vec<StatsRow>> {
                    Ok(sqlx::query_as(sql)
                        .bind(suite)
                        .bind(limit)
                        .fetch_all(&self.read)
                        .await?)
                }
            }

            #[async_trait]
            impl HistoryStore for $store {
                async fn test_history(
                    &self,
                    suite: &str,
                    name: &str,
                    limit: i64,
                ) -> Result<Option<TestHistory>> {
                    let stats: Option<StatsRow> = sqlx::query_as(concatcp!(
                        "SELECT ", STATS_COLUMNS, " FROM test_stats WHERE suite = $1 AND name = $2"
                    ))
                    .bind(suite)
                    .bind(name)
                    .fetch_optional(&self.read)
                    .await?;
                    let Some(stats) = stats else { return Ok(None) };
                    let all: Vec<_> = self
                        .outcomes_of(suite, &[name.to_owned()])
                        .await?
                        .into_iter()
                        .map(|(_, o)| o)
                        .collect();
                    Ok(Some(TestHistory {
                        suite: suite.to_owned(),
                        stats: stats.into(),
                        flipped_in: flipped_in(&all),
                        outcomes: all.into_iter().take(limit.max(0) as usize).collect(),
                    }))
                }

                async fn suite_exists(&self, suite: &str) -> Result<bool> {
                    let one: Option<i32> =
                        sqlx::query_scalar("SELECT 1 FROM test_stats WHERE suite = $1 LIMIT 1")
                            .bind(suite)
                            .fetch_optional(&self.read)
                            .await?;
                    Ok(one.is_some())
                }

                async fn list_suites(
                    &self,
                    after: Option<(Millis, String)>,
                    limit: i64,
                ) -> Result<Vec<SuiteSummary>> {
                    // CASTs type the NULL parameters for Postgres.
                    let (at, name) = after.unzip();
                    let rows: Vec<SummaryRow> = sqlx::query_as(concatcp!(
                        SUMMARY_SELECT,
                        " GROUP BY suite \
                         HAVING CAST($1 AS BIGINT) IS NULL OR MAX(last_at) < $1 \
                             OR (MAX(last_at) = $1 AND suite > CAST($2 AS TEXT)) \
                         ORDER BY MAX(last_at) DESC, suite LIMIT $3"
                    ))
                    .bind(at)
                    .bind(name)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?;
                    Ok(rows.into_iter().map(SuiteSummary::from).collect())
                }

                async fn get_suite(&self, suite: &str, limit: i64) -> Result<Option<Suite>> {
                    let summary: Option<SummaryRow> = sqlx::query_as(concatcp!(
                        SUMMARY_SELECT, " WHERE suite = $1 GROUP BY suite"
                    ))
                    .bind(suite)
                    .fetch_optional(&self.read)
                    .await?;
                    let Some(summary) = summary else { return Ok(None) };
                    let slowest = self.stats_by(SLOWEST, suite, limit).await?;
                    let flakiest = self.stats_by(FLAKIEST, suite, limit).await?;
                    let mut names: Vec<String> = slowest
                        .iter()
                        .chain(&flakiest)
                        .map(|s| s.name.clone())
                        .collect();
                    names.sort_unstable();
                    names.dedup();
                    let outcomes = self.outcomes_of(suite, &names).await?;
                    let runs: Vec<TestrunRow> = sqlx::query_as(concatcp!(
                        "SELECT ", TESTRUN_COLUMNS,
                        " FROM testruns WHERE suite = $1 ORDER BY id DESC LIMIT $2"
                    ))
                    .bind(suite)
                    .bind(SUITE_TESTRUNS)
                    .fetch_all(&self.read)
                    .await?;
                    Ok(Some(Suite {
                        summary: summary.into(),
                        slowest: suite_tests(slowest, &outcomes),
                        flakiest: suite_tests(flakiest, &outcomes),
                        testruns: runs
                            .into_iter()
                            .map(TestrunRow::into_domain)
                            .collect::<Result<_>>()?,
                    }))
                }
            }
        };
    };
}
