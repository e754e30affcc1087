//! Storage of the runner fleet as operators see it (issue 17): the
//! runners whose lease runs, drains, and runner tokens. One more trait
//! both stores implement, written once as a macro like `sql.rs` and
//! expanded in `postgres.rs` and `sqlite.rs`; nothing in it differs
//! between the backends.
//!
//! Drain and revocation are rows, not a coordinator's memory: every
//! coordinator on one database reads them (in claims, and at each
//! session's heartbeat tick), whichever one an operator asked.

use async_trait::async_trait;

use crate::domain::Millis;
use crate::domain::RunnerInfo;
use crate::domain::fleet::{RunnerTest, RunnerToken, RunnerView, Standing};
use crate::error::Result;

/// How a DrainRunner names its runner.
#[derive(Debug, Clone)]
pub enum DrainOutcome {
    Drained(Box<RunnerView>),
    NotFound,
    /// The name matches several attached runners.
    Ambiguous(usize),
}

/// Fleet operations.
#[async_trait]
pub trait FleetStore: Send + Sync {
    /// Runners whose lease has not run out at `now`, by name, with the
    /// tests each holds.
    async fn list_runners(&self, now: Millis) -> Result<Vec<RunnerView>>;
    /// Marks an attached runner (by id, else by unique name) drained.
    async fn drain_runner(&self, id_or_name: &str, now: Millis) -> Result<DrainOutcome>;
    /// Whether a runner is drained and whether its token was revoked.
    async fn standing(&self, runner_id: &str) -> Result<Standing>;

    /// Stores a new token; `None` when the name is taken.
    async fn create_runner_token(
        &self,
        name: &str,
        secret_hash: &str,
        now: Millis,
    ) -> Result<Option<RunnerToken>>;
    async fn list_runner_tokens(&self) -> Result<Vec<RunnerToken>>;
    /// Revokes a token (idempotent); `None` when there is none by the name.
    async fn revoke_runner_token(&self, name: &str, now: Millis) -> Result<Option<RunnerToken>>;
    /// The name of the unrevoked token with this hash; stamps its use when
    /// `used_at` is given (an attach, not every blob read).
    async fn runner_token_named(
        &self,
        secret_hash: &str,
        used_at: Option<Millis>,
    ) -> Result<Option<String>>;
}

/// A runner row as ListRunners reads it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RunnerRow {
    pub id: String,
    pub name: String,
    pub slots: i32,
    pub version: String,
    pub labels: String,
    pub token_name: String,
    pub registered_at: i64,
    pub lease_until: i64,
    pub drained_at: Option<i64>,
}

pub(super) const RUNNER_COLUMNS: &str =
    "id, name, slots, version, labels, token_name, registered_at, lease_until, drained_at";

