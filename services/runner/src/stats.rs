//! The runner's own gauges, served at `/metrics` with `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Gauges updated by the main loop.
#[derive(Debug, Default)]
pub struct Stats {
    slots: AtomicU64,
    running: AtomicU64,
    connected: AtomicU64,
    buffered: AtomicU64,
    started: AtomicU64,
}

impl Stats {
    pub fn set_slots(&self, n: u32) {
        self.slots.store(u64::from(n), Ordering::Relaxed);
    }
    pub fn set_running(&self, n: usize) {
        self.running.store(n as u64, Ordering::Relaxed);
    }
    pub fn set_connected(&self, yes: bool) {
        self.connected.store(u64::from(yes), Ordering::Relaxed);
    }
    pub fn set_buffered(&self, bytes: usize) {
        self.buffered.store(bytes as u64, Ordering::Relaxed);
    }
    pub fn test_started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let g = |name: &str, help: &str, v: &AtomicU64| {
            format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}\n",
                v.load(Ordering::Relaxed)
            )
        };
        [
            g(
                "testrunner_runner_slots",
                "Tests this runner runs at once.",
                &self.slots,
            ),
            g(
                "testrunner_runner_running_tests",
                "Tests running now.",
                &self.running,
            ),
            g(
                "testrunner_runner_connected",
                "1 while attached to a coordinator.",
                &self.connected,
            ),
            g(
                "testrunner_runner_buffered_log_bytes",
                "Log bytes not yet acknowledged.",
                &self.buffered,
            ),
            format!(
                "# HELP testrunner_runner_tests_started_total Test processes started.\n\
                 # TYPE testrunner_runner_tests_started_total counter\n\
                 testrunner_runner_tests_started_total {}\n",
                self.started.load(Ordering::Relaxed)
            ),
        ]
        .concat()
    }
}

/// Serves `GET /metrics` and `GET /healthz` (a deliberately tiny HTTP/1.0
/// responder: two fixed routes need no framework).
pub async fn serve(addr: SocketAddr, stats: Arc<Stats>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "runner metrics listening");
    loop {
        let (mut socket, _) = listener.accept().await?;
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/metrics" => ("200 OK", stats.render()),
                "/healthz" => ("200 OK", "ok\n".to_owned()),
                _ => ("404 Not Found", "not found\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}
