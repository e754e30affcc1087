//! The real processes: a database per measurement, the `coordinator` and
//! `runner` binaries, and readings from `/proc`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::Connection as _;

/// Token the bench's coordinators accept from runners.
pub const TOKEN: &str = "bench-runner-token";

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Bins {
    pub coordinator: PathBuf,
    pub runner: PathBuf,
    /// This binary (for its hidden helper subcommands).
    pub bench: PathBuf,
}

impl Bins {
    /// The binaries in `dir` (default: next to this executable).
    pub fn locate(dir: Option<&Path>) -> anyhow::Result<Self> {
        let bench = std::env::current_exe().context("locating this executable")?;
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => bench
                .parent()
                .context("this executable has no directory")?
                .to_path_buf(),
        };
        let bins = Self {
            coordinator: dir.join("coordinator"),
            runner: dir.join("runner"),
            bench,
        };
        for bin in [&bins.coordinator, &bins.runner] {
            if !bin.is_file() {
                bail!(
                    "{} not found: build with `cargo build --release -p coordinator -p runner` \
                     (bench/run does) or pass --bin-dir",
                    bin.display()
                );
            }
        }
        Ok(bins)
    }
}

/// Which store the coordinator runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A fresh database for one measurement; `cleanup` removes it.
#[derive(Debug)]
pub struct Db {
    pub url: String,
    admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    /// A new empty database: a SQLite file in a temp dir, or a new Postgres
    /// database `trbench_<uuid>` next to `pg_admin`.
    pub async fn create(backend: Backend, pg_admin: &str) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::Builder::new().prefix("trbench-db-").tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                Ok(Self {
                    url,
                    admin: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let name = format!("trbench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(pg_admin)
                    .await
                    .with_context(|| {
                        format!(
                            "connecting to {pg_admin} (is Postgres running? set \
                         TESTRUNNER_TEST_POSTGRES or --postgres, or use --backend sqlite)"
                        )
                    })?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .context("creating the bench database")?;
                let _ = conn.close().await;
                let base = pg_admin.rsplit_once('/').map_or(pg_admin, |(base, _)| base);
                Ok(Self {
                    url: format!("{base}/{name}"),
                    admin: Some((pg_admin.to_owned(), name)),
                    _dir: None,
                })
            }
        }
    }

    /// Drops the Postgres database (the SQLite dir goes with `self`).
    pub async fn cleanup(self) {
        if let Some((admin, name)) = &self.admin
            && let Ok(mut conn) = sqlx::PgConnection::connect(admin).await
        {
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(err) = sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut conn)
                .await
            {
                eprintln!("warning: could not drop database {name}: {err}");
            }
            let _ = conn.close().await;
        }
    }
}

/// The Postgres server's version string, for the report.
pub async fn postgres_version(pg_admin: &str) -> Option<String> {
    let mut conn = sqlx::PgConnection::connect(pg_admin).await.ok()?;
    let v: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .ok()?;
    let _ = conn.close().await;
    Some(v)
}

/// A coordinator process, killed on drop.
#[derive(Debug)]
pub struct CoordinatorProc {
    pub proc: Proc,
    pub addr: String,
    /// Its runner listener (`--runner-listen`), which runners attach to.
    pub runner_addr: String,
}

impl CoordinatorProc {
    /// Starts `coordinator --listen 127.0.0.1:0` on `database_url` and waits
    /// for the address it prints.
    pub async fn start(
        bins: &Bins,
        database_url: &str,
        extra: &[String],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        // Runners on their own listener, as README recommends for fleets.
        let mut cmd = Command::new(&bins.coordinator);
        cmd.args(["--listen", "127.0.0.1:0", "--database-url", database_url])
            .args(["--runner-listen", "127.0.0.1:0"])
            .args(["--runner-token", TOKEN])
            .args(extra);
        let (mut proc, addr) =
            Proc::spawn_announcing(cmd, "coordinator listening on http://", log).await?;
        let second = proc.next_line(Duration::from_secs(10)).await?;
        let runner_addr = second
            .trim()
            .strip_prefix("runners: http://")
            .with_context(|| format!("expected the runner listener, got {second:?}"))?
            .to_owned();
        Ok(Self {
            proc,
            addr,
            runner_addr,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL runners attach to.
    pub fn runner_url(&self) -> String {
        format!("http://{}", self.runner_addr)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The end of its log, for error messages.
    pub fn log_tail(&self) -> String {
        tail(&self.proc.log, 20)
    }
}

/// A child process (runner, coordinator, helper), killed on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// Kept open: closing it would make the child's prints fail.
    _stdout: Option<BufReader<ChildStdout>>,
    pub log: PathBuf,
}

impl Proc {
    /// `runner --coordinator URL --token TOKEN --name NAME --slots SLOTS`.
    pub fn runner(
        bins: &Bins,
        coordinator_url: &str,
        name: &str,
        slots: u32,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(&bins.runner);
        cmd.args(["--coordinator", coordinator_url, "--token", TOKEN])
            .args(["--name", name, "--slots", &slots.to_string()]);
        Self::spawn(cmd, log)
    }

    /// Starts `cmd` with stdout discarded and stderr in `log`; the default
    /// log filter, as users get it.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> anyhow::Result<Self> {
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Self {
            child,
            _stdout: None,
            log,
        })
    }

    /// Starts `cmd` and waits for its first stdout line, `PREFIX ADDR`;
    /// returns ADDR.
    pub async fn spawn_announcing(
        mut cmd: Command,
        prefix: &str,
        log: PathBuf,
    ) -> anyhow::Result<(Self, String)> {
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = cmd
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut proc = Self {
            child,
            _stdout: Some(BufReader::new(stdout)),
            log,
        };
        let first = proc
            .next_line(Duration::from_secs(60))
            .await
            .with_context(|| format!("{cmd:?} printed no address"))?;
        match first.trim().strip_prefix(prefix) {
            Some(addr) if !addr.is_empty() => Ok((proc, addr.to_owned())),
            _ => bail!(
                "{cmd:?} did not start (first line {first:?}); its log:\n{}",
                tail(&proc.log, 20)
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the process prints on stdout, waiting up to `limit`.
    pub async fn next_line(&mut self, limit: Duration) -> anyhow::Result<String> {
        let mut reader = self._stdout.take().context("stdout not kept")?;
        let (reader, line) = tokio::time::timeout(
            limit,
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                (reader, line)
            }),
        )
        .await
        .with_context(|| format!("no line within {}s", limit.as_secs()))??;
        self._stdout = Some(reader);
        Ok(line)
    }

    /// Sends a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }

    /// SIGTERM (a runner drains and exits), then SIGKILL after `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// CPU time (user + system) a process used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some((utime + stime) / 100.0)
}
