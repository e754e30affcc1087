//! Runner pools by label (issue 16): keeps `Testrun.waiting` true.
//!
//! Whether an open Testrun waits depends on which runners hold a live
//! lease, on any coordinator sharing the database. That changes when a
//! runner registers (here or elsewhere), when a lease runs out, when a
//! Testrun with a selector is created, and when its queue empties. The
//! store recomputes it from the database at those moments (a claim clears
//! it itself: a runner that takes a test is the runner it waited for) and
//! at every lease sweep, which also covers what happened on another
//! coordinator; each change is published, so watchers here and elsewhere
//! see it start and stop.

use crate::domain::{Testrun, now_millis};
use crate::live::hub::{Hub, ListEvent, RunEvent};
use crate::store::Store;

/// Recomputes `waiting` and tells watchers what changed; returns the
/// Testruns that changed. A failure is logged: the next sweep retries.
pub async fn refresh_waiting(store: &dyn Store, hub: &Hub) -> Vec<Testrun> {
    let changed = match store.refresh_waiting(now_millis()).await {
        Ok(changed) => changed,
        Err(err) => {
            tracing::warn!(error = %err, "refreshing which Testruns wait for a runner failed");
            return Vec::new();
        }
    };
    for run in &changed {
        if run.waiting.is_empty() {
            tracing::info!(testrun_id = run.id, "testrun no longer waits for a runner");
        } else {
            tracing::info!(testrun_id = run.id, waiting = %run.waiting, "testrun waits for a runner");
        }
        hub.publish(run.id, RunEvent::Testrun(run.clone()));
        hub.publish_list(ListEvent::Changed(run.clone()));
    }
    changed
}
