//! Runner pools by label (issue 16): a Testrun's selector, checked as
//! client input, and why its tests wait. The label syntax itself is
//! `testrunner_content::label`, shared with the runners and the CLI.

use testrunner_content::label::{self, MAX_SELECTOR_LABELS};

use super::{Labels, Testrun, TestrunStatus};
use crate::error::{Error, Result};

/// Checks a create request's selector; errors name `selector` or the
/// offending `selector["key"]`.
pub fn check_selector(selector: &Labels) -> Result<()> {
    if selector.len() > MAX_SELECTOR_LABELS {
        return Err(Error::invalid(
            "selector",
            format!(
                "more than {MAX_SELECTOR_LABELS} labels (got {})",
                selector.len()
            ),
        ));
    }
    for (key, value) in selector {
        label::check_label(key, value)
            .map_err(|m| Error::invalid(format!("selector[{key:?}]"), m))?;
    }
    Ok(())
}

/// Checks the labels of a runner's Register.
pub fn check_runner_labels(labels: &Labels) -> Result<()> {
    if labels.len() > label::MAX_RUNNER_LABELS {
        return Err(Error::invalid(
            "register.labels",
            format!("more than {} labels", label::MAX_RUNNER_LABELS),
        ));
    }
    for (key, value) in labels {
        label::check_label(key, value)
            .map_err(|m| Error::invalid(format!("register.labels[{key:?}]"), m))?;
    }
    Ok(())
}

/// Labels as the `key=value` texts the store keeps and matches.
pub fn label_texts(labels: &Labels) -> Vec<String> {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// What `Testrun.waiting` should say, given the labels of every runner
/// attached to any coordinator (live lease): while the Testrun is open,
/// has queued tests and a selector none of them covers, which runner it
/// waits for; empty otherwise.
pub fn waiting_reason(run: &Testrun, runners: &[Labels]) -> String {
    let open = matches!(run.status, TestrunStatus::Created | TestrunStatus::Running);
    if !open || run.selector.is_empty() || run.counts.queued() <= 0 {
        return String::new();
    }
    if runners
        .iter()
        .any(|labels| label::matches(&run.selector, labels))
    {
        return String::new();
    }
    format!(
        "waiting for a runner with {}",
        label::canonical(&run.selector)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Counts;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(selector: Labels, status: TestrunStatus, queued: i64) -> Testrun {
        Testrun {
            id: 1,
            username: "u".into(),
            status,
            command: None,
            timeout_ms: 1000,
            created_at: 0,
            started_at: None,
            finished_at: None,
            counts: Counts {
                total: queued + 1,
                passed: 1,
                ..Counts::default()
            },
            log_seq: 0,
            tests: Vec::new(),
            cases: Default::default(),
            selector,
            waiting: String::new(),
            suite: "u".into(),
            limits: Default::default(),
        }
    }

    #[test]
    fn a_testrun_waits_only_while_no_runner_covers_its_selector() {
        let gpu = labels(&[("zone", "b"), ("gpu", "a100")]);
        let open = run(gpu.clone(), TestrunStatus::Running, 3);
        assert_eq!(
            waiting_reason(&open, &[labels(&[("os", "linux")])]),
            "waiting for a runner with gpu=a100,zone=b"
        );
        assert_eq!(
            waiting_reason(&open, &[]),
            "waiting for a runner with gpu=a100,zone=b"
        );
        // Partial match: still waiting; extra labels: fine.
        assert!(!waiting_reason(&open, &[labels(&[("gpu", "a100")])]).is_empty());
        let mut more = gpu.clone();
        more.insert("os".into(), "linux".into());
        assert_eq!(waiting_reason(&open, &[more]), "");
        // Nothing queued, no selector, or finished: not waiting.
        assert_eq!(
            waiting_reason(&run(gpu.clone(), TestrunStatus::Running, 0), &[]),
            ""
        );
        assert_eq!(
            waiting_reason(&run(Labels::new(), TestrunStatus::Created, 3), &[]),
            ""
        );
        assert_eq!(
            waiting_reason(&run(gpu, TestrunStatus::Cancelled, 3), &[]),
            ""
        );
    }

    #[test]
    fn bad_selectors_are_refused_naming_the_label() {
        let err = |s: &Labels| check_selector(s).unwrap_err().to_string();
        assert!(err(&labels(&[("gpu", "")])).contains(r#"selector["gpu"]"#));
        assert!(err(&labels(&[("", "x")])).contains(r#"selector[""]"#));
        assert!(err(&labels(&[("gpu", "a 100")])).contains(r#"selector["gpu"]"#));
        let many: Labels = (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(err(&many).contains("selector: more than 16 labels"));
        let sixteen: Labels = (0..16).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(check_selector(&sixteen).is_ok());
    }
}
