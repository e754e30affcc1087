//! Digests: lowercase hex SHA-256 plus size.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};
use testrunner_proto::v1::Digest;

/// A digest whose syntax is wrong. The `String` in each is the field name
/// the caller gave, so messages name the field (`workspace.hash: ...`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("{0}.hash: must be 64 lowercase hex characters, got {1:?}")]
    BadHash(String, String),
    #[error("{0}.size_bytes: must not be negative, got {1}")]
    NegativeSize(String, i64),
    #[error("{0}: missing")]
    Missing(String),
}

/// Checks a digest's syntax; `field` names it in the error.
pub fn check_digest(digest: Option<&Digest>, field: &str) -> Result<(), DigestError> {
    let Some(d) = digest else {
        return Err(DigestError::Missing(field.to_owned()));
    };
    let ok = d.hash.len() == 64
        && d.hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        let shown: String = d.hash.chars().take(80).collect();
        return Err(DigestError::BadHash(field.to_owned(), shown));
    }
    if d.size_bytes < 0 {
        return Err(DigestError::NegativeSize(field.to_owned(), d.size_bytes));
    }
    Ok(())
}

/// The digest of bytes in memory.
pub fn digest_of(bytes: &[u8]) -> Digest {
    Digest {
        hash: hex::encode(Sha256::digest(bytes)),
        size_bytes: bytes.len() as i64,
    }
}

/// The digest of a stream, read in 64 KiB pieces (never whole in memory).
pub fn digest_reader(mut reader: impl Read) -> io::Result<Digest> {
    let mut writer = DigestWriter::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(writer.finish());
        }
        writer.update(&buf[..n]);
    }
}

/// Hashes bytes as they pass, for a blob that arrives in chunks.
#[derive(Default, Clone)]
pub struct DigestWriter {
    hasher: Sha256,
    size: i64,
}

impl std::fmt::Debug for DigestWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestWriter")
            .field("size", &self.size)
            .finish()
    }
}

impl DigestWriter {
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as i64;
    }

    /// Bytes hashed so far.
    pub fn size(&self) -> i64 {
        self.size
    }

    pub fn finish(self) -> Digest {
        Digest {
            hash: hex::encode(self.hasher.finalize()),
            size_bytes: self.size,
        }
    }

    /// True when the bytes hashed so far are exactly `expected`.
    pub fn matches(self, expected: &Digest) -> bool {
        let got = self.finish();
        got.hash == expected.hash && got.size_bytes == expected.size_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_blob_has_the_well_known_sha256() {
        let d = digest_of(b"");
        assert_eq!(
            d.hash,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.size_bytes, 0);
        assert_eq!(digest_reader(&b""[..]).unwrap(), d);
    }

    #[test]
    fn streamed_equals_whole() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = DigestWriter::default();
        for c in data.chunks(7777) {
            w.update(c);
        }
        assert!(w.clone().matches(&digest_of(&data)));
        assert_eq!(digest_reader(&data[..]).unwrap(), digest_of(&data));
    }

    #[test]
    fn syntax_errors_name_the_field() {
        let bad = Digest {
            hash: "ABC".into(),
            size_bytes: 1,
        };
        let err = check_digest(Some(&bad), "workspace").unwrap_err();
        assert!(err.to_string().starts_with("workspace.hash:"), "{err}");
        let neg = Digest {
            hash: "a".repeat(64),
            size_bytes: -1,
        };
        let err = check_digest(Some(&neg), "x").unwrap_err();
        assert!(err.to_string().starts_with("x.size_bytes:"), "{err}");
        assert_eq!(
            check_digest(None, "w").unwrap_err(),
            DigestError::Missing("w".into())
        );
    }
}
