//! The tests' processes as the session loop sees them: it starts and kills
//! them when the state machine says so, and takes their lines and ends
//! from one channel.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::exec::{self, ExecEvent, ExecSettings, Job, Stop};

/// Events the tests may send before the loop takes them.
const EVENTS: usize = 4096;

/// Running tests: a way to stop each, and their events.
#[derive(Debug)]
pub struct Processes {
    settings: Arc<ExecSettings>,
    events_tx: mpsc::Sender<ExecEvent>,
    events_rx: mpsc::Receiver<ExecEvent>,
    stops: HashMap<String, watch::Sender<Stop>>,
}

impl Processes {
    pub fn new(settings: Arc<ExecSettings>) -> Self {
        let (events_tx, events_rx) = mpsc::channel(EVENTS);
        Self {
            settings,
            events_tx,
            events_rx,
            stops: HashMap::new(),
        }
    }

    /// Starts a test in a task of its own.
    pub fn start(&mut self, job: Job) {
        tracing::debug!(assignment_id = %job.assignment_id, name = %job.name, "test started");
        let (stop, stopped) = watch::channel(Stop::Run);
        self.stops.insert(job.assignment_id.clone(), stop);
        tokio::spawn(exec::run(
            job,
            Arc::clone(&self.settings),
            self.events_tx.clone(),
            stopped,
        ));
    }

    /// Kills a test's process group (it then ends as usual).
    pub fn kill(&self, assignment_id: &str) {
        if let Some(stop) = self.stops.get(assignment_id) {
            let _ = stop.send(Stop::Kill);
        }
    }

    /// The next line or end of any test (cancel-safe).
    pub async fn next(&mut self) -> Option<ExecEvent> {
        let event = self.events_rx.recv().await;
        if let Some(ExecEvent::Done { assignment_id, .. }) = &event {
            self.stops.remove(assignment_id);
        }
        event
    }
}
