//! Runner labels (`--label gpu=a100`) and Testrun selectors: one syntax,
//! checked here by the runner (its flags), the coordinator (a runner's
//! Register and a Testrun's selector) and the CLI (`--selector`), so a
//! selector that passes can always be matched by some runner's labels.
//!
//! A key and a value are each 1 to 63 characters from `A-Z a-z 0-9 . _ -`
//! (what Kubernetes allows in a label value, without the slash of a key
//! prefix). No `=` or `,`: the canonical text of a set of labels,
//! `k=v,k2=v2` sorted by key, is then unambiguous, and it is what metrics
//! and the coordinator's store use.

use std::collections::BTreeMap;

/// Longest key or value, in characters.
pub const MAX_LABEL_CHARS: usize = 63;
/// Most labels in a Testrun's selector.
pub const MAX_SELECTOR_LABELS: usize = 16;
/// Most labels a runner may register.
pub const MAX_RUNNER_LABELS: usize = 64;

/// Why a label key or value breaks the syntax, or `Ok`.
pub fn check_label_part(what: &str, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    let chars = text.chars().count();
    if chars > MAX_LABEL_CHARS {
        return Err(format!(
            "{what} {text:?} is longer than {MAX_LABEL_CHARS} characters"
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{what} {text:?} contains {c:?} (allowed: letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// Checks one label (key and value).
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    check_label_part("key", key)?;
    check_label_part("value", value)
}

/// Parses `key=value` (as given to `--label` or `--selector`).
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected key=value"))?;
    check_label(key, value).map_err(|e| format!("{text:?}: {e}"))?;
    Ok((key.to_owned(), value.to_owned()))
}

/// The canonical text of a set of labels: `k=v` sorted by key, joined by
/// commas; empty for none.
pub fn canonical(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The labels of a canonical text (the inverse of `canonical` for valid
/// labels; malformed entries are skipped).
pub fn from_canonical(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Whether a runner with `labels` may take the tests of a Testrun with
/// `selector`: it has every one of them, same key and value.
pub fn matches<'a>(
    selector: impl IntoIterator<Item = (&'a String, &'a String)>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector
        .into_iter()
        .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_syntax() {
        for good in ["gpu=a100", "os=linux", "a.b_c-d=1.2_3-x", "K=V"] {
            assert!(parse_label(good).is_ok(), "{good:?}");
        }
        for bad in [
            "gpu",
            "=a100",
            "gpu=",
            "gpu=a 100",
            "gp/u=x",
            "gpu=a,b",
            "gpu=a=b",
            "ü=x",
        ] {
            assert!(parse_label(bad).is_err(), "{bad:?}");
        }
        assert!(check_label(&"k".repeat(63), "v").is_ok());
        assert!(check_label(&"k".repeat(64), "v").is_err());
    }

    #[test]
    fn canonical_text_is_sorted_and_round_trips() {
        let labels = map(&[("zone", "b"), ("gpu", "a100")]);
        assert_eq!(canonical(&labels), "gpu=a100,zone=b");
        assert_eq!(from_canonical("gpu=a100,zone=b"), labels);
        assert_eq!(canonical(&BTreeMap::new()), "");
        assert!(from_canonical("").is_empty());
    }

    #[test]
    fn a_runner_matches_when_it_has_every_label_of_the_selector() {
        let runner = map(&[("gpu", "a100"), ("os", "linux")]);
        assert!(matches(&map(&[]), &runner));
        assert!(matches(&map(&[("gpu", "a100")]), &runner));
        assert!(matches(&runner, &runner));
        assert!(!matches(&map(&[("gpu", "h100")]), &runner));
        assert!(!matches(&map(&[("gpu", "a100"), ("zone", "b")]), &runner));
    }
}
