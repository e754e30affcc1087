//! The coordinator running inside the test's process, on port 0.

use std::net::SocketAddr;

use coordinator::{Application, Config};

use crate::{Backend, TestDb};

/// A coordinator running in this process on a fresh database. Dropping it
/// stops the coordinator, then drops the database.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub runner_token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Declared last: dropped after the coordinator was stopped.
    pub db: TestDb,
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
            stop: Some(stop),
            task: Some(task),
            db,
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
