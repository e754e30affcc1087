//! A Testrun's `env` on top of the scrubbed environment of its tests and
//! set-up. The coordinator validates names; the runner still never lets
//! them override its own variables.

use std::collections::BTreeMap;

/// Whether `name` is the runner's to set: `PATH`, `HOME`, `TMPDIR` and
/// anything `TESTRUNNER_*`.
pub fn is_reserved(name: &str) -> bool {
    matches!(name, "PATH" | "HOME" | "TMPDIR") || name.starts_with("TESTRUNNER_")
}

/// The variables that may be set, and a note per one left out.
pub fn usable(env: &BTreeMap<String, String>) -> (Vec<(String, String)>, Vec<String>) {
    let mut set = Vec::new();
    let mut skipped = Vec::new();
    for (name, value) in env {
        if is_reserved(name) {
            skipped.push(format!("env {name}: reserved for the runner; not set"));
        } else if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            skipped.push(format!("env {name:?}: not a valid variable; not set"));
        } else {
            set.push((name.clone(), value.clone()));
        }
    }
    (set, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runners_own_variables_cannot_be_overridden() {
        let env: BTreeMap<String, String> = [
            ("CI", "true"),
            ("PYTHONPATH", "src"),
            ("PATH", "/evil"),
            ("HOME", "/evil"),
            ("TMPDIR", "/evil"),
            ("TESTRUNNER_RUNNER_TOKEN", "x"),
            ("A=B", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (set, skipped) = usable(&env);
        assert_eq!(
            set,
            [
                ("CI".to_owned(), "true".to_owned()),
                ("PYTHONPATH".into(), "src".into())
            ]
        );
        assert_eq!(skipped.len(), 5, "{skipped:?}");
    }
}
