//! Helpers for integration tests and benchmarks: a fresh database per test
//! (a new Postgres database, or a SQLite file in a temp dir) and the real
//! coordinator on port 0.

use std::net::SocketAddr;

use anyhow::Context as _;
use sqlx::Connection as _;

use crate::{Application, Config};

/// Where test databases are created; override with
/// `TESTRUNNER_TEST_POSTGRES` (a URL of a database the user may connect to).
pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Prefix of every database the tests create (`.ci/run` drops leftovers).
pub const TEST_DB_PREFIX: &str = "trtest_";

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new, empty database of the given kind.
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("testrunner.db").display());
                Ok(Self {
                    url,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin = std::env::var("TESTRUNNER_TEST_POSTGRES")
                    .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.to_owned());
                let name = format!("{TEST_DB_PREFIX}{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .with_context(|| format!("connecting to {admin} (is Postgres running?)"))?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .context("creating the test database")?;
                let base = admin
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .unwrap_or(&admin);
                Ok(Self {
                    url: format!("{base}/{name}"),
                    _dir: None,
                })
            }
        }
    }
}

/// A coordinator running in this process.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub runner_token: String,
    pub db: TestDb,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts a coordinator on a fresh database with default settings.
    pub async fn spawn(backend: Backend) -> anyhow::Result<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts a coordinator after `adjust` changed its configuration.
    pub async fn spawn_with(
        backend: Backend,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let db = TestDb::new(backend).await?;
        let mut config = Config::for_tests("127.0.0.1:0".parse()?, db.url.clone());
        adjust(&mut config);
        let app = Application::build(config).await?;
        let addr = app.local_addr();
        let runner_token = app.runner_token().to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            runner_token,
            db,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://addr`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the coordinator and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
