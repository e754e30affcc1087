//! ListTestCases: a Testrun's JUnit cases, failed and errored first, then
//! by name, in pages; free of gRPC types.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::testruns::{TestRef, Testruns};
use crate::domain::cases::{CaseFilter, StoredCase};
use crate::error::{Error, Result};

/// Default and largest page of ListTestCases.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Longest `name_contains`, in bytes.
const MAX_NAME_FILTER: usize = 1024;

/// A page of cases.
#[derive(Debug)]
pub struct CasePage {
    pub cases: Vec<StoredCase>,
    pub next_page_token: String,
}

impl Testruns {
    /// A page of a Testrun's cases matching `filter`. NOT_FOUND for an
    /// unknown Testrun, or a test not in it.
    pub async fn list_cases(
        &self,
        testrun_id: i64,
        filter: CaseFilter,
        page_size: u32,
        token: &str,
    ) -> Result<CasePage> {
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
        if filter
            .name_contains
            .as_ref()
            .is_some_and(|n| n.len() > MAX_NAME_FILTER || n.contains('\0'))
        {
            return Err(Error::invalid(
                "name_contains",
                format!("must be at most {MAX_NAME_FILTER} bytes, without NUL"),
            ));
        }
        let offset = if token.is_empty() {
            0
        } else {
            decode_page_token(token)?
        };
        match filter.test_id {
            Some(id) => {
                self.test(testrun_id, &TestRef::Id(id)).await?;
            }
            None => {
                if self.store.get_testrun(testrun_id, false).await?.is_none() {
                    return Err(Error::testrun_not_found(testrun_id));
                }
            }
        }
        // One more than asked: whether there is a next page.
        let mut cases = self
            .store
            .list_cases(testrun_id, &filter, offset, i64::from(size) + 1)
            .await?;
        let next_page_token = if cases.len() > size as usize {
            cases.truncate(size as usize);
            encode_page_token(offset + i64::from(size))
        } else {
            String::new()
        };
        Ok(CasePage {
            cases,
            next_page_token,
        })
    }
}

// Positions, not keys: the order (status rank, name, test, index) has no
// short unique key, and a Testrun's cases only grow while it runs.
fn encode_page_token(offset: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("cases-v1:{offset}"))
}

fn decode_page_token(token: &str) -> Result<i64> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("cases-v1:").and_then(|n| n.parse().ok()))
        .filter(|n: &i64| *n >= 0)
        .ok_or_else(|| Error::invalid("page_token", "not a token this server issued"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_page_token(&encode_page_token(300)).unwrap(), 300);
        let err = decode_page_token("bm9wZQ").unwrap_err();
        assert!(err.to_string().starts_with("page_token: "), "{err}");
    }
}
