//! Bearer-token checks for runners and for write RPCs.

use subtle::ConstantTimeEq as _;
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};

/// The token of `authorization: Bearer <token>`, if one was sent.
pub fn bearer(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Checks `authorization: Bearer <expected>`. An empty `expected` means no
/// token is required.
pub fn check_bearer(metadata: &MetadataMap, expected: &str, what: &str) -> Result<()> {
    if expected.is_empty() {
        return Ok(());
    }
    match bearer(metadata) {
        None => Err(Error::Unauthenticated(format!(
            "missing {what}: send `authorization: Bearer <token>`"
        ))),
        // Compared without an early exit, so timing does not reveal a prefix.
        Some(token) if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        Some(_) => Err(Error::Unauthenticated(format!("wrong {what}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        assert!(check_bearer(&with("Bearer s3cret"), "s3cret", "token").is_ok());
        assert!(check_bearer(&with("Bearer s3cre"), "s3cret", "token").is_err());
        assert!(check_bearer(&with("s3cret"), "s3cret", "token").is_err());
        assert!(check_bearer(&MetadataMap::new(), "s3cret", "token").is_err());
        assert!(check_bearer(&MetadataMap::new(), "", "token").is_ok());
    }
}
