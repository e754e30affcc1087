//! Real processes for end-to-end tests: the `coordinator` and `runner`
//! binaries from this workspace's target directory, a fresh database per
//! test, and a client of the public API.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use coordinator::testing::{Backend, TestDb};
use testrunner_proto::v1::testrun_service_client::TestrunServiceClient;
use testrunner_proto::v1::{
    CreateTestrunRequest, GetTestrunRequest, TestFile, Testrun, test, testrun,
};
use tonic::transport::Channel;

pub const TOKEN: &str = "e2e-secret-token";

/// Runs each test body once per backend, as `sqlite` and `postgres` tests.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident($backend:ident) $body:block)+) => {$(
        mod $name {
            use super::*;
            async fn body($backend: Backend) $body
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() { body(Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() { body(Backend::Postgres).await }
        }
    )+};
}

/// A binary of this workspace in the target directory this test was built
/// into (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`).
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

/// A coordinator process.
pub struct Coordinator {
    child: Child,
    pub addr: String,
    /// The runner listener (`--runner-listen`), if it has one.
    pub runner_addr: Option<String>,
    /// `http` or `https`, as the coordinator announced itself.
    pub scheme: String,
    /// The database it owns; `None` when it shares another's.
    pub db: Option<TestDb>,
    pub db_url: String,
    args: Vec<String>,
    log: PathBuf,
}

impl Coordinator {
    /// Starts a coordinator on a fresh database with short leases, so lost
    /// runners are noticed in seconds.
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
        let (child, scheme, addr, runner_addr) = spawn_coordinator("127.0.0.1:0", &args, &log);
        Self {
            child,
            addr,
            runner_addr,
            scheme,
            db: None,
            db_url: db_url.to_owned(),
            args,
            log,
        }
    }

    /// The URL runners and clients use (`localhost` for TLS, the name the
    /// test certificates carry).
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

    /// The process id (to inspect its threads).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn client(&self) -> TestrunServiceClient<Channel> {
        TestrunServiceClient::connect(self.url())
            .await
            .expect("client connects")
    }

    /// SIGKILL: a crash, no graceful anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts again on the same address and database.
    pub fn restart(&mut self) {
        let (child, _, addr, _) = spawn_coordinator(&self.addr, &self.args, &self.log);
        assert_eq!(addr, self.addr);
        self.child = child;
    }

    /// What the coordinator logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts a coordinator; returns it with its scheme, address and runner
/// listener's address (read from the lines it prints).
fn spawn_coordinator(
    listen: &str,
    args: &[String],
    log: &PathBuf,
) -> (Child, String, String, Option<String>) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = Command::new(bin("coordinator"))
        .arg("--listen")
        .arg(listen)
        .args(args)
        .env("RUST_LOG", "info,coordinator=debug")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("coordinator binary runs");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout
        .read_line(&mut first)
        .expect("coordinator prints its address");
    let url = first.trim().rsplit(' ').next().unwrap_or_default();
    let (scheme, addr) = url.split_once("://").unwrap_or_else(|| {
        panic!(
            "unexpected first line {first:?}; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    let runner_addr = args.iter().any(|a| a == "--runner-listen").then(|| {
        let mut second = String::new();
        stdout.read_line(&mut second).expect("the runner listener");
        let url = second
            .trim()
            .strip_prefix("runners: ")
            .expect("runners line");
        url.split_once("://").expect("a URL").1.to_owned()
    });
    (child, scheme.to_owned(), addr.to_owned(), runner_addr)
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A runner process.
pub struct Runner {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Runner {
    pub fn start(coordinator: &Coordinator, name: &str, slots: u32) -> Self {
        Self::start_with(coordinator, name, slots, &[])
    }

    pub fn start_with(coordinator: &Coordinator, name: &str, slots: u32, extra: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("runner-{name}-{}.log", uuid::Uuid::new_v4()));
        let child = Command::new(bin("runner"))
            .args(["--coordinator", &coordinator.runner_url(), "--name", name])
            .args(["--slots", &slots.to_string()])
            .args(extra)
            .env(
                "TESTRUNNER_RUNNER_TOKEN",
                extra_token(extra).unwrap_or(TOKEN),
            )
            .env("RUST_LOG", "info,runner=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("runner binary runs");
        Self {
            child,
            name: name.into(),
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("signal");
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log without its terminal colours, to search.
    pub fn plain_log(&self) -> String {
        let log = self.log();
        let mut plain = String::with_capacity(log.len());
        let mut chars = log.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // `ESC [ parameters letter`
                chars.by_ref().find(char::is_ascii_alphabetic);
            } else {
                plain.push(c);
            }
        }
        plain
    }

    /// The names of the tests it started, in order (its debug log says
    /// so as it starts each, before the test's process exists).
    pub fn started(&self) -> Vec<String> {
        self.plain_log()
            .lines()
            .filter(|l| l.contains(" test started "))
            .filter_map(|l| l.rsplit_once(" name=").map(|(_, n)| n.to_owned()))
            .collect()
    }
}

fn extra_token<'a>(extra: &[&'a str]) -> Option<&'a str> {
    extra
        .iter()
        .position(|a| *a == "--token")
        .and_then(|i| extra.get(i + 1).copied())
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn file(name: &str, content: &str) -> TestFile {
    TestFile {
        name: name.into(),
        content: content.into(),
    }
}

pub async fn create(
    client: &mut TestrunServiceClient<Channel>,
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
        })
        .await
        .expect("create")
        .into_inner()
}

pub async fn get(client: &mut TestrunServiceClient<Channel>, id: i64) -> Testrun {
    client
        .get_testrun(GetTestrunRequest { id })
        .await
        .expect("get")
        .into_inner()
}

/// Polls until the Testrun satisfies `done`, or panics after `limit` with
/// its last state (a bound on a hang, not a timing assertion).
pub async fn wait_until(
    client: &mut TestrunServiceClient<Channel>,
    id: i64,
    limit: Duration,
    what: &str,
    done: impl Fn(&Testrun) -> bool,
) -> Testrun {
    let start = Instant::now();
    loop {
        let run = get(client, id).await;
        if done(&run) {
            return run;
        }
        if start.elapsed() > limit {
            panic!("gave up waiting for {what}; last state: {run:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
pub async fn wait_done(client: &mut TestrunServiceClient<Channel>, id: i64) -> Testrun {
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
pub async fn log_of(
    client: &mut TestrunServiceClient<Channel>,
    testrun_id: i64,
    name: &str,
) -> Vec<String> {
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
