//! Digests and `Directory` trees as the runner reads them (content.proto):
//! the SHA-256 of bytes, a digest's file name in the cache, and the checks
//! a tree from the coordinator must pass before any of it touches disk.

use std::fmt;
use std::io;

use sha2::{Digest as _, Sha256};
use testrunner_proto::v1 as pb;

/// A blob's name: its SHA-256 (lowercase hex) and size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId {
    pub hash: String,
    pub size: u64,
}

impl BlobId {
    /// Checks a digest from the wire: 64 lowercase hex characters and a
    /// size that is not negative.
    pub fn of(digest: &pb::Digest) -> Result<Self, String> {
        if digest.hash.len() != 64
            || !digest
                .hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "digest hash {:?}: not 64 lowercase hex characters",
                digest.hash
            ));
        }
        let size = u64::try_from(digest.size_bytes)
            .map_err(|_| format!("digest size {}: negative", digest.size_bytes))?;
        Ok(Self {
            hash: digest.hash.clone(),
            size,
        })
    }

    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self {
            hash: hex(&Sha256::digest(bytes)),
            size: bytes.len() as u64,
        }
    }

    pub fn to_proto(&self) -> pb::Digest {
        pb::Digest {
            hash: self.hash.clone(),
            size_bytes: self.size as i64,
        }
    }

    /// Its file name in the cache.
    pub fn file_name(&self) -> String {
        format!("{}-{}", self.hash, self.size)
    }

    /// The inverse of `file_name`, for entries found on disk.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let (hash, size) = name.split_once('-')?;
        Self::of(&pb::Digest {
            hash: hash.to_owned(),
            size_bytes: size.parse().ok()?,
        })
        .ok()
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.hash, self.size)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// SHA-256 computed over bytes as they go by, with their count.
#[derive(Debug, Default, Clone)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> BlobId {
        BlobId {
            hash: hex(&self.sha.finalize()),
            size: self.len,
        }
    }
}

/// One file of a tree, at its path relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    pub path: String,
    pub blob: BlobId,
    pub executable: bool,
}

/// A whole tree, flattened: every directory (parents first) and file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub dirs: Vec<String>,
    pub files: Vec<TreeFile>,
}

impl Tree {
    /// Bytes of all its files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.blob.size).sum()
    }
}

/// Decodes one `Directory` blob (verified against its digest) and checks
/// it by the shared rules (`testrunner-content`: canonical bytes, one path
/// segment per name, sorted, unique). `at` names the directory in errors.
pub fn decode_directory(bytes: &[u8], at: &str) -> Result<pb::Directory, String> {
    let field = if at.is_empty() {
        "workspace".to_owned()
    } else {
        format!("workspace/{at}")
    };
    testrunner_content::decode_directory(bytes, &field).map_err(|e| e.to_string())
}

/// Whether an I/O error is a full disk (or quota), which ends the tests
/// ERROR with a message saying so rather than being retried.
pub fn is_disk_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// An I/O error as the message the tests end with.
pub fn describe(err: &io::Error, doing: &str) -> String {
    if is_disk_full(err) {
        format!("disk full while {doing}: {err}")
    } else {
        format!("{doing}: {err}")
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn digests_are_checked_and_named() {
        let id = BlobId::of_bytes(b"hello");
        assert_eq!(
            id.hash,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(BlobId::from_file_name(&id.file_name()), Some(id.clone()));
        assert_eq!(BlobId::of(&id.to_proto()), Ok(id));
        for bad in ["", "ABCD", &"g".repeat(64), &"A".repeat(64)] {
            let err = BlobId::of(&pb::Digest {
                hash: bad.into(),
                size_bytes: 1,
            })
            .unwrap_err();
            assert!(err.contains("hex"), "{err}");
        }
        let err = BlobId::of(&pb::Digest {
            hash: "a".repeat(64),
            size_bytes: -1,
        })
        .unwrap_err();
        assert!(err.contains("negative"), "{err}");
        assert_eq!(BlobId::from_file_name("tmp-xyz"), None);
    }

    #[test]
    fn directories_with_unsafe_or_duplicate_names_are_refused() {
        let file = |name: &str| pb::FileNode {
            name: name.into(),
            digest: Some(BlobId::of_bytes(b"").to_proto()),
            is_executable: false,
        };
        for bad in ["..", ".", "a/b", "a\0b", "a\nb"] {
            let dir = pb::Directory {
                files: vec![file(bad)],
                directories: vec![],
            };
            let err = decode_directory(&dir.encode_to_vec(), "sub").unwrap_err();
            assert!(err.contains("workspace/sub"), "{bad:?}: {err}");
        }
        let dir = pb::Directory {
            files: vec![file("x")],
            directories: vec![pb::DirectoryNode {
                name: "x".into(),
                digest: Some(BlobId::of_bytes(b"").to_proto()),
            }],
        };
        let err = decode_directory(&dir.encode_to_vec(), "").unwrap_err();
        assert!(err.contains("duplicate"), "{err}");
        let err = decode_directory(b"\xff\xff\xff", "sub").unwrap_err();
        assert!(err.contains("not a valid Directory"), "{err}");
    }
}
