//! Counters and histograms exposed at `/metrics` (Prometheus text format).
//! Gauges that the database knows (queue depth) are read at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::TestStatus;

/// Upper bounds (seconds) of the dispatch latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Outcomes counted in `testrunner_tests_finished_total`.
const OUTCOMES: [TestStatus; 5] = [
    TestStatus::Passed,
    TestStatus::Failed,
    TestStatus::TimedOut,
    TestStatus::Cancelled,
    TestStatus::Error,
];

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    finished: [AtomicU64; OUTCOMES.len()],
    log_lines: AtomicU64,
    results_refused: AtomicU64,
    runners_refused: AtomicU64,
    dispatched: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_micros: AtomicU64,
}

/// Gauges sampled at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    pub queued: i64,
    pub running: i64,
    pub oldest_queued_seconds: f64,
    pub runners: usize,
    pub free_slots: usize,
}

impl Metrics {
    /// Counts a finished test.
    pub fn test_finished(&self, status: TestStatus) {
        if let Some(i) = OUTCOMES.iter().position(|s| *s == status) {
            self.finished[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts stored log lines.
    pub fn lines_ingested(&self, n: usize) {
        self.log_lines.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a result acknowledged as not accepted: its assignment had
    /// moved to another runner (a lost runner's late result) or was deleted.
    pub fn result_refused(&self) {
        self.results_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a runner stream refused for a missing or wrong runner token.
    pub fn runner_refused(&self) {
        self.runners_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time a test waited between queueing and dispatch.
    pub fn dispatched(&self, waited_seconds: f64) {
        self.dispatched.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add((waited_seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| waited_seconds <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Renders everything in the Prometheus text exposition format.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "testrunner_tests_queued",
            "Tests waiting for a runner.",
            g.queued as f64,
        );
        gauge(
            "testrunner_oldest_queued_seconds",
            "Age of the oldest queued test.",
            g.oldest_queued_seconds,
        );
        gauge(
            "testrunner_tests_running",
            "Tests held by runners.",
            g.running as f64,
        );
        gauge(
            "testrunner_runners_connected",
            "Runners attached to this coordinator.",
            g.runners as f64,
        );
        gauge(
            "testrunner_runner_free_slots",
            "Free slots of the runners attached to this coordinator.",
            g.free_slots as f64,
        );
        let _ = writeln!(
            out,
            "# HELP testrunner_tests_finished_total Tests finished, by outcome.\n\
             # TYPE testrunner_tests_finished_total counter"
        );
        for (i, s) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "testrunner_tests_finished_total{{outcome=\"{}\"}} {}",
                s.as_str(),
                self.finished[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP testrunner_log_lines_ingested_total Log lines stored.\n\
             # TYPE testrunner_log_lines_ingested_total counter\n\
             testrunner_log_lines_ingested_total {}",
            self.log_lines.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP testrunner_results_refused_total Results not stored: the assignment had moved elsewhere or was deleted.\n\
             # TYPE testrunner_results_refused_total counter\n\
             testrunner_results_refused_total {}\n\
             # HELP testrunner_runners_refused_total Runner streams refused for a missing or wrong token.\n\
             # TYPE testrunner_runners_refused_total counter\n\
             testrunner_runners_refused_total {}",
            self.results_refused.load(Ordering::Relaxed),
            self.runners_refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP testrunner_dispatch_latency_seconds Time from queueing to dispatch.\n\
             # TYPE testrunner_dispatch_latency_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "testrunner_dispatch_latency_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.dispatched.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "testrunner_dispatch_latency_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             testrunner_dispatch_latency_seconds_sum {}\n\
             testrunner_dispatch_latency_seconds_count {count}",
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_counts_everything() {
        let m = Metrics::default();
        m.dispatched(0.002);
        m.dispatched(0.2);
        m.dispatched(100.0);
        let text = m.render(&Gauges::default());
        assert!(text.contains("testrunner_dispatch_latency_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("testrunner_dispatch_latency_seconds_bucket{le=\"0.25\"} 2"));
        assert!(text.contains("testrunner_dispatch_latency_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("testrunner_dispatch_latency_seconds_count 3"));
    }
}
