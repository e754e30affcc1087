//! The rules of a `Directory` and its canonical encoding.
//!
//! prost encodes fields in field-number order and omits default values,
//! which is protobuf's canonical form: equal trees give equal bytes, so
//! equal digests. `decode_directory` also re-encodes and compares, so a
//! blob with the same meaning but other bytes (unknown fields, a default
//! value written out) is refused: otherwise one tree could have two digests.

use prost::Message as _;
use testrunner_proto::v1::Directory;

use crate::digest::{DigestError, check_digest};

/// A `Directory` that breaks a rule. Messages name the entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("{field}: {problem}")]
    BadName { field: String, problem: String },
    #[error("{field}: {name:?} is not sorted (must come after {previous:?})")]
    Unsorted {
        field: String,
        name: String,
        previous: String,
    },
    #[error("{field}: duplicate name {name:?}")]
    Duplicate { field: String, name: String },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("{field}: not a valid Directory: {problem}")]
    Undecodable { field: String, problem: String },
}

/// Checks one path segment: not empty, no '/', '\', NUL or control
/// characters, not "." or "..", at most 255 bytes.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not allowed"));
    }
    if name.len() > 255 {
        return Err(format!("name longer than 255 bytes: {name:?}"));
    }
    if name.contains('/') || name.contains('\\') {
        return Err(format!(
            "{name:?} must be one path segment (no '/' or '\\')"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?} contains NUL or a control character"));
    }
    Ok(())
}

/// Checks a decoded `Directory`: valid names, each list sorted bytewise, no
/// name twice across files and directories, well-formed digests. `field`
/// prefixes every message (`workspace` for the root, or a path below it).
pub fn validate_directory(dir: &Directory, field: &str) -> Result<(), TreeError> {
    check_sorted(
        dir.files.iter().map(|f| f.name.as_str()),
        &format!("{field}.files"),
    )?;
    check_sorted(
        dir.directories.iter().map(|d| d.name.as_str()),
        &format!("{field}.directories"),
    )?;
    for (i, f) in dir.files.iter().enumerate() {
        check_digest(f.digest.as_ref(), &format!("{field}.files[{i}].digest"))?;
    }
    for (i, d) in dir.directories.iter().enumerate() {
        check_digest(
            d.digest.as_ref(),
            &format!("{field}.directories[{i}].digest"),
        )?;
    }
    // Both lists are sorted: a merge finds a name present in both.
    let (mut fi, mut di) = (0, 0);
    while fi < dir.files.len() && di < dir.directories.len() {
        let (a, b) = (&dir.files[fi].name, &dir.directories[di].name);
        match a.cmp(b) {
            std::cmp::Ordering::Less => fi += 1,
            std::cmp::Ordering::Greater => di += 1,
            std::cmp::Ordering::Equal => {
                return Err(TreeError::Duplicate {
                    field: field.to_owned(),
                    name: a.clone(),
                });
            }
        }
    }
    Ok(())
}

fn check_sorted<'a>(names: impl Iterator<Item = &'a str>, field: &str) -> Result<(), TreeError> {
    let mut previous: Option<&str> = None;
    for (i, name) in names.enumerate() {
        validate_name(name).map_err(|problem| TreeError::BadName {
            field: format!("{field}[{i}].name"),
            problem,
        })?;
        if let Some(p) = previous {
            match p.as_bytes().cmp(name.as_bytes()) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(TreeError::Duplicate {
                        field: field.to_owned(),
                        name: name.to_owned(),
                    });
                }
                std::cmp::Ordering::Greater => {
                    return Err(TreeError::Unsorted {
                        field: field.to_owned(),
                        name: name.to_owned(),
                        previous: p.to_owned(),
                    });
                }
            }
        }
        previous = Some(name);
    }
    Ok(())
}

/// The canonical bytes of a `Directory` (its blob).
pub fn encode_directory(dir: &Directory) -> Vec<u8> {
    dir.encode_to_vec()
}

/// Decodes a `Directory` blob and checks it: it must decode, be in
/// canonical form, and follow [`validate_directory`].
pub fn decode_directory(bytes: &[u8], field: &str) -> Result<Directory, TreeError> {
    let dir = Directory::decode(bytes).map_err(|e| TreeError::Undecodable {
        field: field.to_owned(),
        problem: e.to_string(),
    })?;
    if dir.encode_to_vec() != bytes {
        return Err(TreeError::Undecodable {
            field: field.to_owned(),
            problem: "not in canonical encoding (unknown fields or defaults written out)".into(),
        });
    }
    validate_directory(&dir, field)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::digest_of;
    use testrunner_proto::v1::{DirectoryNode, FileNode};

    fn file(name: &str) -> FileNode {
        FileNode {
            name: name.into(),
            digest: Some(digest_of(name.as_bytes())),
            is_executable: false,
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", "a\u{7f}"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name("test_x.py").is_ok());
    }

    #[test]
    fn unsorted_and_duplicates_are_refused() {
        let dir = Directory {
            files: vec![file("b"), file("a")],
            directories: vec![],
        };
        let err = validate_directory(&dir, "workspace").unwrap_err();
        assert!(matches!(err, TreeError::Unsorted { .. }), "{err}");
        let dir = Directory {
            files: vec![file("a"), file("a")],
            directories: vec![],
        };
        assert!(matches!(
            validate_directory(&dir, "w").unwrap_err(),
            TreeError::Duplicate { .. }
        ));
        let dir = Directory {
            files: vec![file("a")],
            directories: vec![DirectoryNode {
                name: "a".into(),
                digest: Some(digest_of(b"")),
            }],
        };
        assert!(matches!(
            validate_directory(&dir, "w").unwrap_err(),
            TreeError::Duplicate { .. }
        ));
    }

    #[test]
    fn decode_checks_canonical_form() {
        let dir = Directory {
            files: vec![file("a"), file("b")],
            directories: vec![],
        };
        let bytes = encode_directory(&dir);
        assert_eq!(decode_directory(&bytes, "w").unwrap(), dir);
        assert!(decode_directory(b"\xff\xff", "w").is_err());
        let mut extra = bytes.clone();
        extra.extend_from_slice(&[0x78, 0x01]); // field 15 varint 1: unknown
        assert!(decode_directory(&extra, "w").is_err());
    }
}
