//! Stores test results in batches (group commit).
//!
//! Every runner stream hands its results to one task, which stores all the
//! results waiting at that moment in a single transaction. Under load,
//! results arrive while the previous transaction commits, so a batch holds
//! several and each costs a fraction of a transaction; alone, a result is
//! stored at once. In the dispatch benchmark a transaction per result was
//! most of the coordinator's work on SQLite, whose every statement is a
//! round trip to its worker thread.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::domain::{TestResult, now_millis};
use crate::hub::{Hub, ListEvent, RunEvent};
use crate::metrics::Metrics;
use crate::store::Store;

/// Most results in one transaction.
const MAX_BATCH: usize = 256;
/// Results waiting for the task before streams wait to hand theirs over.
const QUEUE: usize = 1024;

struct Request {
    assignment_id: String,
    result: TestResult,
    /// Whether the result was accepted (its assignment still current).
    reply: oneshot::Sender<Result<bool, Status>>,
}

/// The handle runner streams store results through.
#[derive(Debug, Clone)]
pub struct Finisher {
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("assignment_id", &self.assignment_id)
            .finish_non_exhaustive()
    }
}

impl Finisher {
    /// A finisher and the task that must run for it to make progress.
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, run(rx, store, hub, metrics))
    }

    /// Stores one result; `Ok(false)` if its assignment is no longer current
    /// (the result is refused). Returns once the result is committed and
    /// published.
    pub async fn finish(&self, assignment_id: &str, result: TestResult) -> Result<bool, Status> {
        let (reply, accepted) = oneshot::channel();
        self.tx
            .send(Request {
                assignment_id: assignment_id.to_owned(),
                result,
                reply,
            })
            .await
            .map_err(|_| Status::unavailable("coordinator is shutting down"))?;
        accepted
            .await
            .map_err(|_| Status::unavailable("coordinator is shutting down"))?
    }
}

async fn run(
    mut rx: mpsc::Receiver<Request>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results: Vec<(String, TestResult)> = batch
            .iter()
            .map(|r| (r.assignment_id.clone(), r.result.clone()))
            .collect();
        match store.finish_tests(&results, now_millis()).await {
            Ok(outcome) => {
                // Watchers hear of every result before its runner does.
                for test in outcome.tests.iter().flatten() {
                    metrics.test_finished(test.status);
                    tracing::debug!(test_id = test.id, status = %test.status, "test finished");
                    hub.publish(test.testrun_id, RunEvent::Test(test.clone()));
                }
                for run in outcome.testruns {
                    hub.publish(run.id, RunEvent::Testrun(run.clone()));
                    hub.publish_list(ListEvent::Changed(run));
                }
                for (request, test) in batch.drain(..).zip(outcome.tests) {
                    let _ = request.reply.send(Ok(test.is_some()));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, results = batch.len(), "storing results failed");
                let status = Status::from(err);
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(status.clone()));
                }
            }
        }
    }
}
