//! `WatchTestrun` and `WatchTestruns`: history, then the live tail, with no
//! gap and no duplicate.
//!
//! A watcher subscribes to the hub *before* it reads anything, so every line
//! committed after its reads is also in its subscription. Lines carry their
//! Testrun-wide `run_seq`, allocated under the Testrun row's lock, so commit
//! order is run_seq order: whenever a live event starts past `cursor + 1`,
//! the lines in between are already committed and are read from the store;
//! lines at or below the cursor are dropped. A watcher that lags (its client
//! reads slowly) loses broadcast events, never blocks ingestion, and resyncs
//! from the store.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use testrunner_proto::v1::{self as pb, testrun_event::Event, testruns_event};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::testruns::Testruns;
use crate::domain::{ListFilter, LogLine, Testrun};
use crate::error::{Error, Result};
use crate::live::frame::SharedEvent;
use crate::live::hub::{ListEvent, RunEvent};
use crate::wire;

/// Events buffered per watcher before it stops reading the hub (and lags).
const WATCH_BUFFER: usize = 64;
/// Lines read from the store per catch-up query.
const CATCH_UP_PAGE: i64 = 5000;
/// Most lines per LogLines event.
const MAX_LINES_PER_EVENT: usize = 1000;

/// One `TestrunEvent` on its way to a watcher's client.
// Events are moved once into a channel slot, never copied around in bulk:
// boxing the larger variant would cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum WireEvent {
    /// Already encoded, once for every watcher that is caught up.
    Encoded(Arc<SharedEvent>),
    /// This watcher's own event (snapshots, catch-up pages, changes).
    Message(pb::TestrunEvent),
}

impl WireEvent {
    /// The event as a message, for transports that cannot take raw bytes.
    pub fn into_message(self) -> Result<pb::TestrunEvent> {
        match self {
            WireEvent::Message(event) => Ok(event),
            WireEvent::Encoded(shared) => shared
                .decode()
                .map_err(|e| Error::Internal(anyhow::anyhow!("decoding a shared event: {e}"))),
        }
    }
}

/// A watch's events, ending with the error that stopped it, if any.
pub type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

type Tx = mpsc::Sender<Result<WireEvent>>;

/// Why a watch ended early.
enum Stop {
    /// The client went away.
    Gone,
    /// End the stream with this error.
    Fail(Error),
}

impl From<Error> for Stop {
    fn from(err: Error) -> Self {
        Stop::Fail(err)
    }
}

/// Starts watching a Testrun; its live log events are shared (see
/// `live::frame`). An unknown id fails the call itself, not the first
/// message.
pub async fn watch_testrun(
    service: &Testruns,
    request: &pb::WatchTestrunRequest,
) -> Result<EventStream<WireEvent>> {
    service.get(request.id).await?;
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    let start = if request.from_end {
        Start::End
    } else {
        Start::After(request.after)
    };
    tokio::spawn(run_watch(service.clone(), request.id, start, tx));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Starts watching the Testrun list.
pub fn watch_testruns(service: &Testruns, filter: ListFilter) -> EventStream<pb::TestrunsEvent> {
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(run_list_watch(service.clone(), filter, tx));
    Box::pin(ReceiverStream::new(rx))
}

/// One watcher of one Testrun.
struct Watcher {
    service: Testruns,
    id: i64,
    cursor: i64,
    names: HashMap<i64, String>,
    tx: Tx,
}

/// Where a watch starts in the Testrun's log stream.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// After this cursor (0: from the first line).
    After(u64),
    /// After whatever is stored when the watch begins.
    End,
}

/// Streams one Testrun's events into `tx` until it ends.
async fn run_watch(service: Testruns, id: i64, start: Start, tx: Tx) {
    let mut watcher = Watcher {
        service,
        id,
        cursor: match start {
            Start::After(after) => after.min(i64::MAX as u64) as i64,
            // Raised to the snapshot's log position before it is sent.
            Start::End => i64::MAX,
        },
        names: HashMap::new(),
        tx,
    };
    if let Err(Stop::Fail(status)) = watcher.run().await {
        let _ = watcher.tx.send(Err(status)).await;
    }
}

