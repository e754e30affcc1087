//! Test paths relative to a workspace root (`tests/unit/test_api.py`,
//! optionally `::selector`).

/// A test name in a workspace that breaks a rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct PathError(pub String);

/// Splits `path::selector` at the first `::`.
pub fn split_selector(name: &str) -> (&str, Option<&str>) {
    match name.split_once("::") {
        Some((path, selector)) => (path, Some(selector)),
        None => (name, None),
    }
}

/// Checks the path part of a test name in a workspace and returns its
/// segments: relative, no empty, "." or ".." segment, every segment a valid
/// name, at most 4096 bytes in all.
pub fn validate_test_path(name: &str) -> Result<Vec<&str>, PathError> {
    if name.len() > 4096 {
        return Err(PathError("longer than 4096 bytes".into()));
    }
    let (path, _selector) = split_selector(name);
    if path.is_empty() {
        return Err(PathError("empty path".into()));
    }
    if path.starts_with('/') {
        return Err(PathError(format!(
            "{path:?} must be relative to the workspace root"
        )));
    }
    let mut segments = Vec::new();
    for seg in path.split('/') {
        crate::tree::validate_name(seg).map_err(|p| PathError(format!("{path:?}: {p}")))?;
        segments.push(seg);
    }
    if name.chars().any(|c| c == '\0') {
        return Err(PathError("contains NUL".into()));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            validate_test_path("tests/test_a.py::TestX::test_y").unwrap(),
            vec!["tests", "test_a.py"]
        );
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/", "a\0b"] {
            assert!(validate_test_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(split_selector("a.py::T"), ("a.py", Some("T")));
    }
}
