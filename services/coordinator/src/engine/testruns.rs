//! The Testrun operations behind the API: create, read, list, cancel,
//! delete, and a test's log; free of gRPC types.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::dispatch::Dispatcher;
use crate::config::Limits;
use crate::domain::validate::{self, CreateInput};
use crate::domain::{ListFilter, Test, Testrun, now_millis};
use crate::error::{Error, Result};
use crate::live::hub::{Hub, ListEvent, RunEvent};
use crate::store::Store;

/// Default and largest page of ListTestruns.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Default and largest page of GetTestLog.
pub const DEFAULT_LOG_PAGE: u32 = 1000;
pub const MAX_LOG_PAGE: u32 = 10_000;
/// Most bytes of lines in one GetTestLog answer (well under any message
/// limit), whatever `limit` asked for.
pub const MAX_LOG_PAGE_BYTES: usize = 8 << 20;

/// Testrun operations, shared by the gRPC and HTTP adapters.
#[derive(Debug, Clone)]
pub struct Testruns {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub dispatcher: Arc<Dispatcher>,
    pub limits: Limits,
    /// Workspaces' blobs and trees (issue 14).
    pub content: super::content::Content,
}

/// A page of the Testrun list.
#[derive(Debug)]
pub struct Page {
    pub testruns: Vec<Testrun>,
    pub next_page_token: String,
    pub total: i64,
}

/// Which test of a Testrun.
#[derive(Debug, Clone)]
pub enum TestRef {
    Id(i64),
    Name(String),
}

impl Testruns {
    /// Validates and stores a Testrun, then wakes the dispatcher.
    pub async fn create(&self, input: CreateInput) -> Result<Testrun> {
        let mut new = validate::new_testrun(input, &self.limits)?;
        self.content.attach_tree(&mut new).await?;
        if let Some(i) = new.tests.iter().position(|t| t.content.contains('\0')) {
            return Err(Error::invalid(
                format!("tests[{i}].content"),
                "contains NUL bytes (test files are text)",
            ));
        }
        let mut run = self.store.create_testrun(&new, now_millis()).await?;
        tracing::info!(testrun_id = run.id, username = %run.username, tests = run.tests.len(), selector = ?run.selector, "testrun created");
        let mut summary = run.clone();
        summary.tests.clear();
        self.hub.publish_list(ListEvent::Created(summary));
        self.dispatcher.wake();
        if !run.selector.is_empty() {
            // Say at once whether any runner can take it.
            let changed = super::pools::refresh_waiting(&*self.store, &self.hub).await;
            if let Some(now) = changed.iter().find(|r| r.id == run.id) {
                run.waiting = now.waiting.clone();
            }
        }
        Ok(run)
    }

    /// One Testrun with its tests.
    pub async fn get(&self, id: i64) -> Result<Testrun> {
        self.store
            .get_testrun(id, true)
            .await?
            .ok_or_else(|| Error::testrun_not_found(id))
    }

    /// A page of Testruns, newest first.
    pub async fn list(&self, filter: &ListFilter, page_size: u32, token: &str) -> Result<Page> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(Error::invalid(
                    "page_size",
                    format!("must be at most {MAX_PAGE_SIZE}"),
                ));
            }
            n => n,
        };
        let before = if token.is_empty() {
            None
        } else {
            Some(decode_page_token(token)?)
        };
        if filter.username.as_deref().is_some_and(str::is_empty) {
            return Err(Error::invalid("username", "must not be empty when given"));
        }
        let (testruns, total) = self
            .store
            .list_testruns(filter, before, i64::from(size))
            .await?;
        let next_page_token = if testruns.len() == size as usize {
            testruns
                .last()
                .map(|r| encode_page_token(r.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Page {
            testruns,
            next_page_token,
            total,
        })
    }

    /// Cancels a Testrun: queued tests at once, running ones through their
    /// runners.
    pub async fn cancel(&self, id: i64) -> Result<Testrun> {
        let outcome = self.store.cancel_testrun(id, now_millis()).await?;
        // A runner attached nowhere right now is told when it resumes, or
        // its lease runs out and the test ends CANCELLED.
        for a in &outcome.running {
            self.dispatcher
                .cancel(&a.runner_id, &a.assignment_id, "testrun cancelled");
        }
        tracing::info!(
            testrun_id = id,
            running = outcome.running.len(),
            "testrun cancelled"
        );
        let run = outcome.testrun;
        self.hub.publish(id, RunEvent::Resync);
        self.hub.publish_list(ListEvent::Changed(run.clone()));
        self.get(run.id).await
    }

    /// Deletes a Testrun, cancelling it first if it still runs.
    pub async fn delete(&self, id: i64) -> Result<()> {
        let run = self
            .store
            .get_testrun(id, false)
            .await?
            .ok_or_else(|| Error::testrun_not_found(id))?;
        if !run.status.is_terminal() {
            match self.cancel(id).await {
                // Finished meanwhile: nothing left to cancel.
                Ok(_) | Err(Error::IllegalTransition { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        self.store.delete_testrun(id).await?;
        tracing::info!(testrun_id = id, "testrun deleted");
        self.hub.publish(id, RunEvent::Deleted);
        self.hub.publish_list(ListEvent::Deleted(id));
        Ok(())
    }

    /// Finds one test of a Testrun.
    pub async fn test(&self, testrun_id: i64, which: &TestRef) -> Result<Test> {
        let test = match which {
            TestRef::Id(id) => self
                .store
                .get_test(*id)
                .await?
                .filter(|t| t.testrun_id == testrun_id),
            TestRef::Name(name) => self.store.find_test(testrun_id, name).await?,
        };
        match test {
            Some(t) => Ok(t),
            None => {
                if self.store.get_testrun(testrun_id, false).await?.is_none() {
                    return Err(Error::testrun_not_found(testrun_id));
                }
                Err(Error::NotFound(match which {
                    TestRef::Id(id) => format!("test {id} not found in testrun {testrun_id}"),
                    TestRef::Name(n) => format!("test {n:?} not found in testrun {testrun_id}"),
                }))
            }
        }
    }

    /// A page of one test's log: the lines, and the test as it is now.
    pub async fn test_log(
        &self,
        testrun_id: i64,
        which: &TestRef,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<String>, Test)> {
        let limit = match limit {
            0 => DEFAULT_LOG_PAGE,
            n if n > MAX_LOG_PAGE => {
                return Err(Error::invalid(
                    "limit",
                    format!("must be at most {MAX_LOG_PAGE}"),
                ));
            }
            n => n,
        };
        let offset = i64::try_from(offset).map_err(|_| Error::invalid("offset", "too large"))?;
        let test = self.test(testrun_id, which).await?;
        let mut lines = self
            .store
            .read_test_log(test.id, offset, i64::from(limit))
            .await?;
        // Long lines could make a page larger than a response may be: stop
        // early; `next_offset` tells the client where to continue.
        let mut bytes = 0;
        if let Some(cut) = lines.iter().position(|l| {
            bytes += l.len() + 16;
            bytes > MAX_LOG_PAGE_BYTES
        }) {
            lines.truncate(cut.max(1));
        }
        Ok((lines, test))
    }
}

fn encode_page_token(last_id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{last_id}"))
}

fn decode_page_token(token: &str) -> Result<i64> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("v1:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| Error::invalid("page_token", "not a token this server issued"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_page_token(&encode_page_token(42)).unwrap(), 42);
        assert!(decode_page_token("garbage!").is_err());
        assert!(decode_page_token(&URL_SAFE_NO_PAD.encode("v2:1")).is_err());
    }
}
