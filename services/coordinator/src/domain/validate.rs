//! Validation of client input. Every rule names the field it is about.

use std::collections::HashSet;

use crate::config::Limits;
use crate::domain::workspace::{
    MAX_ENV_BYTES, MAX_ENV_VARS, NewWorkspace, TestrunWorkspace, WorkspaceInput, WorkspaceRef,
    blob_key, check_env_name, parse_blob_key,
};
use crate::domain::{MAX_RETRIES, NewTest, NewTestrun, TestLimits, Testrun};
use crate::error::{Error, Result};

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Longest file name, in bytes (the usual file-system limit).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest command template, in bytes.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// The fields of a create request, before validation.
#[derive(Debug, Clone)]
pub struct CreateInput {
    pub username: String,
    pub tests: Vec<(String, String)>,
    pub command: Option<String>,
    pub timeout_seconds: Option<u32>,
    /// Workspace, set-up and env (issue 14); `None` when none was given.
    pub workspace: Option<crate::domain::workspace::WorkspaceInput>,
    /// `test_memory_bytes` and `test_pids` as sent.
    pub test_memory_bytes: Option<u64>,
    pub test_pids: Option<u32>,
    /// The suite; `None` means the username's.
    pub suite: Option<String>,
    /// Labels a runner must all have (issue 16); empty for any runner.
    pub selector: crate::domain::Labels,
    /// More runs a FAILED or TIMED_OUT test gets.
    pub retries: u32,
    /// Set by RerunTestrun: the Testrun being rerun.
    pub rerun_of: Option<i64>,
}

/// Checks the per-test limits a Testrun asks for: each, when given, above
/// 0 (a runner applies the lower of these and its own).
fn test_limits(memory_bytes: Option<u64>, pids: Option<u32>) -> Result<TestLimits> {
    let memory_bytes = match memory_bytes {
        None => None,
        Some(0) => return Err(Error::invalid("test_memory_bytes", "must be above 0")),
        Some(n) => Some(i64::try_from(n).map_err(|_| {
            Error::invalid(
                "test_memory_bytes",
                format!("{n} is more than any machine has"),
            )
        })?),
    };
    let pids = match pids {
        None => None,
        Some(0) => return Err(Error::invalid("test_pids", "must be above 0")),
        Some(n) => Some(i64::from(n)),
    };
    Ok(TestLimits { memory_bytes, pids })
}

