//! What runners do through their streams, free of gRPC transport types:
//! register a stream (`register`), send log lines (`ingest`), report
//! results and hand tests back (`results`). The runner adapter
//! (`adapters::runner`) reads the stream and calls these; the messages are
//! the protocol's own (`proto/testrunner/v1/runner.proto`).

mod cases;
mod ingest;
mod register;
mod results;
pub mod setups;

use std::sync::Arc;

use super::dispatch::{Dispatcher, Held, Session};
use super::finisher::Finisher;
use crate::config::RunnerSettings;
use crate::domain::now_millis;
use crate::error::{Error, Result};
use crate::live::hub::Hub;
use crate::metrics::Metrics;
use crate::store::Store;

/// The runner side of the coordinator.
#[derive(Debug, Clone)]
pub struct Runners {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub dispatcher: Arc<Dispatcher>,
    pub finisher: Finisher,
    pub metrics: Arc<Metrics>,
    pub settings: RunnerSettings,
}

impl Runners {
    /// Extends the runner's lease (the adapter calls this at most once per
    /// heartbeat interval).
    pub async fn renew_lease(&self, session: &Session) -> Result<()> {
        let lease_ms = self.settings.lease.as_millis() as i64;
        self.store
            .renew_lease(&session.info.id, now_millis() + lease_ms)
            .await
    }

    /// Reads what an operator decided about the runner, through whichever
    /// coordinator: a revoked token ends the stream (UNAUTHENTICATED); a
    /// drain stops its work. The adapter calls this every heartbeat
    /// interval.
    pub async fn check_standing(&self, session: &Session) -> Result<()> {
        let standing = self.store.standing(&session.info.id).await?;
        if standing.revoked {
            tracing::warn!(runner_id = %session.info.id, runner = %session.info.name, token = %session.info.token_name, "runner token revoked; ending its stream");
            return Err(Error::Unauthenticated(format!(
                "runner token {:?} was revoked",
                session.info.token_name
            )));
        }
        if standing.draining && !session.is_draining() {
            tracing::info!(runner_id = %session.info.id, runner = %session.info.name, "runner drained by an operator");
            session.drain();
        }
        Ok(())
    }

    /// The stream ended: the runner gets no more work through it.
    pub fn detach(&self, session: &Session) {
        self.dispatcher.detach(session);
    }
}

/// What the session knows of an assignment a message names; naming one it
/// does not hold is a protocol violation.
fn known(session: &Session, assignment_id: &str, what: &str) -> Result<Held> {
    session.held(assignment_id).ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "{what}.assignment_id: {assignment_id:?} is not held by this runner"
        ))
    })
}
