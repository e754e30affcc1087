//! Blob collection: trees no Testrun uses and blobs no tree holds are
//! deleted once untouched for the grace period (`--blob-grace`), which
//! covers uploads in progress and the gap between an upload and the
//! CreateTestrun that pins it. Deleting a Testrun unpins its tree (the
//! row cascades), so what only it used goes at the next sweep after the
//! grace. Every coordinator sharing a database may sweep: the statements
//! are idempotent and lock what they delete.
//!
//! The same loop ends the queued tests of Testruns no live runner can set
//! up (a failing runner releases its tests after reporting the failure).

use std::sync::Arc;
use std::time::Duration;

use super::runners::setups::end_stranded;
use crate::domain::now_millis;
use crate::live::hub::Hub;
use crate::store::Store;

/// Sweeps forever.
pub async fn run(store: Arc<dyn Store>, hub: Arc<Hub>, grace: Duration, lease: Duration) {
    let every = lease.clamp(Duration::from_millis(200), Duration::from_secs(5));
    let collect_every = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(300));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_collect = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if let Err(err) = end_stranded(&*store, &hub).await {
            tracing::warn!(error = %err, "set-up sweep failed");
        }
        if last_collect.elapsed() < collect_every {
            continue;
        }
        last_collect = tokio::time::Instant::now();
        let cutoff = now_millis() - grace.as_millis() as i64;
        match store.collect_garbage(cutoff).await {
            Ok(c) if c.blobs > 0 || c.workspaces > 0 => {
                tracing::info!(
                    blobs = c.blobs,
                    workspaces = c.workspaces,
                    "unreferenced blobs collected"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "blob collection failed"),
        }
    }
}