/// Checks a create request against the limits and builds the Testrun to store.
pub fn new_testrun(input: CreateInput, limits: &Limits) -> Result<NewTestrun> {
    let username = input.username.trim().to_owned();
    let chars = username.chars().count();
    if chars == 0 || chars > MAX_USERNAME_CHARS {
        return Err(Error::invalid(
            "username",
            format!("must be 1 to {MAX_USERNAME_CHARS} characters (got {chars})"),
        ));
    }
    if username.chars().any(char::is_control) {
        return Err(Error::invalid(
            "username",
            "must not contain control characters",
        ));
    }

    if input.tests.is_empty() {
        return Err(Error::invalid("tests", "at least one test is required"));
    }
    if input.tests.len() > limits.max_files {
        return Err(Error::invalid(
            "tests",
            format!(
                "{} files is more than the limit of {}",
                input.tests.len(),
                limits.max_files
            ),
        ));
    }
    let has_workspace = input.workspace.as_ref().is_some_and(|w| w.root.is_some());
    let mut seen = HashSet::with_capacity(input.tests.len());
    let mut tests = Vec::with_capacity(input.tests.len());
    for (i, (name, content)) in input.tests.into_iter().enumerate() {
        if has_workspace {
            testrunner_content::validate_test_path(&name)
                .map_err(|m| Error::invalid(format!("tests[{i}].name"), m.to_string()))?;
            if !content.is_empty() {
                return Err(Error::invalid(
                    format!("tests[{i}].content"),
                    "must be empty with a workspace (the file comes from the workspace)",
                ));
            }
        } else {
            check_file_name(&name).map_err(|m| Error::invalid(format!("tests[{i}].name"), m))?;
        }
        if content.len() > limits.max_file_bytes {
            return Err(Error::invalid(
                format!("tests[{i}].content"),
                format!(
                    "{} bytes is more than the limit of {} bytes",
                    content.len(),
                    limits.max_file_bytes
                ),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(Error::invalid(
                format!("tests[{i}].name"),
                format!("duplicate file name {name:?}"),
            ));
        }
        tests.push(NewTest { name, content });
    }

    let command = match input.command {
        Some(c) if c.trim().is_empty() => None,
        Some(c) => {
            check_command(&c).map_err(|m| Error::invalid("command", m))?;
            Some(c)
        }
        None => None,
    };

    let timeout_ms = match input.timeout_seconds {
        None | Some(0) => limits.default_timeout.as_millis() as i64,
        Some(s) if u64::from(s) > limits.max_timeout.as_secs() => {
            return Err(Error::invalid(
                "timeout_seconds",
                format!("must be at most {} seconds", limits.max_timeout.as_secs()),
            ));
        }
        Some(s) => i64::from(s) * 1000,
    };

    let test_limits = test_limits(input.test_memory_bytes, input.test_pids)?;
    let suite = match input.suite {
        None => username.clone(),
        Some(s) => crate::domain::history::check_suite(&s)?,
    };
    crate::domain::pools::check_selector(&input.selector)?;
    if input.retries > MAX_RETRIES {
        return Err(Error::invalid(
            "retries",
            format!("must be 0 to {MAX_RETRIES} (got {})", input.retries),
        ));
    }

    Ok(NewTestrun {
        username,
        suite,
        command,
        timeout_ms,
        tests,
        limits: test_limits,
        retries: input.retries as i32,
        rerun_of: input.rerun_of,
        workspace: input
            .workspace
            .map(|w| new_workspace(w, limits))
            .transpose()?,
        selector: input.selector,
    })
}

/// The create request that reruns `original` with `tests` (name, content)
/// and its stored workspace settings: everything the original was created
/// with, so the rerun is validated and stored like any new Testrun. A field
/// a create request gains must be copied here too.
pub fn rerun_input(
    original: &Testrun,
    tests: Vec<(String, String)>,
    workspace: Option<TestrunWorkspace>,
    username: Option<String>,
) -> CreateInput {
    let seconds = |ms: i64| Some(u32::try_from(ms / 1000).unwrap_or(u32::MAX));
    CreateInput {
        username: username.unwrap_or_else(|| original.username.clone()),
        tests,
        command: original.command.clone(),
        timeout_seconds: seconds(original.timeout_ms),
        workspace: workspace.map(|w| WorkspaceInput {
            root: w.workspace.map(|r| parse_blob_key(&r.digest)),
            setup: w.setup,
            env: w.env,
            setup_timeout_seconds: seconds(w.setup_timeout_ms),
        }),
        retries: original.retries.max(0) as u32,
        rerun_of: Some(original.id),
        suite: Some(original.suite.clone()),
        selector: original.selector.clone(),
        test_memory_bytes: original
            .limits
            .memory_bytes
            .and_then(|n| u64::try_from(n).ok()),
        test_pids: original.limits.pids.and_then(|n| u32::try_from(n).ok()),
    }
}

/// Checks the set-up and env of a create request (the tree itself is
/// checked against the store by the engine).
fn new_workspace(input: WorkspaceInput, limits: &Limits) -> Result<NewWorkspace> {
    let setup = match input.setup {
        Some(c) if c.trim().is_empty() => None,
        Some(c) => {
            if input.root.is_none() {
                return Err(Error::invalid("setup", "needs a workspace"));
            }
            if c.len() > MAX_COMMAND_BYTES {
                return Err(Error::invalid(
                    "setup",
                    format!("must be at most {MAX_COMMAND_BYTES} bytes"),
                ));
            }
            if c.chars()
                .any(|ch| ch == '\0' || (ch.is_control() && ch != '\t'))
            {
                return Err(Error::invalid(
                    "setup",
                    "contains NUL or control characters",
                ));
            }
            Some(c)
        }
        None => None,
    };
    if input.env.len() > MAX_ENV_VARS {
        return Err(Error::invalid(
            "env",
            format!(
                "{} variables is more than the limit of {MAX_ENV_VARS}",
                input.env.len()
            ),
        ));
    }
    let mut total = 0;
    for (name, value) in &input.env {
        check_env_name(name).map_err(|m| Error::invalid(format!("env[{name:?}]"), m))?;
        if value.contains('\0') {
            return Err(Error::invalid(
                format!("env[{name:?}]"),
                "value contains NUL",
            ));
        }
        total += name.len() + value.len();
    }
    if total > MAX_ENV_BYTES {
        return Err(Error::invalid(
            "env",
            format!("{total} bytes is more than the limit of {MAX_ENV_BYTES}"),
        ));
    }
    let setup_timeout_ms = match (&setup, input.setup_timeout_seconds) {
        (None, _) => 0,
        (Some(_), None | Some(0)) => limits.default_setup_timeout.as_millis() as i64,
        (Some(_), Some(s)) if u64::from(s) > limits.max_timeout.as_secs() => {
            return Err(Error::invalid(
                "setup_timeout_seconds",
                format!("must be at most {} seconds", limits.max_timeout.as_secs()),
            ));
        }
        (Some(_), Some(s)) => i64::from(s) * 1000,
    };
    Ok(NewWorkspace {
        settings: TestrunWorkspace {
            // Files and bytes are filled in once the engine resolved the tree.
            workspace: input.root.map(|(hash, size)| WorkspaceRef {
                digest: blob_key(&hash, size),
                files: 0,
                bytes: 0,
            }),
            setup,
            env: input.env,
            setup_timeout_ms,
        },
        blobs: Vec::new(),
    })
}

/// Why a file name is unsafe to create in a runner's work directory.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "must be at most {MAX_NAME_BYTES} bytes (got {})",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a file name"));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(format!("contains {c:?} (path separators are not allowed)"));
    }
    if name.chars().any(|c| c == '\0' || c.is_control()) {
        return Err("contains NUL or control characters".into());
    }
    Ok(())
}

