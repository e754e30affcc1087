//! Validation of client input. Every rule names the field it is about.

use std::collections::HashSet;

use crate::config::Limits;
use crate::domain::workspace::{
    MAX_ENV_BYTES, MAX_ENV_VARS, NewWorkspace, TestrunWorkspace, WorkspaceInput, WorkspaceRef,
    blob_key, check_env_name,
};
use crate::domain::{NewTest, NewTestrun, TestLimits};
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

    Ok(NewTestrun {
        username,
        suite,
        command,
        timeout_ms,
        tests,
        limits: test_limits,
        workspace: input
            .workspace
            .map(|w| new_workspace(w, limits))
            .transpose()?,
        selector: input.selector,
    })
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
    fn a_command_template_needs_the_file_placeholder() {
        assert!(check_command("pytest -q {file}").is_ok());
        assert!(check_command("pytest -q").is_err());
    }
}