/// A test a listed runner holds.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RunnerTestRow {
    pub runner_id: String,
    pub testrun_id: i64,
    pub id: i64,
    pub name: String,
    pub started_at: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct TokenRow {
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

pub(super) const TOKEN_COLUMNS: &str = "name, created_at, revoked_at, last_used_at";

impl From<TokenRow> for RunnerToken {
    fn from(r: TokenRow) -> Self {
        RunnerToken {
            name: r.name,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        }
    }
}

impl RunnerRow {
    pub(super) fn into_view(self, tests: &[RunnerTestRow]) -> RunnerView {
        let running = tests
            .iter()
            .filter(|t| t.runner_id == self.id)
            .map(|t| RunnerTest {
                testrun_id: t.testrun_id,
                test_id: t.id,
                name: t.name.clone(),
                started_at: t.started_at,
            })
            .collect();
        RunnerView {
            info: RunnerInfo {
                // Labels are written by this code from a map; a row that
                // does not parse shows none rather than failing the list.
                labels: serde_json::from_str(&self.labels).unwrap_or_default(),
                id: self.id,
                name: self.name,
                slots: self.slots,
                queue: 0,
                version: self.version,
                token_name: self.token_name,
            },
            registered_at: self.registered_at,
            lease_until: self.lease_until,
            draining: self.drained_at.is_some(),
            running,
        }
    }
}

macro_rules! fleet_store {
    ($store:ty) => {
        const _: () = {
            use const_format::concatcp;

            use async_trait::async_trait;

            use crate::domain::Millis;
            use crate::domain::fleet::{RunnerToken, RunnerView, Standing};
            use crate::error::Result;
            use crate::store::fleet::{
                DrainOutcome, FleetStore, RUNNER_COLUMNS, RunnerRow, RunnerTestRow, TOKEN_COLUMNS,
                TokenRow,
            };
            const RUNNING: &str = crate::domain::TestStatus::Running.sql();

            impl $store {
                async fn live_runners(&self, now: Millis) -> Result<Vec<RunnerView>> {
                    let rows: Vec<RunnerRow> = sqlx::query_as(concatcp!(
                        "SELECT ", RUNNER_COLUMNS, " FROM runners WHERE lease_until >= $1 \
                         ORDER BY name, id"
                    ))
                    .bind(now)
                    .fetch_all(&self.read)
                    .await?;
                    if rows.is_empty() {
                        return Ok(Vec::new());
                    }
                    let tests: Vec<RunnerTestRow> = sqlx::query_as(concatcp!(
                        "SELECT runner_id, testrun_id, id, name, started_at FROM tests \
                         WHERE status = ", RUNNING, " AND runner_id IN \
                             (SELECT id FROM runners WHERE lease_until >= $1) \
                         ORDER BY started_at, id"
                    ))
                    .bind(now)
                    .fetch_all(&self.read)
                    .await?;
                    Ok(rows.into_iter().map(|r| r.into_view(&tests)).collect())
                }
            }

            #[async_trait]
            impl FleetStore for $store {
                async fn list_runners(&self, now: Millis) -> Result<Vec<RunnerView>> {
                    self.live_runners(now).await
                }

                async fn drain_runner(&self, id_or_name: &str, now: Millis) -> Result<DrainOutcome> {
                    // By id first; a name only when one attached runner has it.
                    let ids: Vec<String> = sqlx::query_scalar(
                        "SELECT id FROM runners WHERE lease_until >= $2 AND \
                             (id = $1 OR (name = $1 AND NOT EXISTS \
                                 (SELECT 1 FROM runners WHERE id = $1 AND lease_until >= $2)))",
                    )
                    .bind(id_or_name)
                    .bind(now)
                    .fetch_all(&self.write)
                    .await?;
                    let id = match ids.as_slice() {
                        [] => return Ok(DrainOutcome::NotFound),
                        [id] => id.clone(),
                        more => return Ok(DrainOutcome::Ambiguous(more.len())),
                    };
                    sqlx::query(
                        "UPDATE runners SET drained_at = COALESCE(drained_at, $2) WHERE id = $1",
                    )
                    .bind(&id)
                    .bind(now)
                    .execute(&self.write)
                    .await?;
                    let view = self.live_runners(now).await?.into_iter().find(|r| r.info.id == id);
                    Ok(match view {
                        Some(view) => DrainOutcome::Drained(Box::new(view)),
                        None => DrainOutcome::NotFound,
                    })
                }

                async fn standing(&self, runner_id: &str) -> Result<Standing> {
                    let row: Option<(bool, bool)> = sqlx::query_as(
                        "SELECT drained_at IS NOT NULL, token_name <> '' AND NOT EXISTS \
                             (SELECT 1 FROM runner_tokens t \
                              WHERE t.name = runners.token_name AND t.revoked_at IS NULL) \
                         FROM runners WHERE id = $1",
                    )
                    .bind(runner_id)
                    .fetch_optional(&self.write)
                    .await?;
                    let (draining, revoked) = row.unwrap_or_default();
                    Ok(Standing { draining, revoked })
                }

                async fn create_runner_token(
                    &self,
                    name: &str,
                    secret_hash: &str,
                    now: Millis,
                ) -> Result<Option<RunnerToken>> {
                    let row: Option<TokenRow> = sqlx::query_as(concatcp!(
                        "INSERT INTO runner_tokens (name, secret_hash, created_at) \
                         VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING ",
                        TOKEN_COLUMNS
                    ))
                    .bind(name)
                    .bind(secret_hash)
                    .bind(now)
                    .fetch_optional(&self.write)
                    .await?;
                    Ok(row.map(Into::into))
                }

                async fn list_runner_tokens(&self) -> Result<Vec<RunnerToken>> {
                    let rows: Vec<TokenRow> = sqlx::query_as(concatcp!(
                        "SELECT ", TOKEN_COLUMNS, " FROM runner_tokens ORDER BY name"
                    ))
                    .fetch_all(&self.read)
                    .await?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn revoke_runner_token(
                    &self,
                    name: &str,
                    now: Millis,
                ) -> Result<Option<RunnerToken>> {
                    let row: Option<TokenRow> = sqlx::query_as(concatcp!(
                        "UPDATE runner_tokens SET revoked_at = COALESCE(revoked_at, $2) \
                         WHERE name = $1 RETURNING ",
                        TOKEN_COLUMNS
                    ))
                    .bind(name)
                    .bind(now)
                    .fetch_optional(&self.write)
                    .await?;
                    Ok(row.map(Into::into))
                }

                async fn runner_token_named(
                    &self,
                    secret_hash: &str,
                    used_at: Option<Millis>,
                ) -> Result<Option<String>> {
                    let name: Option<String> = match used_at {
                        Some(now) => {
                            sqlx::query_scalar(
                                "UPDATE runner_tokens SET last_used_at = $2 \
                                 WHERE secret_hash = $1 AND revoked_at IS NULL RETURNING name",
                            )
                            .bind(secret_hash)
                            .bind(now)
                            .fetch_optional(&self.write)
                            .await?
                        }
                        None => {
                            sqlx::query_scalar(
                                "SELECT name FROM runner_tokens \
                                 WHERE secret_hash = $1 AND revoked_at IS NULL",
                            )
                            .bind(secret_hash)
                            .fetch_optional(&self.read)
                            .await?
                        }
                    };
                    Ok(name)
                }
            }
        };
    };
}
