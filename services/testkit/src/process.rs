//! The real binaries as child processes: started with their output in a
//! log file, killed and reaped on drop. A coordinator's addresses are read
//! from the banner it prints on stdout.

use std::fmt;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::wait::within;

/// How long a process may take to print its banner.
const BANNER_LIMIT: Duration = Duration::from_secs(60);

/// A binary of this workspace in the target directory the running test was
/// built into (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps layout");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A child process, killed and reaped on drop. Its stderr goes to a log
/// file; its stdout is discarded, or read for a banner and then drained so
/// the process never writes to a closed pipe.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.child.id())
            .field("log", &self.log)
            .finish()
    }
}

impl Process {
    /// Starts `cmd` with stdin and stdout closed and stderr in `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> anyhow::Result<Self> {
        let stderr = log_file(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Self { child, log })
    }

    /// Starts `cmd` with stderr in `log` and waits for its first `lines`
    /// lines on stdout (the banner; a process prints it once it listens).
    pub fn spawn_with_banner(
        mut cmd: Command,
        log: PathBuf,
        lines: usize,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        let stderr = log_file(&log)?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let process = Self { child, log };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Read until the process exits: what it prints after the banner
            // is dropped here rather than failing its writes.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut banner = Vec::with_capacity(lines);
        while banner.len() < lines {
            match rx.recv_timeout(BANNER_LIMIT) {
                Ok(line) => banner.push(line),
                Err(_) => bail!(
                    "{cmd:?} printed {banner:?} and then nothing more; its log:\n{}",
                    process.log_tail(20)
                ),
            }
        }
        Ok((process, banner))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its exit code once it exited (`None` if a signal ended it); `Err`
    /// while it still runs.
    pub fn exited(&mut self) -> Result<Option<i32>, LogTail> {
        match self.child.try_wait() {
            Ok(Some(status)) => Ok(status.code()),
            _ => Err(LogTail(self.log.clone())),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let exited = within(grace, async || match self.child.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err(()),
        })
        .await;
        if exited.is_err() {
            self.kill();
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The end of a process's log, read only when shown (a wait's last answer).
pub struct LogTail(PathBuf);

impl fmt::Debug for LogTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "still running; the end of {}:\n{}",
            self.0.display(),
            tail(&self.0, 40)
        )
    }
}

fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A coordinator process and the addresses it announced.
#[derive(Debug)]
pub struct CoordinatorProcess {
    pub process: Process,
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port` of the public listener.
    pub addr: String,
    /// `host:port` of the runner listener (`--runner-listen`), if any.
    pub runner_addr: Option<String>,
}

impl CoordinatorProcess {
    /// Starts `cmd`, the `coordinator` binary with its arguments, and reads
    /// the addresses it prints: `coordinator listening on SCHEME://ADDR`,
    /// then `runners: SCHEME://ADDR` when it was given `--runner-listen`.
    pub fn spawn(cmd: Command, log: PathBuf) -> anyhow::Result<Self> {
        let runner_listener = cmd.get_args().any(|a| a == "--runner-listen");
        let (process, banner) =
            Process::spawn_with_banner(cmd, log, 1 + usize::from(runner_listener))?;
        let url = |line: &str, prefix: &str| -> anyhow::Result<(String, String)> {
            let (scheme, addr) = line
                .trim()
                .strip_prefix(prefix)
                .and_then(|url| url.split_once("://"))
                .with_context(|| {
                    format!(
                        "expected {prefix:?} and a URL, got {line:?}; log:\n{}",
                        process.log_tail(20)
                    )
                })?;
            Ok((scheme.to_owned(), addr.to_owned()))
        };
        let (scheme, addr) = url(&banner[0], "coordinator listening on ")?;
        let runner_addr = match banner.get(1) {
            Some(line) => Some(url(line, "runners: ")?.1),
            None => None,
        };
        Ok(Self {
            process,
            scheme,
            addr,
            runner_addr,
        })
    }

    /// The URL clients use (`localhost` for TLS, the name test certificates
    /// carry).
    pub fn url(&self) -> String {
        if self.scheme == "https" {
            let port = self.addr.rsplit(':').next().unwrap_or_default();
            format!("https://localhost:{port}")
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// The URL runners attach to: the runner listener if there is one.
    pub fn runner_url(&self) -> String {
        match &self.runner_addr {
            Some(addr) => format!("{}://{addr}", self.scheme),
            None => self.url(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
