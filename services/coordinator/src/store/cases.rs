//! Storage of JUnit test cases (issue 15): one more trait that both stores
//! implement, written once as a macro like `sql.rs` and expanded for each
//! backend; what differs is passed in: the row lock (`FOR UPDATE` on
//! Postgres, nothing under SQLite's single writer) and the substring
//! function (`strpos` against `instr`).
//!
//! A batch is stored like log lines: in one transaction that holds its
//! test's row (by its assignment id, so a moved test stores nothing), only
//! the cases past those already stored (a resend overlaps, never gaps), and
//! the test's counts and its Testrun's sums move by what was inserted.

use async_trait::async_trait;

use crate::domain::cases::{CaseCounts, CaseFilter, CaseStatus, NewCase, StoredCase};
use crate::domain::{Test, Testrun};
use crate::error::{Error, Result};

/// What storing a batch of cases did.
#[derive(Debug, Clone)]
pub enum CasesOutcome {
    /// Stored; every case below `next_index` is durable. `test` and
    /// `testrun` are as they are after it.
    Stored {
        next_index: i64,
        inserted: usize,
        test: Box<Test>,
        testrun: Box<Testrun>,
    },
    /// The assignment is no longer current; nothing was stored.
    Refused,
}

/// Case storage operations.
#[async_trait]
pub trait CaseStore: Send + Sync {
    /// Stores a batch of an assignment's cases (each carrying its index in
    /// the report, from `first_index` on) and the report's note if not
    /// empty, ignoring cases it has.
    async fn store_cases(
        &self,
        assignment_id: &str,
        first_index: i64,
        cases: &[NewCase],
        note: &str,
    ) -> Result<CasesOutcome>;
    /// A page of a Testrun's cases: failed and errored first, then by name.
    async fn list_cases(
        &self,
        testrun_id: i64,
        filter: &CaseFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<StoredCase>>;
}

/// Rows per INSERT: 17 parameters each stays under both databases' limit
/// on bound parameters (65,535 and 32,766).
const INSERT_CHUNK: usize = 1_000;

/// The columns of `CaseRow`, as `list_cases` selects them.
const CASE_COLUMNS: &str = "c.test_id, t.name AS test_name, c.attempt, c.idx, c.status, c.suite, \
     c.classname, c.name, c.file, c.line, c.duration_ms, c.message, c.details, c.system_out, \
     c.system_err";

/// A stored case row.
#[derive(Debug, sqlx::FromRow)]
struct CaseRow {
    test_id: i64,
    test_name: String,
    attempt: i32,
    idx: i32,
    status: String,
    suite: String,
    classname: String,
    name: String,
    file: String,
    line: Option<i32>,
    duration_ms: Option<i64>,
    message: String,
    details: String,
    system_out: String,
    system_err: String,
}

impl CaseRow {
    fn into_domain(self) -> Result<StoredCase> {
        let status = CaseStatus::parse(&self.status).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "test_cases.status holds {:?}, which no code writes",
                self.status
            ))
        })?;
        Ok(StoredCase {
            test_id: self.test_id,
            test_name: self.test_name,
            attempt: self.attempt,
            case: NewCase {
                index: i64::from(self.idx),
                status,
                suite: self.suite,
                classname: self.classname,
                name: self.name,
                file: self.file,
                line: self.line,
                duration_ms: self.duration_ms,
                message: self.message,
                details: self.details,
                system_out: self.system_out,
                system_err: self.system_err,
            },
        })
    }
}

/// A test's case state, read under its row lock before storing a batch.
#[derive(Debug, sqlx::FromRow)]
struct CaseCursorRow {
    id: i64,
    testrun_id: i64,
    attempt: i32,
    cases_attempt: i32,
    cases_total: i64,
    cases_passed: i64,
    cases_failed: i64,
    cases_errored: i64,
    cases_skipped: i64,
}

