//! A runner's new stream: its Register checked, a new epoch recorded, the
//! assignments it may keep resumed, and the session attached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testrunner_proto::v1::{self as pb, Cancel, Welcome, coordinator_message::Message as Out};

use super::Runners;
use super::ingest::max_batch_bytes;
use crate::domain::{RunnerInfo, now_millis};
use crate::engine::dispatch::{Held, Outbound, Session};
use crate::error::{Error, Result};
use crate::live::hub::{ListEvent, RunEvent};

impl Runners {
    /// Registers a new stream of a runner and attaches its session: from
    /// now on the dispatcher hands it work through `tx`.
    /// `token_name` is the runner token it attached with ('' if shared).
    pub async fn register(
        &self,
        register: &pb::Register,
        token_name: &str,
        tx: Outbound,
    ) -> Result<Arc<Session>> {
        let mut info = validate_register(register)?;
        info.token_name = token_name.to_owned();
        let lease_ms = self.settings.lease.as_millis() as i64;
        // A new epoch for this runner: its older streams (here or on another
        // coordinator) can claim nothing more. Keep what the runner still
        // holds and we still recognise; tell it to drop the rest (rule 7);
        // hand back what we think it holds but it does not list.
        let now = now_millis();
        let registration = self
            .store
            .register_runner(&info, now + lease_ms, &register.resume, now)
            .await?;
        for testrun_id in &registration.requeued {
            self.hub.publish(*testrun_id, RunEvent::Resync);
            if let Ok(Some(run)) = self.store.get_testrun(*testrun_id, false).await {
                self.hub.publish_list(ListEvent::Changed(run));
            }
        }
        if !registration.requeued.is_empty() {
            tracing::info!(runner = %info.name, testruns = ?registration.requeued, "tests the runner never received were requeued");
        }
        let resumed = registration.resumed;
        let mut held: HashMap<String, Held> = resumed
            .iter()
            .map(|r| {
                let h = Held {
                    testrun_id: r.testrun_id,
                    name: r.name.clone(),
                    revoked: false,
                    since: Instant::now(),
                };
                (r.assignment_id.clone(), h)
            })
            .collect();
        let stale: Vec<String> = register
            .resume
            .iter()
            .filter(|id| !held.contains_key(*id))
            .cloned()
            .collect();
        for id in &stale {
            let h = Held {
                testrun_id: 0,
                name: String::new(),
                revoked: true,
                since: Instant::now(),
            };
            held.insert(id.clone(), h);
        }
        let session = Arc::new(Session::new(info.clone(), registration.epoch, tx, held));
        session
            .send(Out::Welcome(Welcome {
                runner_id: info.id.clone(),
                heartbeat_interval: Some(duration(self.settings.heartbeat)),
                lease: Some(duration(self.settings.lease)),
                max_lines_per_batch: self.settings.max_lines_per_batch,
                max_line_bytes: self.settings.max_line_bytes,
                max_batch_bytes: max_batch_bytes(&self.settings),
            }))
            .await;
        for id in stale {
            session
                .send(Out::Cancel(Cancel {
                    assignment_id: id,
                    reason: "assignment no longer held by this runner".into(),
                    forget: true,
                }))
                .await;
        }
        // Tests of a Testrun cancelled while the runner was away.
        for r in resumed.iter().filter(|r| r.cancelled) {
            session
                .send(Out::Cancel(Cancel {
                    assignment_id: r.assignment_id.clone(),
                    reason: "testrun cancelled".into(),
                    forget: false,
                }))
                .await;
        }
        if let Some(old) = self.dispatcher.attach(Arc::clone(&session)) {
            old.close_with(Error::Aborted(
                "replaced by a newer stream of the same runner".into(),
            ))
            .await;
        }
        tracing::info!(runner_id = %info.id, runner = %info.name, slots = info.slots, labels = ?info.labels, resumed = resumed.len(), "runner attached");
        // Testruns that waited for a runner like this one stop waiting.
        crate::engine::pools::refresh_waiting(&*self.store, &self.hub).await;
        Ok(session)
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

/// Checks a Register message and turns it into the runner's record.
pub fn validate_register(r: &pb::Register) -> Result<RunnerInfo> {
    let bad = |field: &str, message: &str| Error::invalid(format!("register.{field}"), message);
    if pb::ProtocolVersion::try_from(r.protocol) != Ok(pb::ProtocolVersion::ProtocolVersion1) {
        return Err(Error::FailedPrecondition(format!(
            "register.protocol: version {} is not supported (this coordinator speaks 1)",
            r.protocol
        )));
    }
    if r.instance_id.is_empty() || r.instance_id.len() > 64 {
        return Err(bad("instance_id", "must be 1 to 64 bytes"));
    }
    let name_chars = r.name.chars().count();
    if name_chars == 0 || name_chars > 64 || r.name.chars().any(char::is_control) {
        return Err(bad("name", "must be 1 to 64 printable characters"));
    }
    if r.slots == 0 || r.slots > 1024 {
        return Err(bad("slots", "must be 1 to 1024"));
    }
    if r.queue > 1024 {
        return Err(bad("queue", "must be 0 to 1024"));
    }
    // Slots plus queue (2,048 at most), and assignments the coordinator
    // disowned whose processes are still being killed.
    if r.resume.len() > 4096 {
        return Err(bad(
            "resume",
            "lists more assignments than any runner can hold",
        ));
    }
    let labels: crate::domain::Labels = r.labels.clone().into_iter().collect();
    crate::domain::pools::check_runner_labels(&labels)?;
    Ok(RunnerInfo {
        id: r.instance_id.clone(),
        name: r.name.clone(),
        slots: r.slots as i32,
        queue: r.queue as i32,
        version: r.version.chars().take(64).collect(),
        labels,
        token_name: String::new(),
    })
}
