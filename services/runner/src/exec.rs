//! Runs one test file as a child process and reports its lines and outcome.
//!
//! Each test gets an empty work directory holding only its file, its own
//! process group (so a timeout or cancel kills everything it started), a
//! scrubbed environment (it never sees the runner's token), and capped
//! output. Anything that prevents running it is a FAILED test with the
//! reason in its log, never a runner crash.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use testrunner_proto::v1::Outcome;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use crate::isolation::{Isolation, Sandbox};
use crate::junit;
use crate::workdir::WorkDirs;
use crate::workspace::{self, copies::TestCopy};

/// What a test is asked to stop for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Run,
    /// Killed: cancelled by the coordinator, or handed back on drain.
    Kill,
}

/// How tests are run on this runner.
#[derive(Debug)]
pub struct ExecSettings {
    pub interpreters: Vec<(String, Vec<String>)>,
    pub kill_grace: Duration,
    pub max_line_bytes: usize,
    pub max_output_bytes: u64,
    pub work_dirs: Arc<WorkDirs>,
    pub test_path: String,
    /// Limits on reading a test's JUnit report.
    pub junit: junit::Limits,
    /// Users, cgroups and limits for each test (`isolation`).
    pub isolation: Arc<Isolation>,
}

/// One test to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub assignment_id: String,
    pub name: String,
    pub content: String,
    pub command: String,
    pub timeout: Duration,
    pub attempt: u32,
    /// Variables for the test on top of its scrubbed environment (the
    /// runner's own are never overridden; see `workspace::env`).
    pub env: std::collections::BTreeMap<String, String>,
    /// Its `Assign` named a workspace: it starts only once that is
    /// prepared, in a private copy of it.
    pub wants_workspace: bool,
    /// The prepared workspace, set when it starts.
    pub workspace: Option<crate::workspace::Prepared>,
    /// The Testrun's limits (`Assign.memory_bytes` / `pids`); the runner
    /// applies the lower of these and its own.
    pub limits: crate::isolation::cgroups::Limits,
}

/// What a job sends to the runner's main loop.
#[derive(Debug)]
pub enum ExecEvent {
    Line {
        assignment_id: String,
        text: String,
    },
    Done {
        assignment_id: String,
        report: Report,
    },
    /// The cases of the test's JUnit report, and its note; sent after its
    /// last line and before `Done`, only when there is something to say.
    Cases {
        assignment_id: String,
        collected: junit::Collected,
    },
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub duration: Duration,
    pub error: String,
}

/// Runs `job`, sending its lines and finally `Done` to `events`.
pub async fn run(
    job: Job,
    settings: Arc<ExecSettings>,
    events: mpsc::Sender<ExecEvent>,
    stop: watch::Receiver<Stop>,
) {
    let id = job.assignment_id.clone();
    let started = Instant::now();
    // A workspace test's private copy, made (or reset) off this thread;
    // its timeout starts when its process does, after this.
    // The test's uid comes first: its copy is made (or kept) for it.
    let taken = match settings.isolation.sandbox(job.limits) {
        Ok(sandbox) => take_copy(&job, sandbox.uid())
            .await
            .map(|copy| (sandbox, copy)),
        Err(message) => Err(message),
    };
    let (sandbox, copy) = match taken {
        Ok(taken) => taken,
        Err(message) => {
            let _ = events
                .send(ExecEvent::Line {
                    assignment_id: id.clone(),
                    text: format!("[testrunner] {message}"),
                })
                .await;
            let report = Report {
                outcome: Outcome::Error,
                exit_code: None,
                duration: started.elapsed(),
                error: message,
            };
            let _ = events
                .send(ExecEvent::Done {
                    assignment_id: id,
                    report,
                })
                .await;
            return;
        }
    };
    let report = match execute(&job, sandbox, copy, &settings, &events, stop).await {
        Ok(report) => report,
        Err(message) => {
            let _ = events
                .send(ExecEvent::Line {
                    assignment_id: id.clone(),
                    text: format!("[testrunner] {message}"),
                })
                .await;
            Report {
                outcome: Outcome::Failed,
                exit_code: None,
                duration: started.elapsed(),
                error: message,
            }
        }
    };
    let _ = events
        .send(ExecEvent::Done {
            assignment_id: id,
            report,
        })
        .await;
}

