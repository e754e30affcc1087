//! End-to-end tests with the real `coordinator` and `runner` binaries of
//! this workspace: each coordinator on a fresh database, with short leases
//! so that lost runners are noticed in seconds, and every runner with its
//! `/metrics` on a port of its own. Also the client calls those tests make.

use std::ops::Deref;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use testrunner_proto::v1::testrun_service_client::TestrunServiceClient;
use testrunner_proto::v1::{
    CreateTestrunRequest, GetTestrunRequest, TestFile, Testrun, test, testrun,
};
use tonic::transport::Channel;

pub use crate::metrics::{Metrics, wait_for_metric};
use crate::process::{CoordinatorProcess, Process, bin};
pub use crate::{Backend, TestDb, eventually, on_both_stores};

/// The runner token of every coordinator started here.
pub const TOKEN: &str = "e2e-secret-token";

/// A client of the public API.
pub type Client = TestrunServiceClient<Channel>;

/// A coordinator process, killed on drop (and its database dropped after).
#[derive(Debug)]
pub struct Coordinator {
    process: CoordinatorProcess,
    /// The database it owns; `None` when it shares another's.
    pub db: Option<TestDb>,
    pub db_url: String,
    args: Vec<String>,
    log: PathBuf,
}

impl Deref for Coordinator {
    type Target = CoordinatorProcess;
    fn deref(&self) -> &CoordinatorProcess {
        &self.process
    }
}

impl Coordinator {
    /// Starts a coordinator on a fresh database with a 2 s lease and a
    /// 300 ms heartbeat, plus `extra` arguments.
    pub async fn start(backend: Backend, extra: &[&str]) -> Self {
        let db = TestDb::new(backend).await.expect("test database");
        let mut c = Self::start_on(&db.url, extra);
        c.db = Some(db);
        c
    }

    /// A second coordinator on the same database as `other`.
    pub fn start_sharing(other: &Coordinator, extra: &[&str]) -> Self {
        Self::start_on(&other.db_url, extra)
    }

    fn start_on(db_url: &str, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec![
            "--database-url".into(),
            db_url.to_owned(),
            "--runner-token".into(),
            TOKEN.into(),
            "--lease".into(),
            "2s".into(),
            "--heartbeat".into(),
            "300ms".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = std::env::temp_dir().join(format!("coordinator-{}.log", uuid::Uuid::new_v4()));
        let process = CoordinatorProcess::spawn(command("127.0.0.1:0", &args), log.clone())
            .expect("the coordinator starts");
        Self {
            process,
            db: None,
            db_url: db_url.to_owned(),
            args,
            log,
        }
    }

    pub async fn client(&self) -> Client {
        TestrunServiceClient::connect(self.url())
            .await
            .expect("client connects")
    }

    /// SIGKILL: a crash, no graceful anything.
    pub fn kill(&mut self) {
        self.process.process.kill();
    }

    /// Starts again on the same address and database.
    pub fn restart(&mut self) {
        let process = CoordinatorProcess::spawn(command(&self.addr, &self.args), self.log.clone())
            .expect("the coordinator starts again");
        assert_eq!(process.addr, self.addr);
        self.process = process;
    }

    /// What the coordinator logged (for failure messages).
    pub fn log(&self) -> String {
        self.process.process.log()
    }

    /// A scrape of its `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        Metrics::scrape(&self.addr)
            .await
            .expect("the coordinator serves /metrics")
    }

    /// Waits until its metric `name` reads `value`; that scrape.
    pub async fn metric_reaches(&self, name: &str, value: f64) -> Metrics {
        wait_for_metric(
            &self.addr,
            name,
            &format!("to read {value}"),
            Duration::from_secs(30),
            |v| v == value,
        )
        .await
    }
}

fn command(listen: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(bin("coordinator"));
    cmd.arg("--listen")
        .arg(listen)
        .args(args)
        .env("RUST_LOG", "info,coordinator=debug");
    cmd
}

/// A runner process, killed on drop.
#[derive(Debug)]
pub struct Runner {
    process: Process,
    pub name: String,
    /// Where it serves `/metrics` (`--metrics-listen`).
    pub metrics_addr: String,
}

impl Runner {
    pub fn start(coordinator: &Coordinator, name: &str, slots: u32) -> Self {
        Self::start_with(coordinator, name, slots, &[])
    }

