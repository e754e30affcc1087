//! The runner's own metrics, kept and rendered by `prometheus-client`,
//! served at `/metrics` with `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Metrics updated by the session loop.
#[derive(Debug)]
pub struct Stats {
    registry: Registry,
    slots: Gauge,
    running: Gauge,
    connected: Gauge,
    buffered: Gauge,
    started: Counter,
}

impl Default for Stats {
    fn default() -> Self {
        let (slots, running, connected, buffered) = Default::default();
        let started = Counter::default();
        let mut registry = Registry::default();
        registry.register(
            "testrunner_runner_slots",
            "Tests this runner runs at once",
            Gauge::clone(&slots),
        );
        registry.register(
            "testrunner_runner_running_tests",
            "Tests running now",
            Gauge::clone(&running),
        );
        registry.register(
            "testrunner_runner_connected",
            "1 while attached to a coordinator",
            Gauge::clone(&connected),
        );
        registry.register(
            "testrunner_runner_buffered_log_bytes",
            "Log bytes not yet acknowledged",
            Gauge::clone(&buffered),
        );
        // The encoder adds the counter's `_total`.
        registry.register(
            "testrunner_runner_tests_started",
            "Test processes started",
            started.clone(),
        );
        Self {
            registry,
            slots,
            running,
            connected,
            buffered,
            started,
        }
    }
}

impl Stats {
    pub fn set_slots(&self, n: u32) {
        self.slots.set(i64::from(n));
    }
    pub fn set_running(&self, n: usize) {
        self.running.set(n as i64);
    }
    pub fn set_connected(&self, yes: bool) {
        self.connected.set(i64::from(yes));
    }
    pub fn set_buffered(&self, bytes: usize) {
        self.buffered.set(bytes as i64);
    }
    pub fn test_started(&self) {
        self.started.inc();
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
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
                "HTTP/1.0 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}
