//! The runner fleet as operators see it (RunnerAdminService): attached
//! runners, and the tokens runners attach with.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use super::{Millis, RunnerInfo};
use crate::error::{Error, Result};

/// A runner whose lease has not run out, as ListRunners shows it.
#[derive(Debug, Clone)]
pub struct RunnerView {
    pub info: RunnerInfo,
    pub registered_at: Millis,
    pub lease_until: Millis,
    pub draining: bool,
    /// Tests it holds now.
    pub running: Vec<RunnerTest>,
}

/// A test a runner holds.
#[derive(Debug, Clone)]
pub struct RunnerTest {
    pub testrun_id: i64,
    pub test_id: i64,
    pub name: String,
    pub started_at: Option<Millis>,
}

/// An issued runner token (never its secret).
#[derive(Debug, Clone)]
pub struct RunnerToken {
    pub name: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
}

/// Whether a runner's stream may go on: read at every heartbeat tick, so
/// a drain or a revocation made through any coordinator reaches it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub draining: bool,
    /// The token it attached with was revoked.
    pub revoked: bool,
}

/// Checks a token name: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn validate_token_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            format!("{name:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"),
        ))
    }
}

/// A new secret: 256 random bits, URL-safe, with a prefix that says what
/// it is when it turns up in a log or a leaked file.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("trr_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What is stored of a secret. A fast unsalted hash is enough for 256
/// random bits (nothing to guess), and lets an attach look the token up.
pub fn hash_secret(secret: &str) -> String {
    format!("{:x}", Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names() {
        for good in ["pool-gpu", "a", "A.b_c-9", &"x".repeat(64)] {
            assert!(validate_token_name(good).is_ok(), "{good}");
        }
        for bad in ["", "pool gpu", "pool/gpu", "é", &"x".repeat(65)] {
            let err = validate_token_name(bad).unwrap_err().to_string();
            assert!(err.contains("name"), "{err}");
        }
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.len() > 40);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert_eq!(hash_secret(&a).len(), 64);
    }
}
