//! Storage of Testruns, tests, log lines and runner leases.
//!
//! One trait, two implementations chosen by the URL scheme: Postgres for a
//! fleet (several coordinators may share it), SQLite for zero set-up. Both
//! pass the same integration suite. Times are Unix milliseconds (`BIGINT`) in
//! both, so the two schemas stay alike.
//!
//! Every statement the two can share is written once (`sql.rs`, with `$N`
//! placeholders, which both drivers take); `postgres.rs` and `sqlite.rs`
//! hold only what differs: claims, bulk inserts, lists of ids, locks.
//! Row types and their column lists are in `rows.rs`.
//!
//! The tests table is the dispatch queue: a claim moves QUEUED rows to
//! RUNNING in one transaction and stamps them with an assignment id; every
//! later write about that test names the assignment id, so a result from a
//! runner whose test was moved elsewhere changes nothing.

use std::sync::Arc;

use crate::error::Error;

#[macro_use]
mod sql;
mod cases;
#[macro_use]
mod content;
mod contract;
#[macro_use]
mod fleet;
#[macro_use]
mod history;
mod postgres;
mod rows;
mod sqlite;

pub use cases::{CaseStore, CasesOutcome};
pub use content::{Collected, ContentStore, UploadState};
pub use contract::{
    AppendOutcome, CancelOutcome, Claim, FinishOutcome, QueueStats, Registration, Resumed,
    RunningAssignment, SelectorQueue, Store, TakeBack,
};
pub use fleet::{DrainOutcome, FleetStore};
pub use history::HistoryStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store the URL names, creating and migrating it as needed.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, anyhow::Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        anyhow::bail!(
            "database url {url:?}: expected postgres://... or sqlite://path (see --database-url)"
        )
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                // The cause is for operators, not clients.
                tracing::warn!(error = %err, "database unavailable");
                Self::Unavailable("database unavailable; try again".into())
            }
            other => Self::Internal(anyhow::Error::new(other).context("database query failed")),
        }
    }
}
