//! Stores test results in batches (group commit).
//!
//! Every runner stream hands its results to one task, which stores all the
//! results waiting at that moment in a single transaction. A group of
//! results a runner sent together always goes in one batch; under load,
//! results also arrive while the previous transaction commits, so a batch
//! holds several and each costs a fraction of a transaction; alone, a
//! result is stored at once. Up to `IN_FLIGHT` batches are stored at a time,
//! so one result waiting on a lock (its Testrun being deleted) does not hold
//! back every runner's; a batch that fails is retried one result at a time,
//! so a result the database refuses fails alone.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::domain::{TestResult, TestStatus, now_millis};
use crate::error::{Error, Result};
use crate::live::hub::{Hub, ListEvent, RunEvent};
use crate::metrics::Metrics;
use crate::store::Store;

/// Most groups of results in one transaction.
const MAX_BATCH: usize = 64;
/// Groups waiting for the task before streams wait to hand theirs over.
const QUEUE: usize = 1024;
/// Batches being stored at once.
const IN_FLIGHT: usize = 4;

/// A group of results, and where their answers go.
struct Request {
    results: Vec<(String, TestResult)>,
    /// For each result, whether it was accepted (its assignment still
    /// current).
    reply: oneshot::Sender<Result<Vec<bool>>>,
}

/// The handle runner streams store results through.
#[derive(Debug, Clone)]
pub struct Finisher {
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("results", &self.results.len())
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

    /// Stores results (by assignment id) in one transaction; for each,
    /// `false` if its assignment is no longer current (the result is
    /// refused). Returns once they are committed and published.
    pub async fn finish(&self, results: Vec<(String, TestResult)>) -> Result<Vec<bool>> {
        let (reply, accepted) = oneshot::channel();
        self.tx
            .send(Request { results, reply })
            .await
            .map_err(|_| shutting_down())?;
        accepted.await.map_err(|_| shutting_down())?
    }
}

fn shutting_down() -> Error {
    Error::Unavailable("coordinator is shutting down".into())
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
/// ones the store refuses fail (a group with one of them fails whole: its
/// runner sends it again).
async fn store_or_retry(ctx: &Ctx, batch: Vec<Request>) {
    let results: Vec<(String, TestResult)> = batch
        .iter()
        .flat_map(|r| r.results.iter().cloned())
        .collect();
    let error = match store(ctx, &results).await {
        Ok(accepted) => return answer(batch, Ok(accepted)),
        Err(error) => error,
    };
    if results.len() == 1 {
        return answer(batch, Err(error));
    }
    tracing::warn!(%error, results = results.len(), "storing a batch of results failed; retrying them one by one");
    let mut alone = Vec::with_capacity(results.len());
    for result in results {
        alone.push(store(ctx, std::slice::from_ref(&result)).await);
    }
    let mut alone = alone.into_iter();
    for request in batch {
        let answers: Result<Vec<bool>> = alone
            .by_ref()
            .take(request.results.len())
            .map(|a| a.map(|accepted| accepted[0]))
            .collect();
        let _ = request.reply.send(answers);
    }
}

/// Hands each group its part of the answers.
fn answer(batch: Vec<Request>, accepted: Result<Vec<bool>>) {
    match accepted {
        Ok(accepted) => {
            let mut accepted = accepted.into_iter();
            for request in batch {
                let mine = accepted.by_ref().take(request.results.len()).collect();
                let _ = request.reply.send(Ok(mine));
            }
        }
        Err(error) => {
            for request in batch {
                let _ = request.reply.send(Err(error.share()));
            }
        }
    }
}

/// Stores and publishes results; for each, whether it was accepted.
async fn store(ctx: &Ctx, results: &[(String, TestResult)]) -> Result<Vec<bool>> {
    let outcome = match ctx.store.finish_tests(results, now_millis()).await {
        Ok(outcome) if outcome.tests.len() == results.len() => outcome,
        Ok(outcome) => {
            let message = format!(
                "the store answered {} of {} results",
                outcome.tests.len(),
                results.len()
            );
            return Err(Error::Internal(anyhow::anyhow!(message)));
        }
        Err(err) => {
            tracing::warn!(error = %err, results = results.len(), "storing results failed");
            return Err(err);
        }
    };
    // Watchers hear of every result before its runner does.
    for test in outcome.tests.iter().flatten() {
        if test.status == TestStatus::Queued {
            ctx.metrics.test_retried();
            tracing::info!(
                test_id = test.id,
                testrun_id = test.testrun_id,
                attempt = test.attempt,
                "test failed; queued for a retry"
            );
        } else {
            ctx.metrics.test_finished(test.status);
            tracing::debug!(test_id = test.id, status = %test.status, "test finished");
        }
        ctx.hub
            .publish(test.testrun_id, RunEvent::Test(test.clone()));
    }
    for run in outcome.testruns {
        ctx.hub.publish(run.id, RunEvent::Testrun(run.clone()));
        ctx.hub.publish_list(ListEvent::Changed(run));
    }
    Ok(outcome.tests.iter().map(Option::is_some).collect())
}
