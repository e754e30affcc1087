//! Several coordinators on one Postgres: live events, dispatch wake-ups and
//! cancels cross instances through `LISTEN`/`NOTIFY`.
//!
//! Claims are already safe across coordinators (`FOR UPDATE SKIP LOCKED`);
//! what does not cross by itself is the in-process `Hub`. Each coordinator
//! forwards compact *signals* ("Testrun 7 has lines up to 1200", "test 9
//! changed") rather than data: the receiving side reads the data from the
//! store, which every instance shares, so a lost or reordered notification
//! can delay a watcher but never make it wrong. Signals are batched into one
//! `pg_notify` per burst. On SQLite (one coordinator) this is all off.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::hub::{Hub, ListEvent, RunEvent};
use super::signal::{Cluster, Signal};
use crate::store::Store;

/// What the listener needs of this coordinator's runners: a dispatch pass,
/// and a cancel sent to a runner attached here. (The dispatcher implements
/// it; the arrow points from the engine down to here, not back.)
pub trait LocalRunners: Send + Sync {
    /// Asks for a dispatch pass: work may be queued for local runners.
    fn wake(&self);
    /// Tells a runner attached here to kill an assignment; whether it was.
    fn cancel_local(&self, runner_id: &str, assignment_id: &str, reason: &str) -> bool;
}

/// The Postgres channel all coordinators of one database share.
pub const CHANNEL: &str = "testrunner_events";
/// Stay well below Postgres' 8000-byte payload limit.
const MAX_PAYLOAD: usize = 7000;
/// Most signals sent in one burst.
const MAX_BATCH: usize = 8192;
/// Signals are gathered this long before they go out. Every `pg_notify` is
/// a transaction that every coordinator listening (this one included)
/// receives; sent per burst, a busy Testrun made one per finished test,
/// and notifications were most of Postgres' work in the dispatch bench.
/// Watchers on other coordinators see changes this much later; watchers
/// on the coordinator where a change happens see it at once.
const GATHER: Duration = Duration::from_millis(20);

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The sending coordinator, so it ignores its own notifications.
    o: String,
    s: Vec<Signal>,
}

/// Starts the sender and the listener; returns the sending handle and the
/// tasks to keep alive.
pub fn start(pool: PgPool) -> (Cluster, String, SenderTask) {
    let origin = uuid::Uuid::new_v4().simple().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Cluster::new(tx),
        origin.clone(),
        SenderTask { pool, origin, rx },
    )
}

/// Batches signals into `pg_notify` calls.
pub struct SenderTask {
    pool: PgPool,
    origin: String,
    rx: mpsc::UnboundedReceiver<Signal>,
}

impl SenderTask {
    pub async fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            if self.rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
            // A cancel goes at once: a runner elsewhere is running a test
            // whose Testrun is over. Everything else is gathered.
            if !batch.iter().any(|s| matches!(s, Signal::Cancel { .. })) {
                tokio::time::sleep(GATHER).await;
                // Bounded, so one burst cannot hold this (shared) thread.
                while batch.len() < MAX_BATCH
                    && let Ok(signal) = self.rx.try_recv()
                {
                    batch.push(signal);
                }
            }
            let batch = std::mem::take(&mut batch);
            let payloads = encode(&self.origin, coalesce(batch));
            if let Err(err) = sqlx::query("SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p")
                .bind(CHANNEL)
                .bind(&payloads)
                .execute(&self.pool)
                .await
            {
                tracing::warn!(error = %err, "could not notify other coordinators");
            }
        }
    }
}

/// Keeps only the newest log position per Testrun and drops repeats, in
/// the order signals first came. Linear: a claim of a thousand tests is a
/// thousand signals in one burst.
fn coalesce(batch: Vec<Signal>) -> Vec<Signal> {
    let mut out: Vec<Signal> = Vec::with_capacity(batch.len());
    let mut seen: HashSet<Signal> = HashSet::with_capacity(batch.len());
    // Testrun id -> index of its log position in `out`.
    let mut logs: HashMap<i64, usize> = HashMap::new();
    for s in batch {
        if let Signal::Log { t, seq } = s {
            match logs.get(&t) {
                Some(&i) => {
                    if let Signal::Log { seq: kept, .. } = &mut out[i] {
                        *kept = (*kept).max(seq);
                    }
                }
                None => {
                    logs.insert(t, out.len());
                    out.push(s);
                }
            }
        } else if seen.insert(s.clone()) {
            out.push(s);
        }
    }
    out
}