/// How to start the test: program and arguments.
pub fn command_for(
    job: &Job,
    file: &Path,
    interpreters: &[(String, Vec<String>)],
) -> Result<Vec<String>, String> {
    let path = file.to_string_lossy().into_owned();
    if !job.command.trim().is_empty() {
        let words = shell_words::split(&job.command)
            .map_err(|e| format!("command template {:?}: {e}", job.command))?;
        let argv: Vec<String> = words.iter().map(|w| w.replace("{file}", &path)).collect();
        if argv.is_empty() {
            return Err("command template is empty".into());
        }
        return Ok(argv);
    }
    if job.content.starts_with("#!") {
        return Ok(vec![path]);
    }
    let ext = Path::new(&job.name)
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    match interpreters.iter().find(|(e, _)| *e == ext) {
        Some((_, cmd)) => {
            let mut argv = cmd.clone();
            argv.push(path);
            Ok(argv)
        }
        None => {
            let known: Vec<String> = interpreters.iter().map(|(e, _)| format!(".{e}")).collect();
            Err(format!(
                "cannot run {:?}: no command template, no shebang, and no interpreter for {} \
                 (known: {})",
                job.name,
                if ext.is_empty() {
                    "files without an extension".to_owned()
                } else {
                    format!("extension .{ext}")
                },
                known.join(", ")
            ))
        }
    }
}

/// The test's copy of its workspace, if it has one, owned by `uid` (the
/// test's user, when not the runner's).
async fn take_copy(job: &Job, uid: Option<u32>) -> Result<Option<TestCopy>, String> {
    let Some(base) = job.workspace.clone() else {
        if job.wants_workspace {
            return Err("its workspace is not prepared on this runner".into());
        }
        return Ok(None);
    };
    tokio::task::spawn_blocking(move || base.take(uid))
        .await
        .map_err(|e| format!("copying the workspace: {e}"))?
        .map(Some)
        .map_err(|e| workspace::digest::describe(&e, "copying the workspace for the test"))
}

