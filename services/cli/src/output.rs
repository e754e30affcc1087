//! How Testruns and tests print in a terminal.

use testrunner_proto::v1::{Test, Testrun, test, testrun};

/// The status word of a Testrun.
pub fn run_status(status: i32) -> &'static str {
    testrun::Status::try_from(status).map_or("UNKNOWN", |s| s.as_str_name())
}

/// The status word of a test.
pub fn test_status(status: i32) -> &'static str {
    test::Status::try_from(status).map_or("UNKNOWN", |s| s.as_str_name())
}

fn seconds(d: &Option<prost_types::Duration>) -> String {
    d.as_ref().map_or_else(String::new, |d| {
        format!("{:.2}s", d.seconds as f64 + f64::from(d.nanos) / 1e9)
    })
}

/// One line per Testrun, for `list`.
pub fn run_line(r: &Testrun) -> String {
    let c = r.counts.unwrap_or_default();
    format!(
        "{:>6}  {:<10} {:<20} {} passed, {} failed, {} running, {} queued",
        r.id,
        run_status(r.status),
        r.username,
        c.passed,
        c.failed,
        c.running,
        c.queued
    )
}

/// One line per test, for `get` and the summary of `run`.
pub fn test_line(t: &Test) -> String {
    let exit = t
        .exit_code
        .map_or_else(|| "-".to_owned(), |c| c.to_string());
    let mut line = format!(
        "  {:<10} {:<40} exit {:<4} {:>9}  attempt {}  {}",
        test_status(t.status),
        t.name,
        exit,
        seconds(&t.duration),
        t.attempt,
        t.runner
    );
    if !t.error.is_empty() {
        line.push_str(&format!("  ({})", t.error));
    }
    if let Some(c) = t.cases.filter(|c| c.total > 0) {
        line.push_str(&format!(
            "  cases: {} passed, {} failed, {} errored, {} skipped",
            c.passed, c.failed, c.errored, c.skipped
        ));
    }
    line
}

/// A Testrun with its tests, for `get`.
pub fn run_details(r: &Testrun) -> String {
    let mut out = format!(
        "testrun {} by {}: {}\n",
        r.id,
        r.username,
        run_status(r.status)
    );
    if !r.waiting.is_empty() {
        out.push_str(&format!("  {}\n", r.waiting));
    }
    for t in &r.tests {
        out.push_str(&test_line(t));
        out.push('\n');
    }
    out
}

/// One line about a runner's set-up step.
pub fn setup_line(s: &testrunner_proto::v1::Setup) -> String {
    use testrunner_proto::v1::setup::Status;
    let status = Status::try_from(s.status).unwrap_or(Status::Unspecified);
    let mut line = format!("set-up on runner {}: {}", s.runner, status.as_str_name());
    if s.reused {
        line.push_str(" (reused)");
    }
    if let Some(code) = s.exit_code {
        line.push_str(&format!(", exit {code}"));
    }
    if !s.error.is_empty() {
        line.push_str(&format!(": {}", s.error));
    }
    if status == Status::Failed && !s.output.is_empty() {
        line.push('\n');
        line.push_str(s.output.trim_end());
    }
    line
}

/// A test's history, for `history`: a header with the median and flips,
/// then one line per outcome, newest first.
pub fn history(h: &testrunner_proto::v1::GetTestHistoryResponse) -> String {
    let median = h
        .median
        .as_ref()
        .map_or_else(|| "none".to_owned(), |_| seconds(&h.median));
    let mut out = format!(
        "{} in suite {}: median {} over {} samples",
        h.name, h.suite, median, h.samples
    );
    if h.flaky {
        let ids: Vec<String> = h.flipped_in.iter().map(i64::to_string).collect();
        out.push_str(&format!("; flaky, flipped in {}", ids.join(", ")));
    }
    out.push('\n');
    for o in &h.outcomes {
        let workspace = o
            .workspace
            .as_ref()
            .map_or_else(|| "-".to_owned(), |d| d.hash.chars().take(12).collect());
        out.push_str(&format!(
            "  testrun {:>6}  {:<10} {:>9}  attempts {}  {:<16} workspace {}\n",
            o.testrun_id,
            test_status(o.status),
            seconds(&o.duration),
            o.attempts,
            o.runner,
            workspace
        ));
    }
    out
}

/// One line per suite, for `suites`.
pub fn suite_line(s: &testrunner_proto::v1::SuiteSummary) -> String {
    format!(
        "{:<30} {} tests, {} testruns, {} flaky",
        s.name, s.tests, s.testruns, s.flaky_tests
    )
}
