//! Running a Testrun's set-up command (`sh -c SETUP`) in the directory
//! being prepared, with the tests' scrubbed environment plus the Testrun's
//! `env`, in its own process group, with its own timeout, keeping the last
//! [`MAX_OUTPUT`] bytes of its output (stdout and stderr interleaved).

use std::collections::VecDeque;
use std::io::Read as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::isolation::Sandbox;

/// Output kept: the last 256 KiB (the contract's bound).
pub const MAX_OUTPUT: usize = 256 << 10;

/// How a set-up ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupRun {
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub duration: Duration,
    pub error: String,
    pub output: String,
}

/// What a set-up runs with.
#[derive(Debug, Clone)]
pub struct SetupEnv<'a> {
    pub path: &'a str,
    /// `HOME` and `TMPDIR`: a directory outside the workspace, so caches
    /// (pip's, npm's) do not end up in every test's copy.
    pub home: &'a Path,
    pub vars: &'a [(String, String)],
    pub kill_grace: Duration,
}

/// Runs `command` in `dir`, inside `sandbox` when given (as its uid, in
/// its cgroup, under its limits; the caller `finish`es it, which kills
/// what the set-up left running).
pub async fn run(
    command: &str,
    dir: &Path,
    env: &SetupEnv<'_>,
    timeout: Duration,
    sandbox: Option<&mut Sandbox>,
) -> SetupRun {
    let started = Instant::now();
    let failed = |error: String| SetupRun {
        ok: false,
        exit_code: None,
        duration: started.elapsed(),
        error,
        output: String::new(),
    };
    let (reader, writer) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => return failed(format!("set-up: cannot make a pipe: {e}")),
    };
    let Ok(writer2) = writer.try_clone() else {
        return failed("set-up: cannot make a pipe".into());
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .env("PATH", env.path)
        .env("HOME", env.home)
        .env("TMPDIR", env.home)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0)
        .kill_on_drop(true);
    if let Some(sandbox) = sandbox.as_deref() {
        sandbox.apply(&mut cmd);
    }
    let spawned = match sandbox {
        Some(sandbox) => sandbox.spawn(&mut cmd),
        None => cmd.spawn(),
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return failed(format!("set-up: cannot execute /bin/sh: {e}")),
    };
    // The parent's copies of the write end went with `cmd`.
    drop(cmd);
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let signal_group = |signal: Signal| {
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, signal);
        }
    };
    let collect = tokio::task::spawn_blocking(move || tail(reader));
    let (exit_code, error) = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => match status.code() {
                Some(0) => (Some(0), String::new()),
                Some(code) => (Some(code), format!("set-up failed: exit {code}")),
                None => (None, format!(
                    "set-up killed by signal {}",
                    std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
                )),
            },
            Err(e) => (None, format!("set-up: waiting for it: {e}")),
        },
        () = tokio::time::sleep(timeout) => {
            signal_group(Signal::SIGTERM);
            if tokio::time::timeout(env.kill_grace, child.wait()).await.is_err() {
                signal_group(Signal::SIGKILL);
                let _ = child.wait().await;
            }
            (None, format!("set-up timed out after {}", humantime::format_duration(timeout)))
        }
    };
    // What it left running in its group would hold the pipe open.
    signal_group(Signal::SIGKILL);
    let output = tokio::time::timeout(Duration::from_secs(5), collect)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    SetupRun {
        ok: error.is_empty(),
        exit_code,
        duration: started.elapsed(),
        error,
        output,
    }
}

/// The last `MAX_OUTPUT` bytes read until end of file, as text.
fn tail(mut reader: std::io::PipeReader) -> String {
    let mut kept: VecDeque<u8> = VecDeque::new();
    let mut buf = [0u8; 64 << 10];
    let mut dropped = false;
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        kept.extend(&buf[..n]);
        if kept.len() > MAX_OUTPUT {
            dropped = true;
            kept.drain(..kept.len() - MAX_OUTPUT);
        }
    }
    let text = String::from_utf8_lossy(kept.make_contiguous()).into_owned();
    if dropped {
        format!(
            "[testrunner] earlier set-up output dropped; the last {MAX_OUTPUT} bytes follow\n{text}"
        )
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(home: &'a Path, vars: &'a [(String, String)]) -> SetupEnv<'a> {
        SetupEnv {
            path: "/usr/local/bin:/usr/bin:/bin",
            home,
            vars,
            kill_grace: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn a_set_up_runs_in_its_directory_with_its_env_and_output_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let vars = [("GREETING".to_owned(), "hi".to_owned())];
        let run = run(
            "echo $GREETING from $(pwd); echo oops >&2; touch made",
            dir.path(),
            &env(dir.path(), &vars),
            Duration::from_secs(10),
            None,
        )
        .await;
        assert!(run.ok, "{run:?}");
        assert_eq!(run.exit_code, Some(0));
        assert!(
            run.output
                .contains(&format!("hi from {}", dir.path().display())),
            "{}",
            run.output
        );
        assert!(run.output.contains("oops"));
        assert!(dir.path().join("made").exists());
    }

    #[tokio::test]
    async fn a_failing_or_hanging_set_up_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let failed = run(
            "echo broken; exit 3",
            dir.path(),
            &env(dir.path(), &[]),
            Duration::from_secs(10),
            None,
        )
        .await;
        assert!(!failed.ok);
        assert_eq!(failed.exit_code, Some(3));
        assert_eq!(failed.error, "set-up failed: exit 3");
        assert!(failed.output.contains("broken"));
        let hung = run(
            "sleep 30 & sleep 30",
            dir.path(),
            &env(dir.path(), &[]),
            Duration::from_millis(300),
            None,
        )
        .await;
        assert!(!hung.ok);
        assert!(hung.error.contains("timed out"), "{}", hung.error);
        assert!(
            hung.duration < Duration::from_secs(10),
            "the group was killed: {:?}",
            hung.duration
        );
    }
}
