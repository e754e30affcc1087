//! The real processes: a database per measurement, the `coordinator` and
//! `runner` binaries, and readings from `/proc`. Databases and processes
//! are the test kit's, started the way users start them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use sqlx::Connection as _;

pub use testkit::{Backend, CoordinatorProcess, Process as Proc, TestDb as Db};

/// Token the bench's coordinators accept from runners.
pub const TOKEN: &str = "bench-runner-token";
/// Prefix of the bench's Postgres databases (`trbench_<uuid>`).
const DB_PREFIX: &str = "trbench_";

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

/// A fresh database for one measurement: a SQLite file in a temp dir, or a
/// new Postgres database `trbench_<uuid>` next to `pg_admin`. Dropping it
/// removes it.
pub async fn database(backend: Backend, pg_admin: &str) -> anyhow::Result<Db> {
    Db::create(backend, pg_admin, DB_PREFIX).await.context(
        "creating the bench database (set TESTRUNNER_TEST_POSTGRES or --postgres, \
         or use --backend sqlite)",
    )
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

/// Starts `coordinator --listen 127.0.0.1:0` on `database_url`, runners on
/// a listener of their own (as README recommends for fleets), with the
/// default log filter as users get it; returns once it printed its
/// addresses.
pub fn coordinator(
    bins: &Bins,
    database_url: &str,
    extra: &[String],
    log: PathBuf,
) -> anyhow::Result<CoordinatorProcess> {
    let mut cmd = Command::new(&bins.coordinator);
    cmd.args(["--listen", "127.0.0.1:0", "--database-url", database_url])
        .args(["--runner-listen", "127.0.0.1:0"])
        .args(["--runner-token", TOKEN])
        .args(extra)
        .env_remove("RUST_LOG");
    CoordinatorProcess::spawn(cmd, log)
}

/// `runner --coordinator URL --token TOKEN --name NAME --slots SLOTS`.
pub fn runner(
    bins: &Bins,
    coordinator_url: &str,
    name: &str,
    slots: u32,
    log: PathBuf,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(&bins.runner);
    cmd.args(["--coordinator", coordinator_url, "--token", TOKEN])
        .args(["--name", name, "--slots", &slots.to_string()]);
    spawn(cmd, log)
}

/// Starts `cmd` with stdout discarded and stderr in `log`; the default log
/// filter, as users get it.
pub fn spawn(mut cmd: Command, log: PathBuf) -> anyhow::Result<Proc> {
    cmd.env_remove("RUST_LOG");
    Proc::spawn(cmd, log)
}

/// Starts `cmd` and waits for its first stdout line, `PREFIX ADDR`;
/// returns ADDR.
pub fn spawn_announcing(
    mut cmd: Command,
    prefix: &str,
    log: PathBuf,
) -> anyhow::Result<(Proc, String)> {
    cmd.env_remove("RUST_LOG");
    let what = format!("{cmd:?}");
    let (proc, banner) = Proc::spawn_with_banner(cmd, log, 1)?;
    match banner[0].trim().strip_prefix(prefix) {
        Some(addr) if !addr.is_empty() => Ok((proc, addr.to_owned())),
        _ => bail!(
            "{what} did not start (first line {:?}); its log:\n{}",
            banner[0],
            proc.log_tail(20)
        ),
    }
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
