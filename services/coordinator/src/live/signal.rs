//! Signals: the compact changes one coordinator tells the others about
//! ("Testrun 7 has lines up to 1200", "test 9 changed"), and the handle that
//! sends them. A leaf, so the hub can forward what it publishes without
//! knowing how signals travel (`cluster`).

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A change another coordinator should know about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Signal {
    /// Lines of Testrun `t` are durable up to `seq` (run_seq).
    Log {
        t: i64,
        seq: i64,
    },
    /// Test `id` of Testrun `t` changed.
    Test {
        t: i64,
        id: i64,
    },
    /// Testrun `t`'s status or counts changed.
    Run {
        t: i64,
    },
    /// Many things of Testrun `t` changed (cancel, requeue).
    Resync {
        t: i64,
    },
    Created {
        t: i64,
    },
    Deleted {
        t: i64,
    },
    /// Tell the runner's coordinator to cancel an assignment.
    Cancel {
        runner: String,
        assignment: String,
    },
}

/// The sending side, held by the hub; a no-op without Postgres.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    tx: Option<mpsc::UnboundedSender<Signal>>,
}

impl Cluster {
    /// A handle whose signals go into `tx`.
    pub fn new(tx: mpsc::UnboundedSender<Signal>) -> Self {
        Self { tx: Some(tx) }
    }

    /// Forwards a signal to the other coordinators (never blocks).
    pub fn send(&self, signal: Signal) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(signal);
        }
    }

    /// True when other coordinators may exist.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }
}
