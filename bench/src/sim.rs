//! Simulated runners: lightweight clients of the runner protocol, many per
//! process. Each has its own connection, Registers with one slot, answers
//! every Assign at once with Finished PASSED, and sends heartbeats.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use testrunner_proto::v1::{
    Finished, Heartbeat, Outcome, ProtocolVersion, Register, RunnerMessage,
    coordinator_message::Message as In, runner_message::Message as Out,
    runner_service_client::RunnerServiceClient,
};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

/// Connections opened at once while the fleet attaches.
const CONNECT_PARALLELISM: usize = 64;

/// Counters shared by the fleet.
#[derive(Debug, Default)]
pub struct Counters {
    /// Runners that got Welcome.
    pub welcomed: AtomicUsize,
    /// ResultAcks received.
    pub acked: AtomicUsize,
    /// `acked` at which `done` fires.
    pub target: AtomicUsize,
    pub done: Notify,
    pub errors: Mutex<Vec<String>>,
}

/// Simulated runners running as tasks; aborted (connections closed) on drop.
#[derive(Debug)]
pub struct Fleet {
    pub counters: Arc<Counters>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Starts `n` simulated runners against `url`.
    pub fn start(url: &str, token: &str, n: usize, prefix: &str) -> Self {
        let counters = Arc::new(Counters {
            target: AtomicUsize::new(usize::MAX),
            ..Counters::default()
        });
        let gate = Arc::new(Semaphore::new(CONNECT_PARALLELISM));
        let tasks = (0..n)
            .map(|i| {
                let (url, token, counters, gate) = (
                    url.to_owned(),
                    token.to_owned(),
                    Arc::clone(&counters),
                    Arc::clone(&gate),
                );
                let name = format!("{prefix}-{i:05}");
                tokio::spawn(async move {
                    if let Err(err) = sim(&url, &token, &name, &counters, &gate).await {
                        counters
                            .errors
                            .lock()
                            .expect("errors lock")
                            .push(format!("{name}: {err:#}"));
                    }
                })
            })
            .collect();
        Self { counters, tasks }
    }

    /// Waits until every runner got Welcome.
    pub async fn wait_welcomed(&self, limit: Duration) -> anyhow::Result<()> {
        let n = self.tasks.len();
        let start = std::time::Instant::now();
        loop {
            let welcomed = self.counters.welcomed.load(Ordering::Relaxed);
            if welcomed >= n {
                return Ok(());
            }
            self.check_errors()?;
            if start.elapsed() > limit {
                bail!("{welcomed} of {n} simulated runners attached within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Fires `done` once `acked` reaches `target` (counted from now).
    pub fn expect_acks(&self, target: usize) {
        let already = self.counters.acked.load(Ordering::SeqCst);
        self.counters
            .target
            .store(already + target, Ordering::SeqCst);
    }

    /// Waits for the target set by `expect_acks`.
    pub async fn wait_acks(&self, limit: Duration) -> anyhow::Result<()> {
        let c = &self.counters;
        tokio::time::timeout(limit, async {
            while c.acked.load(Ordering::SeqCst) < c.target.load(Ordering::SeqCst) {
                // Bounded by the timeout around it; the short sleep also
                // covers a notification raced before this wait.
                let _ = tokio::time::timeout(Duration::from_millis(5), c.done.notified()).await;
            }
        })
        .await
        .with_context(|| {
            format!(
                "{} of {} results acknowledged within {limit:?}; errors: {:?}",
                c.acked.load(Ordering::SeqCst),
                c.target.load(Ordering::SeqCst),
                self.first_errors()
            )
        })
    }

    fn first_errors(&self) -> Vec<String> {
        let errors = self.counters.errors.lock().expect("errors lock");
        errors.iter().take(3).cloned().collect()
    }

    fn check_errors(&self) -> anyhow::Result<()> {
        let errors = self.first_errors();
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("simulated runners failed: {errors:?}")
        }
    }

    /// Runs until the process is killed (the `sim-runners` helper).
    pub async fn park(mut self) {
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn sim(
    url: &str,
    token: &str,
    name: &str,
    counters: &Counters,
    gate: &Semaphore,
) -> anyhow::Result<()> {
    let permit = gate.acquire().await?;
    let channel = crate::api::channel(url).await?;
    let (tx, rx) = mpsc::channel::<RunnerMessage>(64);
    tx.send(RunnerMessage {
        message: Some(Out::Register(Register {
            instance_id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            labels: Default::default(),
            slots: 1,
            // No queue: each simulated runner holds one test at a time.
            queue: 0,
            version: "bench".into(),
            protocol: ProtocolVersion::ProtocolVersion1 as i32,
            resume: Vec::new(),
        })),
    })
    .await?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let mut inbound = RunnerServiceClient::new(channel)
        .attach(request)
        .await?
        .into_inner();
    let heartbeat = match inbound.message().await?.and_then(|m| m.message) {
        Some(In::Welcome(w)) => w
            .heartbeat_interval
            .as_ref()
            .and_then(|d| Duration::try_from(*d).ok())
            .map_or(Duration::from_secs(3), |d| d.max(Duration::from_millis(50))),
        other => bail!("expected Welcome, got {other:?}"),
    };
    counters.welcomed.fetch_add(1, Ordering::SeqCst);
    drop(permit);

    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        tokio::select! {
            message = inbound.message() => {
                let Some(message) = message? else { return Ok(()) };
                match message.message {
                    Some(In::Assign(a)) => {
                        let finished = Finished {
                            assignment_id: a.assignment_id,
                            outcome: Outcome::Passed as i32,
                            exit_code: Some(0),
                            duration: Some(prost_types::Duration { seconds: 0, nanos: 0 }),
                            error: String::new(),
                            log_lines: 0,
                        };
                        tx.send(RunnerMessage { message: Some(Out::Finished(finished)) }).await?;
                    }
                    Some(In::Cancel(c)) => {
                        let finished = Finished {
                            assignment_id: c.assignment_id,
                            outcome: Outcome::Cancelled as i32,
                            ..Finished::default()
                        };
                        tx.send(RunnerMessage { message: Some(Out::Finished(finished)) }).await?;
                    }
                    Some(In::ResultAck(_)) => {
                        let acked = counters.acked.fetch_add(1, Ordering::SeqCst) + 1;
                        if acked >= counters.target.load(Ordering::SeqCst) {
                            counters.done.notify_one();
                        }
                    }
                    Some(In::LogAck(_)) | Some(In::Welcome(_)) | Some(In::SetupAck(_)) | None => {}
                }
            }
            _ = beat.tick() => {
                tx.send(RunnerMessage { message: Some(Out::Heartbeat(Heartbeat {})) }).await?;
            }
        }
    }
}
