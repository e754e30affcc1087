//! Blobs, workspaces and set-ups in the database (migration 0030).
//!
//! Blobs live as chunked rows (`blob_chunks`, at most 1 MiB each) in the
//! one database every coordinator already reaches: no new service, and a
//! blob is never whole in memory. An upload writes chunks of a row whose
//! `complete` is false (invisible to everyone) and flips it only after the
//! bytes, read back chunk by chunk, hash to the digest. Uploads of one blob
//! share its row, so two clients uploading it at once both advance one
//! copy. `blob_content!` expands the statements once per backend, as
//! `sql_store!` does, with the row-lock clause Postgres needs.

use async_trait::async_trait;

use crate::domain::Millis;
use crate::domain::workspace::{Setup, SetupEnd, TestrunWorkspace};
use crate::error::Result;

/// Where a chunked upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadState {
    /// Bytes stored contiguously from 0.
    pub committed: i64,
    /// Stored, verified and visible.
    pub complete: bool,
}

/// What collecting unreferenced blobs removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    pub workspaces: u64,
    pub blobs: u64,
}

/// Storage of blobs, the trees Testruns pin, and set-up steps.
#[async_trait]
pub trait ContentStore: Send + Sync {
    /// The keys among `keys` that are not stored complete; the present
    /// ones are touched (their grace restarts).
    async fn find_missing(&self, keys: &[String], now: Millis) -> Result<Vec<String>>;
    /// Stores a whole blob the caller has verified. Idempotent.
    async fn put_blob(&self, key: &str, data: &[u8], now: Millis) -> Result<()>;
    /// Stores the part of `data` (at `offset`) past what is committed.
    /// `Err(OutOfRange)` for a gap, `Err(InvalidArgument)` past the size.
    async fn write_chunk(
        &self,
        key: &str,
        size_bytes: i64,
        offset: i64,
        data: &[u8],
        now: Millis,
    ) -> Result<UploadState>;
    /// The chunk holding byte `offset` (its start and bytes), of a complete
    /// blob or, with `incomplete`, of one being uploaded.
    async fn read_chunk(
        &self,
        key: &str,
        offset: i64,
        incomplete: bool,
    ) -> Result<Option<(i64, Vec<u8>)>>;
    /// Whether the blob is stored complete.
    async fn blob_complete(&self, key: &str) -> Result<bool>;
    /// Makes a fully uploaded, verified blob visible.
    async fn mark_complete(&self, key: &str, now: Millis) -> Result<()>;
    /// Drops an upload whose bytes did not verify.
    async fn drop_upload(&self, key: &str) -> Result<()>;
    /// (files, bytes) of a tree recorded by an earlier Testrun.
    async fn known_workspace(&self, key: &str) -> Result<Option<(i64, i64)>>;
    /// The workspace, set-up and env of a Testrun, if it has any.
    async fn testrun_workspace(&self, testrun_id: i64) -> Result<Option<TestrunWorkspace>>;
    /// Deletes trees no Testrun uses and blobs no tree holds, both untouched
    /// since `cutoff` (uploads in progress included).
    async fn collect_garbage(&self, cutoff: Millis) -> Result<Collected>;