fn check_command(command: &str) -> Result<(), String> {
    if command.len() > MAX_COMMAND_BYTES {
        return Err(format!("must be at most {MAX_COMMAND_BYTES} bytes"));
    }
    if command
        .chars()
        .any(|c| c == '\0' || (c.is_control() && c != '\t'))
    {
        return Err("contains NUL or control characters".into());
    }
    if !command.contains("{file}") {
        return Err("must contain the placeholder {file}".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_that_could_escape_the_work_dir_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            &"x".repeat(256),
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["test_ok.sh", "weird name (1).py", "ü.sh", &"x".repeat(255)] {
            assert!(check_file_name(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn a_rerun_asks_for_everything_the_original_was_created_with() {
        use crate::domain::{Counts, TestrunStatus};
        let original = Testrun {
            id: 7,
            username: "alice".into(),
            status: TestrunStatus::Failed,
            command: Some("sh {file}".into()),
            timeout_ms: 42_000,
            created_at: 0,
            started_at: None,
            finished_at: None,
            counts: Counts::default(),
            log_seq: 0,
            tests: Vec::new(),
            cases: Default::default(),
            retries: 3,
            rerun_of: None,
            suite: "web".into(),
            selector: [("gpu".to_owned(), "a100".to_owned())].into(),
            waiting: String::new(),
            limits: crate::domain::TestLimits {
                memory_bytes: Some(1 << 30),
                pids: Some(64),
            },
        };
        let ws = TestrunWorkspace {
            workspace: Some(WorkspaceRef {
                digest: blob_key("ab", 12),
                files: 1,
                bytes: 1,
            }),
            setup: Some("make".into()),
            env: [("CI".to_owned(), "1".to_owned())].into(),
            setup_timeout_ms: 9_000,
        };
        let tests = vec![("t.sh".to_owned(), String::new())];
        let input = rerun_input(&original, tests.clone(), Some(ws), None);
        assert_eq!(input.username, "alice");
        assert_eq!(input.tests, tests);
        assert_eq!(input.command.as_deref(), Some("sh {file}"));
        assert_eq!((input.timeout_seconds, input.retries), (Some(42), 3));
        assert_eq!(input.rerun_of, Some(7));
        assert_eq!(input.suite.as_deref(), Some("web"));
        assert_eq!(input.selector, original.selector);
        assert_eq!(
            (input.test_memory_bytes, input.test_pids),
            (Some(1 << 30), Some(64))
        );
        let w = input.workspace.expect("the workspace settings");
        assert_eq!(w.root, Some(("ab".to_owned(), 12)));
        assert_eq!(w.setup.as_deref(), Some("make"));
        assert_eq!(w.env.get("CI").map(String::as_str), Some("1"));
        assert_eq!(w.setup_timeout_seconds, Some(9));
        let other = rerun_input(&original, Vec::new(), None, Some("bob".into()));
        assert_eq!(other.username, "bob");
        assert!(other.workspace.is_none());
    }

    #[test]
    fn a_command_template_needs_the_file_placeholder() {
        assert!(check_command("pytest -q {file}").is_ok());
        assert!(check_command("pytest -q").is_err());
    }
}