    /// A runner with `extra` arguments. It serves `/metrics` on a free
    /// port unless `extra` names one with `--metrics-listen`.
    pub fn start_with(coordinator: &Coordinator, name: &str, slots: u32, extra: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("runner-{name}-{}.log", uuid::Uuid::new_v4()));
        // Our own `--metrics-listen` unless `extra` brings one.
        let mut args = Vec::new();
        let mut metrics_addr = None;
        let mut rest = extra.iter();
        while let Some(arg) = rest.next() {
            if *arg == "--metrics-listen" {
                metrics_addr = rest.next().map(|a| a.to_string());
            } else {
                args.push(*arg);
            }
        }
        let metrics_addr = metrics_addr.unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let mut cmd = Command::new(bin("runner"));
        cmd.args(["--coordinator", &coordinator.runner_url(), "--name", name])
            .args(["--slots", &slots.to_string()])
            .args(["--metrics-listen", &metrics_addr])
            .args(args)
            .env(
                "TESTRUNNER_RUNNER_TOKEN",
                value_of(extra, "--token").unwrap_or(TOKEN),
            )
            .env("RUST_LOG", "info,runner=debug");
        let process = Process::spawn(cmd, log).expect("the runner binary starts");
        Self {
            process,
            name: name.into(),
            metrics_addr,
        }
    }

    /// A runner started through `wrapper` (e.g. `setpriv --reuid 65534
    /// ...`, to run it as another user), given its token by `--token-file`
    /// when `token_file` is set (then none is in its environment).
    pub fn start_as(
        coordinator: &Coordinator,
        name: &str,
        slots: u32,
        extra: &[&str],
        wrapper: &[&str],
        token_file: Option<&std::path::Path>,
    ) -> Self {
        let log = std::env::temp_dir().join(format!("runner-{name}-{}.log", uuid::Uuid::new_v4()));
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let runner = bin("runner");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&runner);
                cmd
            }
            None => Command::new(&runner),
        };
        cmd.args(["--coordinator", &coordinator.runner_url(), "--name", name])
            .args(["--slots", &slots.to_string()])
            .args(["--metrics-listen", &metrics_addr])
            .args(extra)
            .env("RUST_LOG", "info,runner=debug");
        match token_file {
            Some(path) => cmd.arg("--token-file").arg(path),
            None => cmd.env("TESTRUNNER_RUNNER_TOKEN", TOKEN),
        };
        let process = Process::spawn(cmd, log).expect("the runner binary starts");
        Self {
            process,
            name: name.into(),
            metrics_addr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.process.pid() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        self.process.signal(signal);
    }

    /// Waits up to `limit` for the process to exit; its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let what = format!("runner {} to exit", self.name);
        eventually(what, limit, async || self.process.exited()).await
    }

    /// What the runner logged (for failure messages).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// A scrape of its `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        Metrics::scrape(&self.metrics_addr)
            .await
            .expect("the runner serves /metrics")
    }

    /// Waits until its metric `name` reads `value`; that scrape.
    pub async fn metric_reaches(&self, name: &str, value: f64) -> Metrics {
        wait_for_metric(
            &self.metrics_addr,
            name,
            &format!("of runner {} to read {value}", self.name),
            Duration::from_secs(30),
            |v| v == value,
        )
        .await
    }
}

/// The value after `flag` in `args`.
fn value_of<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1).copied())
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub fn file(name: &str, content: &str) -> TestFile {
    TestFile {
        name: name.into(),
        content: content.into(),
    }
}

pub async fn create(
    client: &mut Client,
    files: Vec<TestFile>,
    command: Option<&str>,
    timeout_seconds: Option<u32>,
) -> Testrun {
    client
        .create_testrun(CreateTestrunRequest {
            username: "e2e".into(),
            tests: files,
            command: command.map(Into::into),
            timeout_seconds,
            ..CreateTestrunRequest::default()
        })
        .await
        .expect("create")
        .into_inner()
}

pub async fn get(client: &mut Client, id: i64) -> Testrun {
    client
        .get_testrun(GetTestrunRequest { id })
        .await
        .expect("get")
        .into_inner()
}

/// Polls until the Testrun satisfies `done`; panics after `limit` with its
/// last state.
pub async fn wait_until(
    client: &mut Client,
    id: i64,
    limit: Duration,
    what: &str,
    done: impl Fn(&Testrun) -> bool,
) -> Testrun {
    eventually(what, limit, async || {
        let run = get(client, id).await;
        if done(&run) { Ok(run) } else { Err(run) }
    })
    .await
}

pub fn is_terminal(run: &Testrun) -> bool {
    [
        testrun::Status::Success as i32,
        testrun::Status::Failed as i32,
        testrun::Status::Cancelled as i32,
    ]
    .contains(&run.status)
}

/// Waits for a terminal status with no test still running.
pub async fn wait_done(client: &mut Client, id: i64) -> Testrun {
    wait_until(
        client,
        id,
        Duration::from_secs(60),
        "the testrun to end",
        |r| is_terminal(r) && r.counts.as_ref().is_some_and(|c| c.running == 0),
    )
    .await
}

pub fn status_of(run: &Testrun, name: &str) -> test::Status {
    let t = run
        .tests
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no test {name}"));
    test::Status::try_from(t.status).expect("known status")
}

pub fn test_named<'a>(run: &'a Testrun, name: &str) -> &'a testrunner_proto::v1::Test {
    run.tests
        .iter()
        .find(|t| t.name == name)
        .expect("test present")
}

/// Every line of one test's log, read page by page.
pub async fn log_of(client: &mut Client, testrun_id: i64, name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let page = client
            .get_test_log(testrunner_proto::v1::GetTestLogRequest {
                testrun_id,
                test: Some(testrunner_proto::v1::get_test_log_request::Test::TestName(
                    name.into(),
                )),
                offset: lines.len() as u64,
                limit: 10_000,
            })
            .await
            .expect("log page")
            .into_inner();
        if page.lines.is_empty() {
            return lines;
        }
        lines.extend(page.lines);
    }
}

/// True while a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A temporary directory the tests run by a runner may write to: where the
/// runner is root, tests run as unprivileged per-slot users, who cannot
/// write into a directory made private to this (root) process.
pub fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("making it writable for test users");
    dir
}

/// Runs the real `testrunner` command against `coord` and waits for it
/// (without an API token from the environment).
pub fn testrunner(coord: &Coordinator, args: &[&str]) -> std::process::Output {
    Command::new(bin("testrunner"))
        .arg("--coordinator")
        .arg(coord.url())
        .args(args)
        .env_remove("TESTRUNNER_API_TOKEN")
        .output()
        .expect("testrunner runs")
}

/// A command's stdout and stderr as text.
pub fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
