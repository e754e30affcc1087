//! The way to the coordinator: its endpoint (TLS, keep-alives) and the
//! backoff between attempts to reach it (protocol rule 7).

use std::time::Duration;

use anyhow::Context as _;
use rand::Rng as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::Config;

/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A lazily connecting channel to `--coordinator`, with TLS when the
/// address is `https://` or a CA is given, and a client certificate for
/// mutual TLS.
pub fn channel(config: &Config) -> anyhow::Result<Channel> {
    let mut endpoint = Endpoint::from_shared(config.coordinator.clone())
        .context("--coordinator is not a valid URL")?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if config.coordinator.starts_with("https://") || config.tls_ca.is_some() {
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &config.tls_ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
            let cert =
                std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls).context("configuring TLS")?;
    }
    Ok(endpoint.connect_lazy())
}

/// Jittered exponential backoff between attempts to reach the coordinator.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// How long to wait before the next attempt: the current step, ±50 %;
    /// the step doubles, up to its bound.
    pub fn wait(&mut self) -> Duration {
        let wait = self.next.mul_f64(rand::rng().random_range(0.5..1.5));
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }

    /// A stream was up: start again from the shortest step.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.wait();
        assert!(
            first >= BACKOFF_MIN / 2 && first < BACKOFF_MIN * 3 / 2,
            "{first:?}"
        );
        for _ in 0..10 {
            let wait = backoff.wait();
            assert!(wait < BACKOFF_MAX * 3 / 2, "{wait:?}");
        }
        assert!(backoff.wait() >= BACKOFF_MAX / 2);
        backoff.reset();
        assert!(backoff.wait() < BACKOFF_MIN * 3 / 2);
    }
}
