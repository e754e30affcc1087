//! Results: rows, the Markdown table, the hardware line and the JSON files.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde_json::{Value, json};

/// Whether a row met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// No target for this row: reported for information.
    Info,
    /// The measurement itself failed.
    Error,
}

impl Verdict {
    pub fn of(pass: bool) -> Self {
        if pass { Verdict::Pass } else { Verdict::Fail }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "**FAIL**",
            Verdict::Info => "info",
            Verdict::Error => "**ERROR**",
        }
    }

    fn json(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Info => "info",
            Verdict::Error => "error",
        }
    }
}

/// A measured or baseline quantity.
#[derive(Debug, Clone)]
pub struct Quantity {
    pub value: f64,
    pub unit: &'static str,
}

impl Quantity {
    pub fn new(value: f64, unit: &'static str) -> Self {
        Self { value, unit }
    }

    fn show(&self) -> String {
        format!("{} {}", human(self.value), self.unit)
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub backend: String,
    pub metric: String,
    pub measured: Option<Quantity>,
    pub baseline: Option<Quantity>,
    /// Measured / baseline.
    pub ratio: Option<f64>,
    pub target: String,
    pub verdict: Verdict,
    /// Anything else worth keeping (sizes, raw times, counts).
    pub details: Value,
}

impl Row {
    pub fn new(scenario: &str, backend: &str, metric: &str) -> Self {
        Self {
            scenario: scenario.into(),
            backend: backend.into(),
            metric: metric.into(),
            measured: None,
            baseline: None,
            ratio: None,
            target: "—".into(),
            verdict: Verdict::Info,
            details: json!({}),
        }
    }

    pub fn measured(mut self, value: f64, unit: &'static str) -> Self {
        self.measured = Some(Quantity::new(value, unit));
        self
    }

    /// Sets the baseline and the ratio measured / baseline.
    pub fn baseline(mut self, value: f64, unit: &'static str) -> Self {
        self.baseline = Some(Quantity::new(value, unit));
        if let Some(m) = &self.measured
            && value != 0.0
        {
            self.ratio = Some(m.value / value);
        }
        self
    }

    pub fn target(mut self, target: impl Into<String>, verdict: Verdict) -> Self {
        self.target = target.into();
        self.verdict = verdict;
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// A row for a measurement that failed.
    pub fn error(scenario: &str, backend: &str, err: &anyhow::Error) -> Self {
        let mut row = Self::new(scenario, backend, "error");
        row.verdict = Verdict::Error;
        row.details = json!({ "error": format!("{err:#}") });
        row
    }

    fn to_json(&self) -> Value {
        let q = |q: &Option<Quantity>| {
            q.as_ref()
                .map(|q| json!({ "value": q.value, "unit": q.unit }))
        };
        json!({
            "scenario": self.scenario,
            "backend": self.backend,
            "metric": self.metric,
            "measured": q(&self.measured),
            "baseline": q(&self.baseline),
            "ratio": self.ratio,
            "target": self.target,
            "result": self.verdict.json(),
            "details": self.details,
        })
    }
}

/// Three significant-ish digits with thousands separators.
pub fn human(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 100.0 {
        group(v.round() as i64)
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| Scenario | Backend | Measured | Baseline | Ratio | Target | Result |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let measured = match (&r.measured, r.verdict) {
            (Some(q), _) => q.show(),
            (None, Verdict::Error) => r.details["error"]
                .as_str()
                .unwrap_or("error")
                .chars()
                .take(120)
                .collect::<String>()
                .replace('|', "/")
                .replace('\n', " "),
            (None, _) => "—".into(),
        };
        let baseline = r.baseline.as_ref().map_or("—".into(), Quantity::show);
        let ratio = r.ratio.map_or("—".into(), |x| format!("{x:.2}×"));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            if r.metric.is_empty() || r.metric == "error" {
                r.scenario.clone()
            } else {
                format!("{}: {}", r.scenario, r.metric)
            },
            r.backend,
            measured,
            baseline,
            ratio,
            r.target,
            r.verdict.label()
        ));
    }
    out
}

/// Cores, memory, CPU model and kernel, from `/proc`.
pub fn hardware() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, m)| m.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": model,
        "memory_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": kernel,
    })
}

pub fn hardware_line(hw: &Value, postgres: Option<&str>) -> String {
    format!(
        "Hardware: {} cores ({}), {} GiB memory, Linux {}{}",
        hw["cores"],
        hw["cpu"].as_str().unwrap_or("?"),
        hw["memory_gib"],
        hw["kernel"].as_str().unwrap_or("?"),
        postgres.map_or(String::new(), |v| format!(", PostgreSQL {v}")),
    )
}

/// `YYYY-MM-DDTHH-MM-SSZ` (UTC) for file names; `YYYY-MM-DDTHH:MM:SSZ` with
/// `colons`.
pub fn utc_stamp(t: SystemTime, colons: bool) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let sep = if colons { ':' } else { '-' };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}{sep}{:02}{sep}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Writes `latest.json`, `latest.md` and a timestamped copy of the JSON.
pub fn save(dir: &Path, started: SystemTime, doc: &Value, table: &str) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_string_pretty(doc)?;
    let stamped = dir.join(format!("{}.json", utc_stamp(started, false)));
    std::fs::write(&stamped, &text)?;
    std::fs::write(dir.join("latest.json"), &text)?;
    std::fs::write(dir.join("latest.md"), table)?;
    Ok(stamped.display().to_string())
}

pub fn rows_json(rows: &[Row]) -> Value {
    Value::Array(rows.iter().map(Row::to_json).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_civil_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_037_845); // 2025-11-25 02:30:45
        assert_eq!(utc_stamp(t, true), "2025-11-25T02:30:45Z");
        assert_eq!(utc_stamp(UNIX_EPOCH, false), "1970-01-01T00-00-00Z");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(human(1_234_567.0), "1,234,567");
        assert_eq!(human(12.345), "12.3");
        assert_eq!(human(0.5), "0.500");
    }
}
