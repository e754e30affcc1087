//! Live fan-out of Testrun changes to watchers.
//!
//! Publishing never blocks: each Testrun has a bounded broadcast channel, and
//! a watcher that falls behind gets `Lagged` and catches up from the store
//! (see `watch`). Events are published only after their data is committed, so
//! the store always holds at least what any event announced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::frame::SharedEvent;
use super::signal::{Cluster, Signal};
use crate::domain::{Test, Testrun};

/// Events kept per Testrun channel before slow watchers lag.
const RUN_CHANNEL_CAPACITY: usize = 256;
/// Events kept on the list channel before slow watchers lag.
const LIST_CHANNEL_CAPACITY: usize = 4096;

/// A change to one Testrun.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A test changed.
    Test(Test),
    /// Lines `first_seq..=last_seq` (run_seq) of one test are stored. A
    /// watcher exactly caught up sends `encoded`, the wire event encoded once
    /// for all watchers (see `frame`); any other watcher, or any batch
    /// too large to share (`None`), reads the lines from the store. Events
    /// carry no other copy of the lines, so the channel's memory stays small.
    Log {
        first_seq: i64,
        last_seq: i64,
        encoded: Option<Arc<SharedEvent>>,
    },
    /// The Testrun's status or counts changed (no tests).
    Testrun(Testrun),
    /// Many things changed at once (cancel, lost runner): re-read the state.
    Resync,
    /// The Testrun was deleted.
    Deleted,
    /// A runner's set-up step of the Testrun started or ended.
    Setup(crate::domain::workspace::Setup),
    /// From another coordinator: lines are durable up to `log_seq`; read
    /// them from the store.
    Committed { log_seq: i64 },
    /// From another coordinator: a test changed; read it from the store.
    TestChanged { test_id: i64 },
    /// From another coordinator: the Testrun changed; read it.
    TestrunChanged,
}

/// A change to the Testrun list.
#[derive(Debug, Clone)]
pub enum ListEvent {
    Created(Testrun),
    Changed(Testrun),
    Deleted(i64),
}

/// Broadcast channels per Testrun plus one for the list.
#[derive(Debug)]
pub struct Hub {
    runs: Mutex<HashMap<i64, broadcast::Sender<Arc<RunEvent>>>>,
    list: broadcast::Sender<Arc<ListEvent>>,
    /// Forwards what is published here to other coordinators.
    cluster: Cluster,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(Cluster::default())
    }
}

impl Hub {
    /// A hub that forwards to `cluster`.
    pub fn new(cluster: Cluster) -> Self {
        Self {
            runs: Mutex::default(),
            list: broadcast::channel(LIST_CHANNEL_CAPACITY).0,
            cluster,
        }
    }

    /// The handle to other coordinators.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Subscribes to one Testrun; dropping the subscription unsubscribes.
    pub fn subscribe(self: &Arc<Self>, testrun_id: i64) -> RunSubscription {
        let mut runs = self.runs.lock().expect("hub lock");
        let rx = runs
            .entry(testrun_id)
            .or_insert_with(|| broadcast::channel(RUN_CHANNEL_CAPACITY).0)
            .subscribe();
        RunSubscription {
            hub: Arc::clone(self),
            testrun_id,
            rx: Some(rx),
        }
    }

    /// Subscribes to the list.
    pub fn subscribe_list(&self) -> broadcast::Receiver<Arc<ListEvent>> {
        self.list.subscribe()
    }

    /// Publishes to a Testrun's watchers here and on other coordinators.
    pub fn publish(&self, testrun_id: i64, event: RunEvent) {
        if self.cluster.is_enabled() {
            let t = testrun_id;
            let signal = match &event {
                RunEvent::Log { last_seq, .. } => Some(Signal::Log { t, seq: *last_seq }),
                RunEvent::Test(test) => Some(Signal::Test { t, id: test.id }),
                RunEvent::Testrun(_) => Some(Signal::Run { t }),
                RunEvent::Resync => Some(Signal::Resync { t }),
                RunEvent::Deleted => Some(Signal::Deleted { t }),
                // Other coordinators' watchers reload (set-ups are rare).
                RunEvent::Setup(_) => Some(Signal::Resync { t }),
                RunEvent::Committed { .. }
                | RunEvent::TestChanged { .. }
                | RunEvent::TestrunChanged => None,
            };
            if let Some(signal) = signal {
                self.cluster.send(signal);
            }
        }
        self.publish_local(testrun_id, event);
    }

    /// Publishes to this coordinator's watchers only.
    pub fn publish_local(&self, testrun_id: i64, event: RunEvent) {
        let runs = self.runs.lock().expect("hub lock");
        if let Some(tx) = runs.get(&testrun_id) {
            // No receivers is fine: nobody is watching.
            let _ = tx.send(Arc::new(event));
        }
    }

    /// Publishes a list change. Status changes reach other coordinators
    /// with the Testrun's own events; creations and deletions go here.
    pub fn publish_list(&self, event: ListEvent) {
        match &event {
            ListEvent::Created(run) => self.cluster.send(Signal::Created { t: run.id }),
            ListEvent::Deleted(id) => self.cluster.send(Signal::Deleted { t: *id }),
            ListEvent::Changed(_) => {}
        }
        self.publish_list_local(event);
    }

    /// Publishes a list change to this coordinator's watchers only.
    pub fn publish_list_local(&self, event: ListEvent) {
        let _ = self.list.send(Arc::new(event));
    }

    /// Testruns with at least one watcher (for tests and metrics).
    pub fn watched(&self) -> usize {
        self.runs.lock().expect("hub lock").len()
    }

    /// Ids of the Testruns being watched.
    pub fn watched_ids(&self) -> Vec<i64> {
        self.runs
            .lock()
            .expect("hub lock")
            .keys()
            .copied()
            .collect()
    }

    fn release(&self, testrun_id: i64) {
        let mut runs = self.runs.lock().expect("hub lock");
        if runs
            .get(&testrun_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            runs.remove(&testrun_id);
        }
    }
}

/// A watcher's receiver; removes the Testrun's channel when the last one goes.
#[derive(Debug)]
pub struct RunSubscription {
    hub: Arc<Hub>,
    testrun_id: i64,
    rx: Option<broadcast::Receiver<Arc<RunEvent>>>,
}

impl RunSubscription {
    /// The next event, or how many were missed.
    pub async fn recv(&mut self) -> Result<Arc<RunEvent>, broadcast::error::RecvError> {
        self.rx
            .as_mut()
            .expect("receiver present until drop")
            .recv()
            .await
    }
}

impl Drop for RunSubscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.hub.release(self.testrun_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_subscription_dropped_removes_the_channel() {
        let hub = Arc::new(Hub::default());
        let a = hub.subscribe(7);
        let b = hub.subscribe(7);
        assert_eq!(hub.watched(), 1);
        drop(a);
        assert_eq!(hub.watched(), 1);
        drop(b);
        assert_eq!(hub.watched(), 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_instead_of_blocking_the_publisher() {
        let hub = Arc::new(Hub::default());
        let mut sub = hub.subscribe(1);
        for _ in 0..RUN_CHANNEL_CAPACITY + 10 {
            hub.publish(1, RunEvent::Resync);
        }
        assert!(matches!(
            sub.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
    }
}
