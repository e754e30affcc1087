//! Bearer-token checks for runners and for write RPCs.

use tonic::Status;
use tonic::metadata::MetadataMap;

/// Checks `authorization: Bearer <expected>`. An empty `expected` means no
/// token is required.
pub fn check_bearer(metadata: &MetadataMap, expected: &str, what: &str) -> Result<(), Status> {
    if expected.is_empty() {
        return Ok(());
    }
    let presented = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        None => Err(Status::unauthenticated(format!(
            "missing {what}: send `authorization: Bearer <token>`"
        ))),
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(Status::unauthenticated(format!("wrong {what}"))),
    }
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
