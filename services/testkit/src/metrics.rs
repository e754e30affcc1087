//! `/metrics` of a coordinator or a runner, read over plain HTTP/1.1.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::eventually;

/// `GET path` on `addr` (`host:port`) over HTTP/1.1; the body.
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(out))
}

/// One scrape, in the Prometheus text format.
#[derive(Clone)]
pub struct Metrics(String);

impl Metrics {
    /// Scrapes `http://addr/metrics`.
    pub async fn scrape(addr: &str) -> anyhow::Result<Self> {
        Ok(Self(http_get(addr, "/metrics").await?))
    }

    /// The sample `name` (with its labels, as in
    /// `testrunner_tests_finished_total{outcome="PASSED"}`), if present.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            let value = l.strip_prefix(name)?.strip_prefix(' ')?;
            value.trim().parse().ok()
        })
    }

    /// The sample `name`; panics, showing the scrape, if it is missing.
    pub fn value(&self, name: &str) -> f64 {
        self.get(name)
            .unwrap_or_else(|| panic!("no metric {name} in:\n{}", self.0))
    }

    pub fn text(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Scrapes `addr` until `name` satisfies `ok`; that scrape. Panics after
/// `limit` with the last scrape.
pub async fn wait_for_metric(
    addr: &str,
    name: &str,
    what: &str,
    limit: Duration,
    ok: impl Fn(f64) -> bool,
) -> Metrics {
    eventually(
        format!("{name} {what} at {addr}"),
        limit,
        async || match Metrics::scrape(addr).await {
            Ok(m) if m.get(name).is_some_and(&ok) => Ok(m),
            Ok(m) => Err(Shown(m.0)),
            Err(err) => Err(Shown(format!("no scrape: {err:#}"))),
        },
    )
    .await
}

/// Text shown as it is in a failure message.
struct Shown(String);

impl fmt::Debug for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_found_by_its_whole_name() {
        let m = Metrics("# TYPE a counter\na_total 3\na{x=\"1\"} 2\na 1.5\n".to_owned());
        assert_eq!(m.get("a"), Some(1.5));
        assert_eq!(m.get("a_total"), Some(3.0));
        assert_eq!(m.get("a{x=\"1\"}"), Some(2.0));
        assert_eq!(m.get("b"), None);
    }
}
