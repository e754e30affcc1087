//! Workspaces of Testruns: which tree a Testrun pins, its set-up and env,
//! and each runner's set-up step. Blobs are named by one text key,
//! `<sha256 hex>/<size>` (see migration 0030).

use std::collections::BTreeMap;

use super::Millis;

/// The text key of a blob: `<hash>/<size>`.
pub fn blob_key(hash: &str, size_bytes: i64) -> String {
    format!("{hash}/{size_bytes}")
}

/// The (hash, size) of a blob key.
pub fn parse_blob_key(key: &str) -> (String, i64) {
    match key.rsplit_once('/') {
        Some((hash, size)) => (hash.to_owned(), size.parse().unwrap_or(0)),
        None => (key.to_owned(), 0),
    }
}

/// A stored tree a Testrun uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRef {
    /// Blob key of the root `Directory`.
    pub digest: String,
    pub files: i64,
    pub bytes: i64,
}

/// What a Testrun was created with beyond its tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestrunWorkspace {
    pub workspace: Option<WorkspaceRef>,
    pub setup: Option<String>,
    pub env: BTreeMap<String, String>,
    /// 0 without a set-up.
    pub setup_timeout_ms: i64,
}

/// A validated workspace for a new Testrun, with the blobs it pins.
#[derive(Debug, Clone, Default)]
pub struct NewWorkspace {
    pub settings: TestrunWorkspace,
    /// Every blob of the tree (directories and files), each once; empty
    /// without a workspace.
    pub blobs: Vec<String>,
}

/// Status of a runner's set-up step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupStatus {
    Running,
    Passed,
    Failed,
}

impl SetupStatus {
    pub fn sql(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Passed => "PASSED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "PASSED" => Self::Passed,
            "FAILED" => Self::Failed,
            _ => Self::Running,
        }
    }
}

/// One runner's set-up step of a Testrun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub testrun_id: i64,
    pub runner_id: String,
    pub runner_name: String,
    pub status: SetupStatus,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<i64>,
    pub error: String,
    pub output: String,
    pub reused: bool,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
}

/// How a set-up ended, as a runner reported it.
#[derive(Debug, Clone, Default)]
pub struct SetupEnd {
    pub ok: bool,
    pub reused: bool,
    pub exit_code: Option<i32>,
    pub duration_ms: i64,
    pub error: String,
    pub output: String,
}

impl Setup {
    /// The error a test ends with when no runner can prepare its Testrun.
    pub fn failure_message(&self) -> String {
        let mut why = match self.exit_code {
            Some(code) => format!("exit {code}"),
            None => String::new(),
        };
        if !self.error.is_empty() {
            if !why.is_empty() {
                why.push_str(", ");
            }
            why.push_str(&self.error);
        }
        if why.is_empty() {
            why.push_str("failed");
        }
        format!("set-up failed on runner {}: {why}", self.runner_name)
    }
}

/// The workspace fields of a create request, before validation.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceInput {
    /// Root digest, its syntax already checked.
    pub root: Option<(String, i64)>,
    pub setup: Option<String>,
    pub env: BTreeMap<String, String>,
    pub setup_timeout_seconds: Option<u32>,
}

/// Most variables in `env`.
pub const MAX_ENV_VARS: usize = 128;
/// Most bytes of names and values in `env`.
pub const MAX_ENV_BYTES: usize = 32 * 1024;

/// Why an env name cannot be used, if it cannot.
pub fn check_env_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{name:?} must match [A-Za-z_][A-Za-z0-9_]*"));
    }
    if matches!(name, "PATH" | "HOME" | "TMPDIR") || name.starts_with("TESTRUNNER_") {
        return Err(format!(
            "{name:?} is the runner's own (PATH, HOME, TMPDIR, TESTRUNNER_*) and cannot be set"
        ));
    }
    Ok(())
}
