//! Lease expiry: tests of runners that stopped talking go back to the queue.
//!
//! Leases live in the database, so any coordinator sharing it can expire
//! them, and a restarted coordinator honours leases granted before. The
//! first sweep waits one lease after start-up, giving runners of a
//! restarted coordinator time to reconnect and resume.

use std::sync::Arc;
use std::time::Duration;

use super::dispatch::Dispatcher;
use crate::domain::now_millis;
use crate::live::hub::{Hub, ListEvent, RunEvent};
use crate::store::Store;

/// Sweeps expired leases forever.
pub async fn run(
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    dispatcher: Arc<Dispatcher>,
    lease: Duration,
    max_attempts: i32,
) {
    tokio::time::sleep(lease).await;
    let every = (lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Runners come and go on every coordinator: each sweep brings
        // `waiting` up to date with the leases in the database.
        super::pools::refresh_waiting(&*store, &hub).await;
        let touched = match store.expire_leases(now_millis(), max_attempts).await {
            Ok(t) => t,
            Err(err) => {
                tracing::warn!(error = %err, "lease sweep failed");
                continue;
            }
        };
        if touched.is_empty() {
            continue;
        }
        tracing::info!(testruns = ?touched, "tests of lost runners requeued");
        for id in touched {
            hub.publish(id, RunEvent::Resync);
            if let Ok(Some(run)) = store.get_testrun(id, false).await {
                hub.publish_list(ListEvent::Changed(run));
            }
        }
        dispatcher.wake();
    }
}
