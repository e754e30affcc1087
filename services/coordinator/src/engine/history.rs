//! Test history behind the API (issue 16): one test's outcomes, the list
//! of suites and one suite's page. What is recorded, and when, is the
//! store's (`store::history`); durations order the queue from creation on.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::testruns::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Testruns};
use crate::domain::Millis;
use crate::domain::history::{
    Suite, SuiteSummary, TestHistory, check_limit, check_suite, check_test_name,
};
use crate::error::{Error, Result};

/// A page of the suite list.
#[derive(Debug)]
pub struct SuitePage {
    pub suites: Vec<SuiteSummary>,
    pub next_page_token: String,
}

impl Testruns {
    /// One test's history, newest first. NOT_FOUND names the suite when it
    /// has no history at all, else the test.
    pub async fn test_history(&self, suite: &str, name: &str, limit: u32) -> Result<TestHistory> {
        check_suite(suite)?;
        check_test_name(name)?;
        let limit = check_limit(limit)?;
        match self.store.test_history(suite, name, limit).await? {
            Some(history) => Ok(history),
            None if !self.store.suite_exists(suite).await? => Err(suite_not_found(suite)),
            None => Err(Error::NotFound(format!(
                "name: test {name:?} has no history in suite {suite:?}"
            ))),
        }
    }

    /// Suites most recently run first.
    pub async fn suites(&self, page_size: u32, token: &str) -> Result<SuitePage> {
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
        let after = if token.is_empty() {
            None
        } else {
            Some(decode_token(token)?)
        };
        let suites = self.store.list_suites(after, i64::from(size)).await?;
        let next_page_token = match suites.last() {
            Some(last) if suites.len() == size as usize => {
                encode_token(last.last_run_at, &last.name)
            }
            _ => String::new(),
        };
        Ok(SuitePage {
            suites,
            next_page_token,
        })
    }

    /// One suite's page.
    pub async fn suite(&self, suite: &str, limit: u32) -> Result<Suite> {
        check_suite(suite)?;
        let limit = check_limit(limit)?;
        self.store
            .get_suite(suite, limit)
            .await?
            .ok_or_else(|| suite_not_found(suite))
    }
}

fn suite_not_found(suite: &str) -> Error {
    Error::NotFound(format!("suite: {suite:?} has no history"))
}

/// The position after the last suite of a page: its last run and name.
fn encode_token(last_run_at: Millis, name: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("s1:{last_run_at}:{name}"))
}

fn decode_token(token: &str) -> Result<(Millis, String)> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let rest = s.strip_prefix("s1:")?;
            let (at, name) = rest.split_once(':')?;
            Some((at.parse().ok()?, name.to_owned()))
        })
        .ok_or_else(|| Error::invalid("page_token", "not a token this server issued"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_page_tokens_round_trip_and_garbage_is_refused() {
        let t = encode_token(42, "web:app");
        assert_eq!(decode_token(&t).unwrap(), (42, "web:app".to_owned()));
        assert!(decode_token("garbage!").is_err());
        assert!(decode_token(&URL_SAFE_NO_PAD.encode("v1:1")).is_err());
    }
}