async fn execute(
    job: &Job,
    mut sandbox: Sandbox,
    mut copy: Option<TestCopy>,
    settings: &ExecSettings,
    events: &mpsc::Sender<ExecEvent>,
    mut stop: watch::Receiver<Stop>,
) -> Result<Report, String> {
    let mut dir = settings
        .work_dirs
        .take()
        .map_err(|e| format!("cannot create a work directory: {e}"))?;
    // The JUnit report goes beside the work directory, not into it (see
    // `WorkDir::report_path`); whatever a previous test left there goes.
    let report_path = dir.report_path();
    junit::clear(&report_path);
    dir.prepare_report_dir(sandbox.uid())
        .map_err(|e| format!("cannot make the test's report directory: {e}"))?;
    let asked = junit::asked_for(&job.command);
    let filled;
    let job = if asked {
        filled = Job {
            command: junit::fill_template(&job.command, &report_path),
            ..job.clone()
        };
        &filled
    } else {
        job
    };
    let mut argv = match &copy {
        Some(copy) => {
            sandbox
                .own_dir(dir.path())
                .map_err(|e| format!("cannot give the work directory to the test's user: {e}"))?;
            workspace::command::argv(&job.name, &job.command, copy.path(), &settings.interpreters)?
        }
        None => {
            let mode = if job.content.starts_with("#!") {
                0o755
            } else {
                0o644
            };
            let file = dir
                .write_file(&job.name, job.content.as_bytes(), mode)
                .map_err(|e| format!("cannot write {:?}: {e}", job.name))?;
            sandbox
                .own(dir.path(), &file)
                .map_err(|e| format!("cannot give the work directory to the test's user: {e}"))?;
            command_for(job, &file, &settings.interpreters)?
        }
    };
    // The Testrun's variables, never over the runner's own.
    let (vars, skipped) = workspace::env::usable(&job.env);
    for note in skipped {
        let _ = events
            .send(ExecEvent::Line {
                assignment_id: job.assignment_id.clone(),
                text: format!("[testrunner] {note}"),
            })
            .await;
    }
    // With a workspace the test runs at the root of its copy, and its
    // HOME and TMPDIR are its empty work directory.
    let cwd = copy.as_ref().map_or(dir.path(), TestCopy::path).to_owned();
    // Resolve the program against the test's PATH ourselves: given a bare
    // name and a child PATH, std must fork (copying the runner's page
    // tables) instead of using posix_spawn, which was the runners' largest
    // cost per test in the dispatch benchmark.
    argv[0] = resolve_program(&argv[0], &settings.test_path)?;

    let started = Instant::now();
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(&cwd)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env("PATH", &settings.test_path)
        .env("HOME", dir.path())
        .env("TMPDIR", dir.path())
        .env("LANG", "C.UTF-8")
        .env("TESTRUNNER_TEST_NAME", &job.name)
        .env("TESTRUNNER_ATTEMPT", job.attempt.to_string())
        .env(junit::ENV, &report_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    sandbox.apply(&mut command);
    let mut child = sandbox
        .spawn(&mut command)
        .map_err(|e| format!("cannot execute {:?}: {e}", argv[0]))?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));

    let budget = Arc::new(AtomicU64::new(settings.max_output_bytes));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        tokio::spawn(read_lines(
            stream,
            job.assignment_id.clone(),
            events.clone(),
            settings.max_line_bytes,
            Arc::clone(&budget),
            settings.max_output_bytes,
        ))
    })
    .collect::<Vec<_>>();

    let signal_group = |signal: Signal| {
        if let Some(pgid) = pgid {
            // ESRCH: the group is already gone, which is what we want.
            let _ = killpg(pgid, signal);
        }
    };
    let deadline = tokio::time::sleep(job.timeout);
    tokio::pin!(deadline);
    let exceeded = sandbox.exceeded(dir.path());
    tokio::pin!(exceeded);
    let (status, outcome, error) = tokio::select! {
        status = child.wait() => {
            let status = status.map_err(|e| format!("waiting for the test: {e}"))?;
            let outcome = if status.success() { Outcome::Passed } else { Outcome::Failed };
            let error = match status.code() {
                Some(_) => String::new(),
                None => format!("killed by signal {}", std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)),
            };
            (status.code(), outcome, error)
        }
        () = &mut deadline => {
            signal_group(Signal::SIGTERM);
            if tokio::time::timeout(settings.kill_grace, child.wait()).await.is_err() {
                signal_group(Signal::SIGKILL);
                let _ = child.wait().await;
            }
            (None, Outcome::TimedOut, format!("timed out after {}", humantime::format_duration(job.timeout)))
        }
        () = wait_for_kill(&mut stop) => {
            signal_group(Signal::SIGKILL);
            let _ = child.wait().await;
            (None, Outcome::Cancelled, "cancelled".to_owned())
        }
        message = &mut exceeded => {
            signal_group(Signal::SIGKILL);
            let _ = child.wait().await;
            (None, Outcome::Failed, message)
        }
    };
    // The test's duration ends with its own process, before the clean-up.
    let ran_for = started.elapsed();
    // Every process the test left, in any session or under any parent.
    let cleanup = sandbox.finish().await;
    let (outcome, error) = match cleanup.out_of_memory {
        Some(oom) if matches!(outcome, Outcome::Passed | Outcome::Failed) => (Outcome::Failed, oom),
        _ => (outcome, error),
    };
    // Whatever the test left behind in its group dies with it.
    signal_group(Signal::SIGKILL);
    for reader in readers {
        // A process that left the group could hold the pipe open forever.
        let abort = reader.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .is_err()
        {
            abort.abort();
            // It may be using the work directory too: no other test gets it.
            dir.discard();
            if let Some(copy) = &mut copy {
                copy.discard();
            }
        }
    }
    let duration = ran_for;
    if !error.is_empty()
        && (outcome != Outcome::Failed
            || error.starts_with("killed: out of memory")
            || error.starts_with("stopped:"))
    {
        let _ = events
            .send(ExecEvent::Line {
                assignment_id: job.assignment_id.clone(),
                text: format!("[testrunner] {error}"),
            })
            .await;
    }
    // Whatever the outcome: a killed test's partial report is worth reading.
    let reading = Instant::now();
    // Most tests write no report and were not asked to: one stat here
    // rather than a blocking-thread round trip per test.
    let collected = if !asked && std::fs::symlink_metadata(&report_path).is_err() {
        junit::Collected::default()
    } else {
        let (report, work) = (report_path.clone(), dir.path().to_owned());
        let limits = settings.junit;
        tokio::task::spawn_blocking(move || junit::collect(&report, &work, asked, outcome, limits))
            .await
            .unwrap_or_else(|e| junit::Collected {
                cases: Vec::new(),
                note: format!("JUnit report unreadable: the reader failed: {e}"),
            })
    };
    if !collected.is_empty() {
        // The bench's `cases` scenario reads `read_ms` from this line.
        tracing::info!(
            assignment_id = %job.assignment_id,
            cases = collected.cases.len(),
            read_ms = reading.elapsed().as_millis() as u64,
            noted = !collected.note.is_empty(),
            "junit report read"
        );
        let _ = events
            .send(ExecEvent::Cases {
                assignment_id: job.assignment_id.clone(),
                collected,
            })
            .await;
    }
    if cleanup.leftovers > 0 {
        let _ = events
            .send(ExecEvent::Line {
                assignment_id: job.assignment_id.clone(),
                text: format!(
                    "[testrunner] killed {} leftover process{}",
                    cleanup.leftovers,
                    if cleanup.leftovers == 1 { "" } else { "es" }
                ),
            })
            .await;
    }
    // Before `Done`: a clean directory is back at once for the next test
    // on this slot. One the test left files in is emptied off the thread
    // meanwhile, not awaited: its result and slot do not wait on that.
    drop(dir);
    drop(copy);
    Ok(Report {
        outcome,
        exit_code: status,
        duration,
        error,
    })
}

