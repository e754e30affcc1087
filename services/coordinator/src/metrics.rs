//! Counters and histograms exposed at `/metrics`, kept and rendered by
//! `prometheus-client` (the OpenMetrics text format, which Prometheus
//! scrapes). Gauges that the database knows (queue depth) are set from a
//! reading taken at scrape time.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::TestStatus;
use crate::store::SelectorQueue;

/// The media type of what `render` returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the dispatch latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Outcomes counted in `testrunner_tests_finished_total`, each shown from
/// the start (at 0) so a rate over them never starts from nothing.
const OUTCOMES: [TestStatus; 5] = [
    TestStatus::Passed,
    TestStatus::Failed,
    TestStatus::TimedOut,
    TestStatus::Cancelled,
    TestStatus::Error,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Most distinct selectors shown in the queue gauges besides `""` (no
/// selector). Selectors are client input, so their number is not bounded
/// by the fleet: the busiest ones (most tests queued and running) get a
/// series each and the rest are summed under `selector="other"` (not a
/// valid selector: it has no `=`). A runner pool's own selector stays
/// visible as long as fewer than this many selectors are busier.
pub const MAX_SELECTOR_SERIES: usize = 32;
/// The series that sums the selectors past `MAX_SELECTOR_SERIES`.
pub const OTHER_SELECTORS: &str = "other";

/// The canonical text of a Testrun selector (`gpu=a100,zone=b`; empty for
/// none), as the queue gauges are labelled.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Selector {
    selector: String,
}

/// Process-wide metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    finished: Family<Outcome, Counter>,
    log_lines: Counter,
    results_refused: Counter,
    runners_refused: Counter,
    dispatch_latency: Histogram,
    queued: Family<Selector, Gauge>,
    oldest_queued: Gauge<f64, AtomicU64>,
    running: Family<Selector, Gauge>,
    /// Held while the selector families are rewritten for one scrape.
    scrape: std::sync::Mutex<()>,
    runners: Gauge,
    free_slots: Gauge,
}

/// Gauges sampled at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Queued and running tests per selector (see `MAX_SELECTOR_SERIES`).
    pub by_selector: Vec<SelectorQueue>,
    pub oldest_queued_seconds: f64,
    pub runners: usize,
    pub free_slots: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            finished: Family::default(),
            log_lines: Counter::default(),
            results_refused: Counter::default(),
            runners_refused: Counter::default(),
            dispatch_latency: Histogram::new(LATENCY_BUCKETS),
            queued: Family::default(),
            oldest_queued: Gauge::default(),
            running: Family::default(),
            scrape: std::sync::Mutex::new(()),
            runners: Gauge::default(),
            free_slots: Gauge::default(),
            registry: Registry::default(),
        };
        for s in OUTCOMES {
            let _created = m.finished.get_or_create(&Outcome {
                outcome: s.as_str(),
            });
        }
        // Counters get their `_total` suffix from the encoder.
        let r = &mut m.registry;
        r.register(
            "testrunner_tests_queued",
            "Tests waiting for a runner, by the selector of their Testrun",
            m.queued.clone(),
        );
        r.register(
            "testrunner_oldest_queued_seconds",
            "Age of the oldest queued test",
            m.oldest_queued.clone(),
        );
        r.register(
            "testrunner_tests_running",
            "Tests held by runners, by the selector of their Testrun",
            m.running.clone(),
        );
        r.register(
            "testrunner_runners_connected",
            "Runners attached to this coordinator",
            m.runners.clone(),
        );
        r.register(
            "testrunner_runner_free_slots",
            "Free slots of the runners attached to this coordinator",
            m.free_slots.clone(),
        );
        r.register(
            "testrunner_tests_finished",
            "Tests finished, by outcome",
            m.finished.clone(),
        );
        r.register(
            "testrunner_log_lines_ingested",
            "Log lines stored",
            m.log_lines.clone(),
        );
        r.register(
            "testrunner_results_refused",
            "Results not stored: the assignment had moved elsewhere or was deleted",
            m.results_refused.clone(),
        );
        r.register(
            "testrunner_runners_refused",
            "Runner streams refused for a missing or wrong token",
            m.runners_refused.clone(),
        );
        r.register(
            "testrunner_dispatch_latency_seconds",
            "Time from queueing to dispatch",
            m.dispatch_latency.clone(),
        );
        m
    }
}

impl Metrics {
    /// Counts a finished test.
    pub fn test_finished(&self, status: TestStatus) {
        if OUTCOMES.contains(&status) {
            self.finished
                .get_or_create(&Outcome {
                    outcome: status.as_str(),
                })
                .inc();
        }
    }

    /// Counts stored log lines.
    pub fn lines_ingested(&self, n: usize) {
        self.log_lines.inc_by(n as u64);
    }