/// Splits signals into payloads under the size limit; each signal is
/// serialized once.
fn encode(origin: &str, signals: Vec<Signal>) -> Vec<String> {
    let head = format!(
        "{{\"o\":{},\"s\":[",
        serde_json::to_string(origin).expect("a string serializes")
    );
    const TAIL: &str = "]}";
    let mut payloads = Vec::new();
    let mut current = head.clone();
    for s in signals {
        let text = serde_json::to_string(&s).expect("signals serialize");
        if head.len() + text.len() + TAIL.len() > MAX_PAYLOAD {
            // No signal is this large (ids are short); if one ever were,
            // it must not take the rest of its burst down with it.
            tracing::warn!(signal = ?s, "a cluster signal too large to send was dropped");
            continue;
        }
        let empty = current.len() == head.len();
        if !empty && current.len() + 1 + text.len() + TAIL.len() > MAX_PAYLOAD {
            current.push_str(TAIL);
            payloads.push(std::mem::replace(&mut current, head.clone()));
        }
        if current.len() > head.len() {
            current.push(',');
        }
        current.push_str(&text);
    }
    if current.len() > head.len() {
        current.push_str(TAIL);
        payloads.push(current);
    }
    payloads
}

/// Applies other coordinators' signals to this one's hub and dispatcher.
pub async fn listen(
    pool: PgPool,
    origin: String,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    runners: Arc<dyn LocalRunners>,
) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(error = %err, "cluster listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(err) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %err, "cluster listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        resync(&hub, &*runners);
        loop {
            // try_recv, not recv: recv reconnects silently, and signals sent
            // while it did are lost without a word. Ok(None) says so.
            let note = match listener.try_recv().await {
                Ok(Some(n)) => n,
                Ok(None) => {
                    tracing::warn!("cluster listener reconnected; resyncing watchers");
                    resync(&hub, &*runners);
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cluster listener lost its connection");
                    break;
                }
            };
            let Ok(envelope) = serde_json::from_str::<Envelope>(note.payload()) else {
                tracing::warn!(payload = note.payload(), "unreadable cluster notification");
                continue;
            };
            if envelope.o == origin {
                continue;
            }
            for signal in envelope.s {
                apply(signal, &*store, &hub, &*runners).await;
            }
        }
    }
}

/// After a gap in notifications: every watcher re-reads, and queued work is
/// looked at again.
fn resync(hub: &Hub, runners: &dyn LocalRunners) {
    for id in hub.watched_ids() {
        hub.publish_local(id, RunEvent::Resync);
    }
    runners.wake();
}

async fn apply(signal: Signal, store: &dyn Store, hub: &Hub, runners: &dyn LocalRunners) {
    let summary = |t: i64| async move { store.get_testrun(t, false).await.ok().flatten() };
    match signal {
        Signal::Log { t, seq } => hub.publish_local(t, RunEvent::Committed { log_seq: seq }),
        Signal::Test { t, id } => hub.publish_local(t, RunEvent::TestChanged { test_id: id }),
        Signal::Run { t } | Signal::Resync { t } => {
            let resync = matches!(signal, Signal::Resync { .. });
            hub.publish_local(
                t,
                if resync {
                    RunEvent::Resync
                } else {
                    RunEvent::TestrunChanged
                },
            );
            if let Some(run) = summary(t).await {
                hub.publish_list_local(ListEvent::Changed(run));
            }
            // A requeue or hand-back elsewhere may have work for our runners.
            runners.wake();
        }
        Signal::Created { t } => {
            if let Some(run) = summary(t).await {
                hub.publish_list_local(ListEvent::Created(run));
            }
            runners.wake();
        }
        Signal::Deleted { t } => {
            hub.publish_local(t, RunEvent::Deleted);
            hub.publish_list_local(ListEvent::Deleted(t));
        }
        Signal::Cancel { runner, assignment } => {
            runners.cancel_local(&runner, &assignment, "testrun cancelled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_positions_coalesce_to_the_newest_per_testrun() {
        let out = coalesce(vec![
            Signal::Log { t: 1, seq: 10 },
            Signal::Log { t: 2, seq: 5 },
            Signal::Log { t: 1, seq: 30 },
            Signal::Run { t: 1 },
            Signal::Run { t: 1 },
        ]);
        assert_eq!(
            out,
            vec![
                Signal::Log { t: 1, seq: 30 },
                Signal::Log { t: 2, seq: 5 },
                Signal::Run { t: 1 }
            ]
        );
    }

    #[test]
    fn payloads_stay_under_the_notify_limit() {
        let many = (0..2000).map(|t| Signal::Run { t }).collect();
        let payloads = encode("o", many);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let total: usize = payloads
            .iter()
            .map(|p| serde_json::from_str::<Envelope>(p).unwrap().s.len())
            .sum();
        assert_eq!(total, 2000);
        assert_eq!(
            serde_json::from_str::<Envelope>(&payloads[0]).unwrap().o,
            "o"
        );
        assert!(encode("o", Vec::new()).is_empty());
    }
}
