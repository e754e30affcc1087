//! Set-up steps (runner contract rule 12): a runner says when it starts
//! preparing a Testrun's workspace and how that ended. A failed set-up
//! keeps that runner from the Testrun's tests (the claim skips it); when no
//! live runner is left that has not failed it, the Testrun's queued tests
//! end ERROR naming the failure, so nothing waits for a runner that will
//! never come.

use testrunner_proto::v1::{self as pb, SetupAck, coordinator_message::Message as Out};

use super::Runners;
use crate::domain::now_millis;
use crate::domain::workspace::SetupEnd;
use crate::engine::dispatch::Session;
use crate::error::Result;
use crate::live::hub::{ListEvent, RunEvent};
use crate::store::Store;

/// Longest set-up output stored, in bytes (the contract's 256 KiB).
const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// Longest set-up error stored, in characters.
const MAX_ERROR_CHARS: usize = 4096;

impl Runners {
    /// A runner began preparing a Testrun.
    pub async fn on_setup_started(&self, session: &Session, m: pb::SetupStarted) -> Result<()> {
        let now = now_millis();
        let setup = self
            .store
            .setup_started(m.testrun_id, &session.info.id, &session.info.name, now)
            .await?;
        tracing::info!(runner = %session.info.name, testrun_id = m.testrun_id, "set-up started");
        self.hub.publish(m.testrun_id, RunEvent::Setup(setup));
        Ok(())
    }

    /// A runner finished preparing a Testrun: store it, acknowledge it, and
    /// after a failure end what no runner can take any more.
    pub async fn on_setup_finished(&self, session: &Session, m: pb::SetupFinished) -> Result<()> {
        let end = SetupEnd {
            ok: m.ok,
            reused: m.reused,
            exit_code: m.exit_code,
            duration_ms: m
                .duration
                .and_then(|d| std::time::Duration::try_from(d).ok())
                .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64),
            error: clean(&m.error, MAX_ERROR_CHARS),
            output: tail(&m.output, MAX_OUTPUT_BYTES),
        };
        let setup = self
            .store
            .setup_finished(
                m.testrun_id,
                &session.info.id,
                &session.info.name,
                &end,
                now_millis(),
            )
            .await?;
        session.try_send(Out::SetupAck(SetupAck {
            testrun_id: m.testrun_id,
        }));
        tracing::info!(
            runner = %session.info.name,
            testrun_id = m.testrun_id,
            ok = m.ok,
            reused = m.reused,
            "set-up finished"
        );
        self.hub.publish(m.testrun_id, RunEvent::Setup(setup));
        if !m.ok {
            session.mark_failed_setup();
            end_stranded(&*self.store, &self.hub).await?;
        }
        Ok(())
    }
}

/// Ends ERROR the queued tests of Testruns that every live runner failed to
/// set up (also called by the collector's sweep, for tests a failing runner
/// released after its SetupFinished).
pub async fn end_stranded(store: &dyn Store, hub: &crate::live::hub::Hub) -> Result<()> {
    let now = now_millis();
    for (testrun_id, message) in store.stranded_by_setup(now).await? {
        let n = store.error_queued_tests(testrun_id, &message, now).await?;
        if n > 0 {
            tracing::warn!(testrun_id, tests = n, error = %message, "tests ended: no runner can set up their Testrun");
            hub.publish(testrun_id, RunEvent::Resync);
            if let Ok(Some(run)) = store.get_testrun(testrun_id, false).await {
                hub.publish_list(ListEvent::Changed(run));
            }
        }
    }
    Ok(())
}

/// Text safe for both stores (no NUL), at most `max` characters.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

/// The last `max` bytes of `s` (at a character boundary), cleaned.
fn tail(s: &str, max: usize) -> String {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    clean(&s[start..], usize::MAX)
}