    /// Counts a result acknowledged as not accepted: its assignment had
    /// moved to another runner (a lost runner's late result) or was deleted.
    pub fn result_refused(&self) {
        self.results_refused.inc();
    }

    /// Counts a runner stream refused for a missing or wrong runner token.
    pub fn runner_refused(&self) {
        self.runners_refused.inc();
    }

    /// Records the time a test waited between queueing and dispatch.
    pub fn dispatched(&self, waited_seconds: f64) {
        self.dispatch_latency.observe(waited_seconds.max(0.0));
    }

    /// Renders everything, with the scrape-time gauges `g`.
    pub fn render(&self, g: &Gauges) -> String {
        let _one_scrape_at_a_time = self.scrape.lock().expect("scrape lock");
        // Selectors whose tests are gone must not linger at their last value.
        self.queued.clear();
        self.running.clear();
        for s in bounded(&g.by_selector) {
            let label = Selector {
                selector: s.selector,
            };
            self.queued.get_or_create(&label).set(s.queued);
            self.running.get_or_create(&label).set(s.running);
        }
        self.oldest_queued.set(g.oldest_queued_seconds);
        self.runners.set(g.runners as i64);
        self.free_slots.set(g.free_slots as i64);
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The series to show: `""` always (0 when idle, so the default pool's
/// autoscaler always has a reading), the `MAX_SELECTOR_SERIES` busiest
/// other selectors, and the rest summed as `other`.
fn bounded(by_selector: &[SelectorQueue]) -> Vec<SelectorQueue> {
    let mut none = SelectorQueue::default();
    let mut rest: Vec<SelectorQueue> = Vec::new();
    for s in by_selector {
        if s.selector.is_empty() {
            none.queued += s.queued;
            none.running += s.running;
        } else {
            rest.push(s.clone());
        }
    }
    rest.sort_by(|a, b| {
        (b.queued + b.running)
            .cmp(&(a.queued + a.running))
            .then_with(|| a.selector.cmp(&b.selector))
    });
    let mut out = vec![none];
    if rest.len() > MAX_SELECTOR_SERIES {
        let other = rest.split_off(MAX_SELECTOR_SERIES).into_iter().fold(
            SelectorQueue {
                selector: OTHER_SELECTORS.into(),
                ..SelectorQueue::default()
            },
            |mut sum, s| {
                sum.queued += s.queued;
                sum.running += s.running;
                sum
            },
        );
        rest.push(other);
    }
    out.extend(rest);
    out
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
        assert!(text.contains("# TYPE testrunner_dispatch_latency_seconds histogram"));
        assert!(text.contains("testrunner_dispatch_latency_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("testrunner_dispatch_latency_seconds_bucket{le=\"0.25\"} 2"));
        assert!(text.contains("testrunner_dispatch_latency_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("testrunner_dispatch_latency_seconds_count 3"));
    }

    #[test]
    fn counters_and_scrape_gauges_keep_their_names() {
        let m = Metrics::default();
        m.test_finished(TestStatus::Passed);
        m.lines_ingested(7);
        let text = m.render(&Gauges {
            by_selector: vec![SelectorQueue {
                selector: String::new(),
                queued: 4,
                running: 1,
            }],
            runners: 2,
            ..Gauges::default()
        });
        for line in [
            "testrunner_tests_finished_total{outcome=\"PASSED\"} 1",
            "testrunner_tests_finished_total{outcome=\"ERROR\"} 0",
            "testrunner_log_lines_ingested_total 7",
            "testrunner_results_refused_total 0",
            "testrunner_tests_queued{selector=\"\"} 4",
            "testrunner_tests_running{selector=\"\"} 1",
            "testrunner_runners_connected 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }

    #[test]
    fn queue_gauges_are_per_selector_bounded_and_forget_what_is_gone() {
        let m = Metrics::default();
        let q = |selector: &str, queued| SelectorQueue {
            selector: selector.into(),
            queued,
            running: 0,
        };
        let mut by_selector = vec![q("pool=gpu", 3)];
        by_selector.extend((0..MAX_SELECTOR_SERIES + 2).map(|i| q(&format!("k=v{i}"), 1)));
        let text = m.render(&Gauges {
            by_selector,
            ..Gauges::default()
        });
        let series = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with("testrunner_tests_queued{"))
                .count()
        };
        // "", pool=gpu, the 31 busiest others, and "other" (3 summed).
        assert_eq!(series(&text), MAX_SELECTOR_SERIES + 2, "{text}");
        for line in [
            "testrunner_tests_queued{selector=\"\"} 0",
            "testrunner_tests_queued{selector=\"pool=gpu\"} 3",
            "testrunner_tests_queued{selector=\"other\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        let text = m.render(&Gauges::default());
        assert_eq!(series(&text), 1, "{text}");
    }
}
