//! Stores test results in batches (group commit).
//!
//! Every runner stream hands its results to one task, which stores all the
//! results waiting at that moment in a single transaction. Under load,
//! results arrive while the previous transaction commits, so a batch holds
//! several and each costs a fraction of a transaction; alone, a result is
//! stored at once. Up to `IN_FLIGHT` batches are stored at a time, so one
//! result waiting on a lock (its Testrun being deleted) does not hold back
//! every runner's; a batch that fails is retried one result at a time, so a
//! result the database refuses fails alone.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::Status;

use crate::domain::{TestResult, now_millis};
use crate::hub::{Hub, ListEvent, RunEvent};
use crate::metrics::Metrics;
use crate::store::Store;

/// Most results in one transaction.
const MAX_BATCH: usize = 256;
/// Results waiting for the task before streams wait to hand theirs over.
const QUEUE: usize = 1024;
/// Batches being stored at once.
const IN_FLIGHT: usize = 4;

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

/// What storing a batch needs.
#[derive(Clone)]
struct Ctx {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
}

async fn run(
    mut rx: mpsc::Receiver<Request>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
) {
    let ctx = Ctx {
        store,
        hub,
        metrics,
    };
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // A slot first: while all are busy, results keep queueing and the
        // next batch is larger.
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            store_or_retry(&ctx, batch).await;
            drop(permit);
        });
    }
}

/// Stores a batch; if that fails, each of its results alone, so only the
/// ones the store refuses fail.
async fn store_or_retry(ctx: &Ctx, batch: Vec<Request>) {
    let Err((batch, error)) = store_batch(ctx, batch).await else {
        return;
    };
    if batch.len() > 1 {
        tracing::warn!(error = %error.message(), results = batch.len(), "storing a batch of results failed; retrying them one by one");
        for request in batch {
            if let Err((failed, error)) = store_batch(ctx, vec![request]).await {
                fail(failed, &error);
            }
        }
    } else {
        fail(batch, &error);
    }
}

fn fail(batch: Vec<Request>, error: &Status) {
    for request in batch {
        let _ = request.reply.send(Err(error.clone()));
    }
}

/// Stores, publishes and answers a batch; on failure, hands it back.
async fn store_batch(ctx: &Ctx, batch: Vec<Request>) -> Result<(), (Vec<Request>, Status)> {
    let results: Vec<(String, TestResult)> = batch
        .iter()
        .map(|r| (r.assignment_id.clone(), r.result.clone()))
        .collect();
    let outcome = match ctx.store.finish_tests(&results, now_millis()).await {
        Ok(outcome) if outcome.tests.len() == batch.len() => outcome,
        Ok(outcome) => {
            let message = format!(
                "the store answered {} of {} results",
                outcome.tests.len(),
                batch.len()
            );
            tracing::error!("{message}");
            return Err((batch, Status::internal(message)));
        }
        Err(err) => {
            tracing::warn!(error = %err, results = batch.len(), "storing results failed");
            return Err((batch, Status::from(err)));
        }
    };
    // Watchers hear of every result before its runner does.
    for test in outcome.tests.iter().flatten() {
        ctx.metrics.test_finished(test.status);
        tracing::debug!(test_id = test.id, status = %test.status, "test finished");
        ctx.hub
            .publish(test.testrun_id, RunEvent::Test(test.clone()));
    }
    for run in outcome.testruns {
        ctx.hub.publish(run.id, RunEvent::Testrun(run.clone()));
        ctx.hub.publish_list(ListEvent::Changed(run));
    }
    for (request, test) in batch.into_iter().zip(outcome.tests) {
        let _ = request.reply.send(Ok(test.is_some()));
    }
    Ok(())
}