/// `program` as a path: unchanged if it has a `/`, else the first match in
/// `path` (the test's PATH).
fn resolve_program(program: &str, path: &str) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt as _;
    if program.contains('/') {
        return Ok(program.to_owned());
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(|| format!("cannot execute {program:?}: not found in the test PATH ({path})"))
}

async fn wait_for_kill(stop: &mut watch::Receiver<Stop>) {
    if stop.wait_for(|s| *s == Stop::Kill).await.is_err() {
        // The runner dropped the sender: never kill for that reason.
        std::future::pending::<()>().await;
    }
}

/// Splits a stream into lines, cutting long lines with a marker and
/// dropping output past the test's budget (after saying so once).
async fn read_lines(
    mut stream: Box<dyn AsyncRead + Unpin + Send>,
    assignment_id: String,
    events: mpsc::Sender<ExecEvent>,
    max_line: usize,
    budget: Arc<AtomicU64>,
    max_output: u64,
) {
    let mut buf = vec![0u8; 64 << 10];
    let mut line: Vec<u8> = Vec::new();
    let mut dropped_in_line = 0usize;
    let emit = |line: &mut Vec<u8>, dropped: &mut usize| {
        let mut bytes = std::mem::take(line);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if *dropped > 0 {
            text.push_str(&format!(" … [truncated {} bytes]", *dropped));
            *dropped = 0;
        }
        text
    };
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let (part, rest, ends_line) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &chunk[..0], false),
            };
            let room = max_line.saturating_sub(line.len());
            line.extend_from_slice(&part[..part.len().min(room)]);
            dropped_in_line += part.len().saturating_sub(room);
            chunk = rest;
            if ends_line {
                let text = emit(&mut line, &mut dropped_in_line);
                if !send_within_budget(&events, &assignment_id, text, &budget, max_output).await {
                    // Keep draining so the test never blocks on a full pipe.
                    continue;
                }
            }
        }
    }
    if !line.is_empty() || dropped_in_line > 0 {
        let text = emit(&mut line, &mut dropped_in_line);
        send_within_budget(&events, &assignment_id, text, &budget, max_output).await;
    }
}

/// Sends a line if the output budget allows; the line that exhausts it is
/// replaced by a marker. Returns false once output is being dropped.
async fn send_within_budget(
    events: &mpsc::Sender<ExecEvent>,
    assignment_id: &str,
    text: String,
    budget: &AtomicU64,
    max_output: u64,
) -> bool {
    let cost = text.len() as u64 + 1;
    let before = budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            Some(b.saturating_sub(cost))
        })
        .unwrap_or(0);
    let text = if before >= cost {
        text
    } else if before > 0 {
        format!("[testrunner] output limit of {max_output} bytes reached; further output discarded")
    } else {
        return false;
    };
    events
        .send(ExecEvent::Line {
            assignment_id: assignment_id.to_owned(),
            text,
        })
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, content: &str, command: &str) -> Job {
        Job {
            assignment_id: "a".into(),
            name: name.into(),
            content: content.into(),
            command: command.into(),
            timeout: Duration::from_secs(5),
            attempt: 1,
            env: Default::default(),
            wants_workspace: false,
            workspace: None,
            limits: Default::default(),
        }
    }

    fn table() -> Vec<(String, Vec<String>)> {
        vec![
            ("sh".into(), vec!["sh".into()]),
            ("py".into(), vec!["python3".into()]),
        ]
    }

    #[test]
    fn a_command_template_wins_over_shebang_and_extension() {
        let argv = command_for(
            &job("t.py", "#!/bin/sh", "pytest -q {file}"),
            Path::new("/w/t.py"),
            &table(),
        );
        assert_eq!(argv.unwrap(), ["pytest", "-q", "/w/t.py"]);
    }

    #[test]
    fn a_shebang_runs_the_file_itself_and_extensions_pick_an_interpreter() {
        assert_eq!(
            command_for(&job("t", "#!/bin/sh\n", ""), Path::new("/w/t"), &table()).unwrap(),
            ["/w/t"]
        );
        assert_eq!(
            command_for(&job("t.py", "print(1)", ""), Path::new("/w/t.py"), &table()).unwrap(),
            ["python3", "/w/t.py"]
        );
    }

    #[test]
    fn programs_resolve_against_the_test_path() {
        assert_eq!(
            resolve_program("sh", "/nonexistent:/bin").unwrap(),
            "/bin/sh"
        );
        assert_eq!(resolve_program("/w/t.sh", "").unwrap(), "/w/t.sh");
        let err = resolve_program("no-such-interpreter", "/bin:/usr/bin").unwrap_err();
        assert!(err.contains("not found in the test PATH"), "{err}");
    }

    #[test]
    fn an_unknown_extension_is_explained() {
        let err = command_for(&job("t.xyz", "x", ""), Path::new("/w/t.xyz"), &table()).unwrap_err();
        assert!(err.contains("extension .xyz"), "{err}");
    }
}