impl CaseCursorRow {
    /// The counts that stand for the current attempt: none if what is
    /// stored is an earlier attempt's.
    fn current(&self) -> CaseCounts {
        if self.cases_attempt != self.attempt {
            return CaseCounts::default();
        }
        CaseCounts {
            total: self.cases_total,
            passed: self.cases_passed,
            failed: self.cases_failed,
            errored: self.cases_errored,
            skipped: self.cases_skipped,
        }
    }

    fn stored(&self) -> CaseCounts {
        CaseCounts {
            total: self.cases_total,
            passed: self.cases_passed,
            failed: self.cases_failed,
            errored: self.cases_errored,
            skipped: self.cases_skipped,
        }
    }
}

fn add(a: CaseCounts, b: CaseCounts) -> CaseCounts {
    CaseCounts {
        total: a.total + b.total,
        passed: a.passed + b.passed,
        failed: a.failed + b.failed,
        errored: a.errored + b.errored,
        skipped: a.skipped + b.skipped,
    }
}

fn sub(a: CaseCounts, b: CaseCounts) -> CaseCounts {
    CaseCounts {
        total: a.total - b.total,
        passed: a.passed - b.passed,
        failed: a.failed - b.failed,
        errored: a.errored - b.errored,
        skipped: a.skipped - b.skipped,
    }
}