impl Watcher {
    async fn run(&mut self) -> Result<(), Stop> {
        let hub = Arc::clone(&self.service.hub);
        let mut sub = hub.subscribe(self.id);
        let mut run = self.snapshot().await?;
        loop {
            if finished(&run) && self.cursor >= run.log_seq {
                // Send the final state once more: events published after the
                // one that ended the run may not have reached us yet.
                let last = self.snapshot().await?;
                if self.cursor >= last.log_seq {
                    return Ok(());
                }
                run = last;
                continue;
            }
            // Also wake when the client goes away, so an abandoned watch of
            // a quiet Testrun does not hold its task and channel forever.
            let received = tokio::select! {
                r = sub.recv() => r,
                () = self.tx.closed() => return Err(Stop::Gone),
            };
            let event = match received {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(testrun_id = self.id, missed, "watcher lagged; resyncing");
                    run = self.snapshot().await?;
                    continue;
                }
                Err(RecvError::Closed) => return Ok(()),
            };
            match &*event {
                RunEvent::Log {
                    first_seq,
                    last_seq,
                    encoded,
                } => {
                    match encoded {
                        // Caught up exactly: send the bytes encoded once for all.
                        Some(shared) if *first_seq == self.cursor + 1 => {
                            self.cursor = *last_seq;
                            self.tx
                                .send(Ok(WireEvent::Encoded(Arc::clone(shared))))
                                .await
                                .map_err(|_| Stop::Gone)?;
                        }
                        // Behind, or a batch too large to share: the store
                        // has every line up to last_seq (published after
                        // commit) and lines at or below the cursor are skipped.
                        _ => self.catch_up(*last_seq).await?,
                    }
                    run.log_seq = run.log_seq.max(self.cursor);
                }
                RunEvent::Test(test) => {
                    self.names.insert(test.id, test.name.clone());
                    self.send(Event::Test(wire::test(test))).await?;
                }
                RunEvent::Testrun(changed) => {
                    // The event's log_seq tells how far lines are committed.
                    if changed.log_seq > self.cursor {
                        self.catch_up(changed.log_seq).await?;
                    }
                    run = changed.clone();
                    self.send(Event::Testrun(wire::testrun(&run))).await?;
                }
                RunEvent::Resync => run = self.snapshot().await?,
                RunEvent::Setup(setup) => self.send(Event::Setup(wire::setup(setup))).await?,
                RunEvent::Committed { log_seq } => {
                    self.catch_up(*log_seq).await?;
                    run.log_seq = run.log_seq.max(self.cursor);
                }
                RunEvent::TestChanged { test_id } => {
                    if let Some(test) = self.service.store.get_test(*test_id).await? {
                        self.names.insert(test.id, test.name.clone());
                        self.send(Event::Test(wire::test(&test))).await?;
                    }
                }
                RunEvent::TestrunChanged => {
                    if let Some(changed) = self.service.store.get_testrun(self.id, false).await? {
                        if changed.log_seq > self.cursor {
                            self.catch_up(changed.log_seq).await?;
                        }
                        run = changed;
                        self.send(Event::Testrun(wire::testrun(&run))).await?;
                    }
                }
                RunEvent::Deleted => {
                    return Err(Stop::Fail(Error::NotFound(format!(
                        "testrun {} was deleted",
                        self.id
                    ))));
                }
            }
        }
    }

    /// Sends the Testrun as it is now, then every line after the cursor.
    async fn snapshot(&mut self) -> Result<Testrun, Stop> {
        let run = self.service.get(self.id).await?;
        if self.cursor == i64::MAX {
            self.cursor = run.log_seq;
        }
        self.names = run.tests.iter().map(|t| (t.id, t.name.clone())).collect();
        let mut snapshot = wire::testrun(&run);
        let (ws, setups) = self.service.content.extras(self.id).await?;
        if let Some(ws) = ws {
            wire::add_workspace(&mut snapshot, &ws, &setups);
        }
        self.send(Event::Snapshot(snapshot)).await?;
        let mut run = run;
        run.tests.clear();
        self.catch_up(run.log_seq).await?;
        Ok(run)
    }

    /// Reads and sends stored lines after the cursor up to at least `upto`.
    async fn catch_up(&mut self, upto: i64) -> Result<(), Stop> {
        while self.cursor < upto {
            let page = self
                .service
                .store
                .read_run_log(self.id, self.cursor, CATCH_UP_PAGE)
                .await?;
            if page.is_empty() {
                break;
            }
            self.send_lines(&page).await?;
        }
        Ok(())
    }

    /// Sends lines (in run_seq order) grouped into per-test events.
    async fn send_lines(&mut self, lines: &[LogLine]) -> Result<(), Stop> {
        let mut start = 0;
        while start < lines.len() {
            let test_id = lines[start].test_id;
            let mut end = start + 1;
            while end < lines.len()
                && lines[end].test_id == test_id
                && lines[end].attempt == lines[start].attempt
                && end - start < MAX_LINES_PER_EVENT
            {
                end += 1;
            }
            let chunk = &lines[start..end];
            let name = self.names.get(&test_id).cloned().unwrap_or_default();
            self.cursor = chunk.last().map_or(self.cursor, |l| l.run_seq);
            self.send(Event::Log(wire::log_lines(&name, chunk))).await?;
            start = end;
        }
        Ok(())
    }

    async fn send(&self, event: Event) -> Result<(), Stop> {
        self.tx
            .send(Ok(WireEvent::Message(pb::TestrunEvent {
                cursor: self.cursor.max(0) as u64,
                event: Some(event),
            })))
            .await
            .map_err(|_| Stop::Gone)
    }
}

/// Terminal, and no test is still held by a runner.
fn finished(run: &Testrun) -> bool {
    run.status.is_terminal() && run.counts.running == 0
}

/// Streams list changes that pass `filter` until the client goes away.
async fn run_list_watch(
    service: Testruns,
    filter: ListFilter,
    tx: mpsc::Sender<Result<pb::TestrunsEvent>>,
) {
    let mut rx = service.hub.subscribe_list();
    loop {
        let received = tokio::select! {
            r = rx.recv() => r,
            () = tx.closed() => return,
        };
        let event = match received {
            Ok(e) => e,
            Err(RecvError::Lagged(missed)) => {
                // The list page re-reads on any gap; tell it.
                let _ = tx
                    .send(Err(Error::DataLoss(format!(
                        "watcher fell {missed} events behind; list again and re-watch"
                    ))))
                    .await;
                return;
            }
            Err(RecvError::Closed) => return,
        };
        let message = match &*event {
            ListEvent::Created(run) if filter.matches(run) => {
                testruns_event::Event::Created(wire::testrun(run))
            }
            // A run that leaves the filter is still sent, so lists drop it.
            ListEvent::Changed(run)
                if filter.username.as_deref().is_none_or(|u| u == run.username) =>
            {
                testruns_event::Event::Changed(wire::testrun(run))
            }
            ListEvent::Deleted(id) => testruns_event::Event::Deleted(*id),
            _ => continue,
        };
        if tx
            .send(Ok(pb::TestrunsEvent {
                event: Some(message),
            }))
            .await
            .is_err()
        {
            return;
        }
    }
}