    /// Records that a runner began preparing a Testrun (a new attempt
    /// replaces an earlier row of the same runner).
    async fn setup_started(
        &self,
        testrun_id: i64,
        runner_id: &str,
        runner_name: &str,
        now: Millis,
    ) -> Result<Setup>;
    /// Records how a runner's set-up ended.
    async fn setup_finished(
        &self,
        testrun_id: i64,
        runner_id: &str,
        runner_name: &str,
        end: &SetupEnd,
        now: Millis,
    ) -> Result<Setup>;
    /// The set-ups of a Testrun, in the order they started.
    async fn setups_of(&self, testrun_id: i64) -> Result<Vec<Setup>>;
    /// Testruns with QUEUED tests that every live runner (lease not run
    /// out) failed to set up, each with the error naming one failure.
    async fn stranded_by_setup(&self, now: Millis) -> Result<Vec<(i64, String)>>;
    /// Ends the QUEUED tests of a Testrun ERROR with `error`; returns how
    /// many.
    async fn error_queued_tests(&self, testrun_id: i64, error: &str, now: Millis) -> Result<u64>;
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct SetupRow {
    testrun_id: i64,
    runner_id: String,
    runner_name: String,
    status: String,
    exit_code: Option<i32>,
    duration_ms: Option<i64>,
    error: String,
    output: String,
    reused: bool,
    started_at: i64,
    finished_at: Option<i64>,
}

pub(super) const SETUP_COLUMNS: &str = "testrun_id, runner_id, runner_name, status, exit_code, \
     duration_ms, error, output, reused, started_at, finished_at";

impl SetupRow {
    pub(super) fn into_domain(self) -> Setup {
        Setup {
            testrun_id: self.testrun_id,
            runner_id: self.runner_id,
            runner_name: self.runner_name,
            status: crate::domain::workspace::SetupStatus::parse(&self.status),
            exit_code: self.exit_code,
            duration_ms: self.duration_ms,
            error: self.error,
            output: self.output,
            reused: self.reused,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

/// The part of `data` at `offset` that lies past `committed`, or why not.
pub(super) fn new_part(size_bytes: i64, committed: i64, offset: i64, data: &[u8]) -> Result<&[u8]> {
    use crate::error::Error;
    if offset < 0 {
        return Err(Error::invalid("offset", "must not be negative"));
    }
    if offset > committed {
        return Err(Error::OutOfRange(format!(
            "offset: {offset} leaves a gap after the {committed} bytes stored; resume at {committed}"
        )));
    }
    let end = offset + data.len() as i64;
    if end > size_bytes {
        return Err(Error::invalid(
            "data",
            format!("ends at byte {end}, past the blob's size {size_bytes}"),
        ));
    }
    if end <= committed {
        return Ok(&[]);
    }
    Ok(&data[(committed - offset) as usize..])
}

/// Expands `ContentStore` for one backend (see `sql_store!` for the
/// fragments).
macro_rules! blob_content {
    (
        $store:ty,
        $db:ty,
        in_list($open:literal, $close:literal),
        each($each_open:literal, $each_close:literal),
        lock($lock:literal)
    ) => {
        const _: () = {
            use async_trait::async_trait;
            use const_format::concatcp;
            use sqlx::Transaction;

            use crate::domain::Millis;
            use crate::domain::workspace::{
                NewWorkspace, Setup, SetupEnd, SetupStatus, TestrunWorkspace, WorkspaceRef,
            };
            use crate::error::{Error, Result};
            use crate::store::content::{
                Collected, ContentStore, SETUP_COLUMNS, SetupRow, UploadState, new_part,
            };
            use crate::store::rows::{ERROR, QUEUED, Tally};

            const CHUNK: usize = testrunner_content::CHUNK_BYTES;

            impl $store {
                /// Records a new Testrun's workspace, set-up and env.
                pub(super) async fn insert_workspace(
                    tx: &mut Transaction<'_, $db>,
                    testrun_id: i64,
                    ws: &NewWorkspace,
                    now: Millis,
                ) -> Result<()> {
                    let s = &ws.settings;
                    if let Some(w) = &s.workspace {
                        // The upsert takes the row's lock: a collector
                        // deleting it waits for this commit, then sees the
                        // fresh touch and keeps it.
                        sqlx::query(
                            "INSERT INTO workspaces (digest, files, bytes, touched_at) \
                             VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (digest) DO UPDATE SET touched_at = $4",
                        )
                        .bind(&w.digest)
                        .bind(w.files)
                        .bind(w.bytes)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                        let recorded: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM workspace_blobs WHERE workspace = $1",
                        )
                        .bind(&w.digest)
                        .fetch_one(&mut **tx)
                        .await?;
                        if recorded == 0 {
                            for part in ws.blobs.chunks(10_000) {
                                sqlx::query(concatcp!(
                                    "INSERT INTO workspace_blobs (workspace, blob) \
                                     SELECT $1, value FROM ", $each_open, "$2", $each_close,
                                    // WHERE: SQLite's parser needs it before
                                    // ON CONFLICT in an INSERT ... SELECT.
                                    " WHERE TRUE ON CONFLICT DO NOTHING"
                                ))
                                .bind(&w.digest)
                                .bind(Self::list(part))
                                .execute(&mut **tx)
                                .await?;
                            }
                        }
                    }
                    let env = serde_json::to_string(&s.env).expect("a map of texts serializes");
                    sqlx::query(
                        "INSERT INTO testrun_workspaces \
                             (testrun_id, workspace, setup, env, setup_timeout_ms) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(testrun_id)
                    .bind(s.workspace.as_ref().map(|w| w.digest.clone()))
                    .bind(&s.setup)
                    .bind(env)
                    .bind(s.setup_timeout_ms)
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                }

                async fn insert_chunks(
                    tx: &mut Transaction<'_, $db>,
                    key: &str,
                    start: i64,
                    data: &[u8],
                ) -> Result<()> {
                    let mut at = start;
                    for piece in data.chunks(CHUNK) {
                        sqlx::query(
                            "INSERT INTO blob_chunks (digest, start, data) VALUES ($1, $2, $3)",
                        )
                        .bind(key)
                        .bind(at)
                        .bind(piece)
                        .execute(&mut **tx)
                        .await?;
                        at += piece.len() as i64;
                    }
                    Ok(())
                }
            }

            #[async_trait]
            impl ContentStore for $store {
                async fn find_missing(&self, keys: &[String], now: Millis) -> Result<Vec<String>> {
                    let present: Vec<String> = sqlx::query_scalar(concatcp!(
                        "UPDATE blobs SET touched_at = $2 WHERE complete AND digest ",
                        $open, "$1", $close, " RETURNING digest"
                    ))
                    .bind(Self::list(keys))
                    .bind(now)
                    .fetch_all(&self.write)
                    .await?;
                    let present: std::collections::HashSet<String> = present.into_iter().collect();
                    Ok(keys.iter().filter(|k| !present.contains(*k)).cloned().collect())
                }

                async fn put_blob(&self, key: &str, data: &[u8], now: Millis) -> Result<()> {
                    let mut tx = self.write.begin().await?;
                    sqlx::query(
                        "INSERT INTO blobs (digest, size_bytes, touched_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (digest) DO NOTHING",
                    )
                    .bind(key)
                    .bind(data.len() as i64)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let complete: bool = sqlx::query_scalar(concatcp!(
                        "SELECT complete FROM blobs WHERE digest = $1 ", $lock
                    ))
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                    if !complete {
                        // A chunked upload of the same blob may be midway:
                        // its chunks give way to the whole verified bytes.
                        sqlx::query("DELETE FROM blob_chunks WHERE digest = $1")
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                        Self::insert_chunks(&mut tx, key, 0, data).await?;
                    }
                    sqlx::query(
                        "UPDATE blobs SET complete = TRUE, committed = size_bytes, touched_at = $2 \
                         WHERE digest = $1",
                    )
                    .bind(key)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn write_chunk(
                    &self,
                    key: &str,
                    size_bytes: i64,
                    offset: i64,
                    data: &[u8],
                    now: Millis,
                ) -> Result<UploadState> {
                    let mut tx = self.write.begin().await?;
                    sqlx::query(
                        "INSERT INTO blobs (digest, size_bytes, touched_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (digest) DO NOTHING",
                    )
                    .bind(key)
                    .bind(size_bytes)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let (committed, complete): (i64, bool) = sqlx::query_as(concatcp!(
                        "SELECT committed, complete FROM blobs WHERE digest = $1 ", $lock
                    ))
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                    if complete {
                        return Ok(UploadState { committed, complete });
                    }
                    let part = new_part(size_bytes, committed, offset, data)?;
                    let committed = if part.is_empty() {
                        committed
                    } else {
                        Self::insert_chunks(&mut tx, key, committed, part).await?;
                        committed + part.len() as i64
                    };
                    sqlx::query("UPDATE blobs SET committed = $2, touched_at = $3 WHERE digest = $1")
                        .bind(key)
                        .bind(committed)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(UploadState {
                        committed,
                        complete: false,
                    })
                }

                async fn read_chunk(
                    &self,
                    key: &str,
                    offset: i64,
                    incomplete: bool,
                ) -> Result<Option<(i64, Vec<u8>)>> {
                    // Reads go to the writer's pool when verifying: the
                    // chunks were just committed there.
                    let pool = if incomplete { &self.write } else { &self.read };
                    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
                        "SELECT c.start, c.data FROM blob_chunks c \
                         JOIN blobs b ON b.digest = c.digest \
                         WHERE c.digest = $1 AND c.start <= $2 AND (b.complete OR $3) \
                         ORDER BY c.start DESC LIMIT 1",
                    )
                    .bind(key)
                    .bind(offset)
                    .bind(incomplete)
                    .fetch_optional(pool)
                    .await?;
                    Ok(row.filter(|(start, data)| offset < start + data.len() as i64))
                }

                async fn blob_complete(&self, key: &str) -> Result<bool> {
                    let complete: Option<bool> =
                        sqlx::query_scalar("SELECT complete FROM blobs WHERE digest = $1")
                            .bind(key)
                            .fetch_optional(&self.read)
                            .await?;
                    Ok(complete.unwrap_or(false))
                }

                async fn mark_complete(&self, key: &str, now: Millis) -> Result<()> {
                    sqlx::query(
                        "UPDATE blobs SET complete = TRUE, touched_at = $2 \
                         WHERE digest = $1 AND committed = size_bytes",
                    )
                    .bind(key)
                    .bind(now)
                    .execute(&self.write)
                    .await?;
                    Ok(())
                }

                async fn drop_upload(&self, key: &str) -> Result<()> {
                    let mut tx = self.write.begin().await?;
                    sqlx::query("DELETE FROM blob_chunks WHERE digest = $1 AND EXISTS \
                                 (SELECT 1 FROM blobs WHERE digest = $1 AND NOT complete)")
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM blobs WHERE digest = $1 AND NOT complete")
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn known_workspace(&self, key: &str) -> Result<Option<(i64, i64)>> {
                    Ok(sqlx::query_as(
                        "SELECT w.files, w.bytes FROM workspaces w WHERE w.digest = $1 \
                         AND EXISTS (SELECT 1 FROM workspace_blobs wb WHERE wb.workspace = w.digest)",
                    )
                    .bind(key)
                    .fetch_optional(&self.read)
                    .await?)
                }

                async fn testrun_workspace(&self, testrun_id: i64) -> Result<Option<TestrunWorkspace>> {
                    let row: Option<(Option<String>, Option<String>, String, i64, Option<i64>, Option<i64>)> =
                        sqlx::query_as(
                            "SELECT t.workspace, t.setup, t.env, t.setup_timeout_ms, w.files, w.bytes \
                             FROM testrun_workspaces t LEFT JOIN workspaces w ON w.digest = t.workspace \
                             WHERE t.testrun_id = $1",
                        )
                        .bind(testrun_id)
                        .fetch_optional(&self.read)
                        .await?;
                    let Some((workspace, setup, env, setup_timeout_ms, files, bytes)) = row else {
                        return Ok(None);
                    };
                    let env = serde_json::from_str(&env).map_err(|e| {
                        Error::Internal(anyhow::anyhow!("testrun {testrun_id}: stored env: {e}"))
                    })?;
                    Ok(Some(TestrunWorkspace {
                        workspace: workspace.map(|digest| WorkspaceRef {
                            digest,
                            files: files.unwrap_or(0),
                            bytes: bytes.unwrap_or(0),
                        }),
                        setup,
                        env,
                        setup_timeout_ms,
                    }))
                }

                async fn collect_garbage(&self, cutoff: Millis) -> Result<Collected> {
                    let mut tx = self.write.begin().await?;
                    let gone: Vec<String> = sqlx::query_scalar(
                        "DELETE FROM workspaces WHERE touched_at < $1 AND NOT EXISTS \
                         (SELECT 1 FROM testrun_workspaces t WHERE t.workspace = workspaces.digest) \
                         RETURNING digest",
                    )
                    .bind(cutoff)
                    .fetch_all(&mut *tx)
                    .await?;
                    sqlx::query(concatcp!(
                        "DELETE FROM workspace_blobs WHERE workspace ", $open, "$1", $close
                    ))
                    .bind(Self::list(&gone))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    let mut tx = self.write.begin().await?;
                    let blobs: Vec<String> = sqlx::query_scalar(
                        "DELETE FROM blobs WHERE touched_at < $1 AND NOT EXISTS \
                         (SELECT 1 FROM workspace_blobs wb WHERE wb.blob = blobs.digest) \
                         RETURNING digest",
                    )
                    .bind(cutoff)
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(Collected {
                        workspaces: gone.len() as u64,
                        blobs: blobs.len() as u64,
                    })
                }

                async fn setup_started(
                    &self,
                    testrun_id: i64,
                    runner_id: &str,
                    runner_name: &str,
                    now: Millis,
                ) -> Result<Setup> {
                    let row: SetupRow = sqlx::query_as(concatcp!(
                        "INSERT INTO setups (testrun_id, runner_id, runner_name, status, started_at) \
                         VALUES ($1, $2, $3, 'RUNNING', $4) \
                         ON CONFLICT (testrun_id, runner_id) DO UPDATE SET \
                             runner_name = $3, status = 'RUNNING', exit_code = NULL, \
                             duration_ms = NULL, error = '', output = '', reused = FALSE, \
                             started_at = $4, finished_at = NULL \
                         RETURNING ", SETUP_COLUMNS
                    ))
                    .bind(testrun_id)
                    .bind(runner_id)
                    .bind(runner_name)
                    .bind(now)
                    .fetch_one(&self.write)
                    .await?;
                    Ok(row.into_domain())
                }

                async fn setup_finished(
                    &self,
                    testrun_id: i64,
                    runner_id: &str,
                    runner_name: &str,
                    end: &SetupEnd,
                    now: Millis,
                ) -> Result<Setup> {
                    let status = if end.ok { SetupStatus::Passed } else { SetupStatus::Failed };
                    // A resend after a reconnect finds its row already ended
                    // and writes the same values again.
                    let row: SetupRow = sqlx::query_as(concatcp!(
                        "INSERT INTO setups (testrun_id, runner_id, runner_name, status, exit_code, \
                             duration_ms, error, output, reused, started_at, finished_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10 - $6, $10) \
                         ON CONFLICT (testrun_id, runner_id) DO UPDATE SET \
                             runner_name = $3, status = $4, exit_code = $5, duration_ms = $6, \
                             error = $7, output = $8, reused = $9, finished_at = $10 \
                         RETURNING ", SETUP_COLUMNS
                    ))
                    .bind(testrun_id)
                    .bind(runner_id)
                    .bind(runner_name)
                    .bind(status.sql())
                    .bind(end.exit_code)
                    .bind(end.duration_ms)
                    .bind(&end.error)
                    .bind(&end.output)
                    .bind(end.reused)
                    .bind(now)
                    .fetch_one(&self.write)
                    .await?;
                    Ok(row.into_domain())
                }

                async fn setups_of(&self, testrun_id: i64) -> Result<Vec<Setup>> {
                    let rows: Vec<SetupRow> = sqlx::query_as(concatcp!(
                        "SELECT ", SETUP_COLUMNS,
                        " FROM setups WHERE testrun_id = $1 ORDER BY started_at, runner_name"
                    ))
                    .bind(testrun_id)
                    .fetch_all(&self.read)
                    .await?;
                    Ok(rows.into_iter().map(SetupRow::into_domain).collect())
                }

                async fn stranded_by_setup(&self, now: Millis) -> Result<Vec<(i64, String)>> {
                    let rows: Vec<SetupRow> = sqlx::query_as(concatcp!(
                        "SELECT ", SETUP_COLUMNS, " FROM setups s WHERE s.status = 'FAILED' \
                         AND EXISTS (SELECT 1 FROM tests t WHERE t.testrun_id = s.testrun_id \
                             AND t.status = ", QUEUED, ") \
                         AND NOT EXISTS (SELECT 1 FROM runners r WHERE r.lease_until > $1 \
                             AND NOT EXISTS (SELECT 1 FROM setups f WHERE f.testrun_id = s.testrun_id \
                                 AND f.runner_id = r.id AND f.status = 'FAILED')) \
                         ORDER BY s.testrun_id, s.finished_at"
                    ))
                    .bind(now)
                    .fetch_all(&self.write)
                    .await?;
                    let mut out: Vec<(i64, String)> = Vec::new();
                    for row in rows {
                        let setup = row.into_domain();
                        if out.last().map(|(id, _)| *id) != Some(setup.testrun_id) {
                            out.push((setup.testrun_id, setup.failure_message()));
                        }
                    }
                    Ok(out)
                }

                async fn error_queued_tests(
                    &self,
                    testrun_id: i64,
                    error: &str,
                    now: Millis,
                ) -> Result<u64> {
                    // Counted and settled like any other ending, so the
                    // Testrun's counters and status follow the usual rules.
                    let mut tx = self.write.begin().await?;
                    Self::lock_tests_of(&mut tx, testrun_id).await?;
                    let n = sqlx::query(concatcp!(
                        "UPDATE tests SET status = ", ERROR, ", error = $2, finished_at = $3 \
                         WHERE testrun_id = $1 AND status = ", QUEUED
                    ))
                    .bind(testrun_id)
                    .bind(error)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n > 0 {
                        let tally = Tally { failed: n as i64, ..Tally::default() };
                        let run = Self::recount(&mut tx, testrun_id, &tally).await?;
                        Self::settle(&mut tx, run, now).await?;
                    }
                    tx.commit().await?;
                    Ok(n)
                }
            }
        };
    };
}