macro_rules! case_store {
    ($store:ty, $db:ty, lock($lock:literal), contains($contains:literal)) => {
        const _: () = {
            use const_format::concatcp;
            use sqlx::{QueryBuilder, Transaction};

            use crate::store::rows::{RUNNING, TEST_COLUMNS, TESTRUN_COLUMNS, TestRow, TestrunRow};

            impl $store {
                async fn insert_cases(
                    tx: &mut Transaction<'_, $db>,
                    cursor: &CaseCursorRow,
                    cases: &[NewCase],
                ) -> Result<()> {
                    for chunk in cases.chunks(INSERT_CHUNK) {
                        let mut insert = QueryBuilder::<$db>::new(
                            "INSERT INTO test_cases (test_id, testrun_id, attempt, idx, status, \
                             rank, suite, classname, name, file, line, duration_ms, message, \
                             details, system_out, system_err) ",
                        );
                        insert.push_values(chunk, |mut row, c| {
                            row.push_bind(cursor.id)
                                .push_bind(cursor.testrun_id)
                                .push_bind(cursor.attempt)
                                .push_bind(c.index as i32)
                                .push_bind(c.status.as_str())
                                .push_bind(c.status.rank())
                                .push_bind(&c.suite)
                                .push_bind(&c.classname)
                                .push_bind(&c.name)
                                .push_bind(&c.file)
                                .push_bind(c.line)
                                .push_bind(c.duration_ms)
                                .push_bind(&c.message)
                                .push_bind(&c.details)
                                .push_bind(&c.system_out)
                                .push_bind(&c.system_err);
                        });
                        // The key holds even if two batches raced past the
                        // cursor (they cannot: the row lock orders them).
                        insert.push(" ON CONFLICT DO NOTHING");
                        insert.build().execute(&mut **tx).await?;
                    }
                    Ok(())
                }
            }

            #[async_trait]
            impl CaseStore for $store {
                async fn store_cases(
                    &self,
                    assignment_id: &str,
                    first_index: i64,
                    cases: &[NewCase],
                    note: &str,
                ) -> Result<CasesOutcome> {
                    let mut tx = self.write.begin().await?;
                    let cursor: Option<CaseCursorRow> = sqlx::query_as(concatcp!(
                        "SELECT id, testrun_id, attempt, cases_attempt, cases_total, \
                             cases_passed, cases_failed, cases_errored, cases_skipped \
                         FROM tests WHERE assignment_id = $1 AND status = ", RUNNING, " ", $lock
                    ))
                    .bind(assignment_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(cursor) = cursor else {
                        return Ok(CasesOutcome::Refused);
                    };
                    // A newer attempt's first batch starts its counts from
                    // zero; the earlier attempts' cases stay (each row names
                    // its attempt), as their log lines do.
                    let base = cursor.current();
                    if first_index > base.total {
                        return Err(Error::FailedPrecondition(format!(
                            "cases.first_index: {first_index} leaves a gap after the {} cases \
                             stored",
                            base.total
                        )));
                    }
                    let fresh: Vec<NewCase> = cases
                        .iter()
                        .filter(|c| c.index >= base.total)
                        .cloned()
                        .collect();
                    Self::insert_cases(&mut tx, &cursor, &fresh).await?;
                    let now = add(base, CaseCounts::of(fresh.iter().map(|c| c.status)));
                    let delta = sub(now, cursor.stored());
                    let test: TestRow = sqlx::query_as(concatcp!(
                        "UPDATE tests SET cases_attempt = attempt, cases_total = $2, \
                             cases_passed = $3, cases_failed = $4, cases_errored = $5, \
                             cases_skipped = $6, \
                             case_note = CASE WHEN $7 = '' THEN case_note ELSE $7 END \
                         WHERE id = $1 RETURNING ", TEST_COLUMNS
                    ))
                    .bind(cursor.id)
                    .bind(now.total)
                    .bind(now.passed)
                    .bind(now.failed)
                    .bind(now.errored)
                    .bind(now.skipped)
                    .bind(note)
                    .fetch_one(&mut *tx)
                    .await?;
                    let testrun: TestrunRow = sqlx::query_as(concatcp!(
                        "UPDATE testruns SET cases_total = cases_total + $2, \
                             cases_passed = cases_passed + $3, cases_failed = cases_failed + $4, \
                             cases_errored = cases_errored + $5, \
                             cases_skipped = cases_skipped + $6 \
                         WHERE id = $1 RETURNING ", TESTRUN_COLUMNS
                    ))
                    .bind(cursor.testrun_id)
                    .bind(delta.total)
                    .bind(delta.passed)
                    .bind(delta.failed)
                    .bind(delta.errored)
                    .bind(delta.skipped)
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(CasesOutcome::Stored {
                        next_index: now.total,
                        inserted: fresh.len(),
                        test: Box::new(test.into_domain()?),
                        testrun: Box::new(testrun.into_domain()?),
                    })
                }

                async fn list_cases(
                    &self,
                    testrun_id: i64,
                    filter: &CaseFilter,
                    offset: i64,
                    limit: i64,
                ) -> Result<Vec<StoredCase>> {
                    // CASTs type the NULL parameters for Postgres.
                    let rows: Vec<CaseRow> = sqlx::query_as(concatcp!(
                        "SELECT ", CASE_COLUMNS, " FROM test_cases c \
                         JOIN tests t ON t.id = c.test_id \
                         WHERE c.testrun_id = $1 \
                             AND (CAST($2 AS BIGINT) IS NULL OR c.test_id = $2) \
                             AND (CAST($3 AS TEXT) IS NULL OR c.status = $3) \
                             AND (CAST($4 AS TEXT) IS NULL OR ", $contains, "(c.name, $4) > 0 \
                                 OR ", $contains, "(c.classname, $4) > 0) \
                         ORDER BY c.rank, c.name, c.test_id, c.idx LIMIT $5 OFFSET $6"
                    ))
                    .bind(testrun_id)
                    .bind(filter.test_id)
                    .bind(filter.status.map(CaseStatus::as_str))
                    .bind(filter.name_contains.as_deref())
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&self.read)
                    .await?;
                    rows.into_iter().map(CaseRow::into_domain).collect()
                }
            }
        };
    };
}

case_store!(
    super::postgres::PgStore,
    sqlx::Postgres,
    lock("FOR UPDATE"),
    contains("strpos")
);
case_store!(
    super::sqlite::SqliteStore,
    sqlx::Sqlite,
    lock(""),
    contains("instr")
);
