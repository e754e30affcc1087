//! Command-line flags with `TESTRUNNER_*` environment fallbacks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::isolation::IsolationSettings;
pub use crate::isolation::users::TestUser;
use testrunner_content::size::parse_size;

/// Interpreters by file extension when a test has no command template and
/// no shebang. `--interpreter EXT=COMMAND` adds or overrides entries.
pub const DEFAULT_INTERPRETERS: &[(&str, &str)] = &[
    ("sh", "sh"),
    ("bash", "bash"),
    ("py", "python3"),
    ("js", "node"),
    ("mjs", "node"),
    ("rb", "ruby"),
    ("pl", "perl"),
];

/// The TestRunner runner: attaches to a coordinator, runs the test files it
/// is given as isolated child processes, and streams their output back.
#[derive(Debug, Clone, Parser)]
#[command(name = "runner", version, about)]
pub struct Config {
    /// Coordinator address (`http://host:50051`, or `https://` for TLS).
    #[arg(
        long,
        env = "TESTRUNNER_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub coordinator: String,

    /// Bearer token the coordinator accepts from runners. Prefer
    /// `--token-file`: a command line is readable by every process on the
    /// machine (`/proc/<pid>/cmdline`).
    #[arg(
        long,
        env = "TESTRUNNER_RUNNER_TOKEN",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub token: String,

    /// Name shown with the tests this runner ran (default: the host name).
    #[arg(long, env = "TESTRUNNER_RUNNER_NAME")]
    pub name: Option<String>,

    /// Tests run at once (default: the number of CPUs).
    #[arg(long, env = "TESTRUNNER_SLOTS")]
    pub slots: Option<u32>,

    /// Most tests held beyond `--slots`, each waiting for a slot to free up
    /// (default: 16 per slot, at most 1024). The coordinator fills this
    /// queue only with short tests (about 50 ms of work per slot), so that
    /// a slot goes straight on to its next test instead of waiting a round
    /// trip to the coordinator; 0 turns it off.
    #[arg(long, env = "TESTRUNNER_QUEUE")]
    pub queue: Option<u32>,

    /// A test that waited in the queue this long is handed back to the
    /// coordinator, for a runner with a free slot: the tests ahead of it
    /// turned out long.
    #[arg(long, env = "TESTRUNNER_QUEUE_WAIT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub queue_wait: Duration,

    /// Labels sent to the coordinator, `key=value`, repeatable. Testruns
    /// with a selector go only to runners that have all of its labels. Keys
    /// and values: 1 to 63 of `A-Z a-z 0-9 . _ -` (the coordinator checks
    /// the same rule).
    #[arg(long = "label", env = "TESTRUNNER_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// Interpreter by extension, `EXT=COMMAND` (e.g. `py=python3.12`),
    /// repeatable; added to the built-in table.
    #[arg(
        long = "interpreter",
        env = "TESTRUNNER_INTERPRETERS",
        value_delimiter = ','
    )]
    pub interpreters: Vec<String>,

    /// On SIGTERM: how long running tests may finish before they are handed
    /// back to the coordinator.
    #[arg(long, env = "TESTRUNNER_DRAIN_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Time between SIGTERM and SIGKILL for a test past its timeout.
    #[arg(long, env = "TESTRUNNER_KILL_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub kill_grace: Duration,

    /// Longest log line kept, in bytes; longer lines are cut with a marker.
    #[arg(long, env = "TESTRUNNER_MAX_LINE_BYTES", default_value_t = 16 << 10)]
    pub max_line_bytes: usize,

    /// Output kept per test, in bytes; the rest is dropped with a marker.
    #[arg(long, env = "TESTRUNNER_MAX_OUTPUT_BYTES", default_value_t = 256 << 20)]
    pub max_output_bytes: u64,

    /// Unacknowledged log bytes kept for resending; past this, test output
    /// is paused until the coordinator catches up.
    #[arg(long, env = "TESTRUNNER_MAX_BUFFERED_BYTES", default_value_t = 64 << 20)]
    pub max_buffered_bytes: usize,

    /// Most lines per Logs batch (the coordinator may set fewer). Large
    /// batches cost the coordinator one transaction, and each watcher one
    /// message, per batch.
    #[arg(long, env = "TESTRUNNER_BATCH_LINES", default_value_t = 50_000)]
    pub batch_lines: usize,

    /// Most bytes of line text per Logs batch (the coordinator may set
    /// fewer, to fit its message size limit).
    #[arg(long, env = "TESTRUNNER_BATCH_BYTES", default_value_t = 1 << 20)]
    pub batch_bytes: usize,

    /// Longest time a log line waits before it is sent, while output is
    /// light; heavy output (1,000 lines or more in one interval) waits up
    /// to 100 ms for fuller batches.
    #[arg(long, env = "TESTRUNNER_FLUSH_INTERVAL", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,

    /// Light output: a line goes at once when no line went for this long,
    /// else at most this much later, so a watcher sees it within a few
    /// milliseconds while a chatty test still sends at most one batch per
    /// interval.
    #[arg(long, env = "TESTRUNNER_LINE_DELAY", default_value = "2ms", value_parser = humantime::parse_duration)]
    pub line_delay: Duration,

    /// Directory for test work directories (default: the system temp dir).
    #[arg(long, env = "TESTRUNNER_WORK_DIR")]
    pub work_dir: Option<PathBuf>,

    /// `PATH` given to tests.
    #[arg(
        long,
        env = "TESTRUNNER_TEST_PATH",
        default_value = "/usr/local/bin:/usr/bin:/bin"
    )]
    pub test_path: String,

    /// Serve `/metrics` and `/healthz` on this address.
    #[arg(long, env = "TESTRUNNER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// PEM CA bundle to verify the coordinator's certificate.
    #[arg(long, env = "TESTRUNNER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate (mutual TLS), with `--tls-key`.
    #[arg(long, env = "TESTRUNNER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM client key for `--tls-cert`.
    #[arg(long, env = "TESTRUNNER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Directory of the workspace blob cache (default: `cache` in the
    /// runner's work root, which goes away with the runner; give a
    /// directory of its own, e.g. a volume, to keep the cache across
    /// restarts). One runner per directory.
    #[arg(long, env = "TESTRUNNER_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Most bytes of workspace blobs kept in the cache; least recently used
    /// blobs beyond it are evicted, never one a preparation uses.
    #[arg(long, env = "TESTRUNNER_CACHE_BYTES", default_value_t = 10 << 30)]
    pub cache_bytes: u64,

    /// Log format.
    #[arg(
        long,
        env = "TESTRUNNER_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,

    /// Largest JUnit report read (`{junit}`, TESTRUNNER_JUNIT_XML), in
    /// bytes; a larger one is not read and the test gets a note.
    #[arg(long, env = "TESTRUNNER_JUNIT_MAX_BYTES", default_value_t = 32 << 20)]
    pub junit_max_bytes: u64,

    /// Most test cases kept from one JUnit report; the rest are counted in
    /// the test's note.
    #[arg(long, env = "TESTRUNNER_JUNIT_MAX_CASES", default_value_t = 100_000)]
    pub junit_max_cases: usize,

    /// Most bytes kept of each text of a case (message, details,
    /// system-out, system-err); longer ones are cut with a marker.
    #[arg(long, env = "TESTRUNNER_JUNIT_MAX_TEXT_BYTES", default_value_t = 64 << 10)]
    pub junit_max_text_bytes: usize,

    /// File holding the runner token, read once at start; wins over
    /// `--token`. Keep it readable only by the runner's user.
    #[arg(long, env = "TESTRUNNER_RUNNER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// User tests run as: `auto` (a uid per slot when the runner may
    /// switch users, i.e. is root or has CAP_SETUID/CAP_SETGID/CAP_CHOWN;
    /// else the runner's user), `per-slot` (required), or `runner`.
    #[arg(long, env = "TESTRUNNER_TEST_USER", value_enum, default_value_t = TestUser::Auto)]
    pub test_user: TestUser,

    /// First uid (and gid) of the per-slot test users: slot N runs as
    /// base + N. No account needs to exist for them. Runners on one machine
    /// need disjoint ranges, or two tests may share a uid.
    #[arg(long, env = "TESTRUNNER_TEST_UID_BASE", default_value_t = 100_000)]
    pub test_uid_base: u32,

    /// Memory per test (`2GiB`): a cgroup limit (the test is OOM-killed)
    /// where the runner has one, else RLIMIT_AS per process.
    #[arg(long, env = "TESTRUNNER_TEST_MEMORY", value_parser = parse_size)]
    pub test_memory: Option<u64>,

    /// Processes per test: a cgroup `pids.max` where the runner has one,
    /// else RLIMIT_NPROC (per uid: exact with per-slot users).
    #[arg(long, env = "TESTRUNNER_TEST_PIDS")]
    pub test_pids: Option<u64>,

    /// Bytes a test's work directory may hold (`1GiB`); a test past it is
    /// stopped and fails with a message saying so.
    #[arg(long, env = "TESTRUNNER_MAX_WORKDIR_BYTES", value_parser = parse_size)]
    pub max_workdir_bytes: Option<u64>,

    /// Whether to put each test in cgroups of its own where the runner may
    /// create them (`auto`), or never (`off`: leftovers are then found by
    /// uid or in /proc).
    #[arg(long, env = "TESTRUNNER_TEST_CGROUPS", value_enum, default_value_t = CgroupMode::Auto)]
    pub test_cgroups: CgroupMode,
}

/// `--test-cgroups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CgroupMode {
    Auto,
    Off,
}

/// How the runner writes its log (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

impl Config {
    /// The runner's name: `--name`, else the host name.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "runner".into())
        })
    }

    /// Slots: `--slots`, else the number of CPUs.
    pub fn slot_count(&self) -> u32 {
        self.slots
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
    }

    /// Queue: `--queue`, else 16 per slot.
    pub fn queue_len(&self) -> u32 {
        self.queue
            .unwrap_or_else(|| self.slot_count().saturating_mul(16))
            .min(1024)
    }

    /// Checks what clap cannot: how options relate to each other.
    pub fn validate(&self) -> anyhow::Result<()> {
        // A zero period would make the flush timer panic.
        anyhow::ensure!(
            !self.flush_interval.is_zero(),
            "--flush-interval must be more than 0"
        );
        // Waits are checked at each flush tick: a shorter wait hands back a
        // test at the first tick after it came, and the coordinator, seeing
        // a runner with room, gives it straight back to be handed back
        // again.
        anyhow::ensure!(
            self.queue_wait >= self.flush_interval,
            "--queue-wait {}: must be at least --flush-interval ({})",
            humantime::format_duration(self.queue_wait),
            humantime::format_duration(self.flush_interval)
        );
        self.label_map()?;
        Ok(())
    }

    /// `--label`s as a map, each checked by the rule the coordinator
    /// applies (`testrunner_content::label`): a runner refuses to start
    /// with a label the coordinator would refuse, or one given twice.
    pub fn label_map(&self) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        use testrunner_content::label;
        anyhow::ensure!(
            self.labels.len() <= label::MAX_RUNNER_LABELS,
            "--label: more than {} labels",
            label::MAX_RUNNER_LABELS
        );
        let mut map = std::collections::BTreeMap::new();
        for text in &self.labels {
            let (key, value) =
                label::parse_label(text).map_err(|e| anyhow::anyhow!("--label {e}"))?;
            if let Some(old) = map.insert(key.clone(), value) {
                anyhow::bail!("--label {text:?}: key {key:?} is already {old:?}");
            }
        }
        Ok(map)
    }

    /// The runner token: `--token-file`'s content, else `--token`.
    pub fn load_token(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.token_file {
            self.token = crate::isolation::hardening::read_token_file(path)?;
        }
        anyhow::ensure!(
            !self.token.is_empty(),
            "no runner token: give --token-file (or TESTRUNNER_RUNNER_TOKEN)"
        );
        Ok(())
    }

    /// The isolation flags together.
    pub fn isolation(&self) -> IsolationSettings {
        IsolationSettings {
            test_user: self.test_user,
            uid_base: self.test_uid_base,
            memory: self.test_memory,
            pids: self.test_pids.filter(|n| *n > 0),
            max_workdir_bytes: self.max_workdir_bytes,
            cgroups: self.test_cgroups == CgroupMode::Auto,
        }
    }

    /// The interpreter table: built-ins overridden by `--interpreter`.
    pub fn interpreter_table(&self) -> anyhow::Result<Vec<(String, Vec<String>)>> {
        let mut table: Vec<(String, Vec<String>)> = DEFAULT_INTERPRETERS
            .iter()
            .map(|(e, c)| ((*e).to_owned(), vec![(*c).to_owned()]))
            .collect();
        for entry in &self.interpreters {
            let (ext, cmd) = entry
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--interpreter {entry:?}: expected EXT=COMMAND"))?;
            let words = shell_words::split(cmd)
                .map_err(|e| anyhow::anyhow!("--interpreter {entry:?}: {e}"))?;
            anyhow::ensure!(!words.is_empty(), "--interpreter {entry:?}: empty command");
            let ext = ext.trim_start_matches('.').to_owned();
            table.retain(|(e, _)| *e != ext);
            table.push((ext, words));
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["runner", "--token", "t"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn the_log_format_is_text_or_json_and_nothing_else() {
        assert_eq!(parse(&[]).log_format, LogFormat::Text);
        assert_eq!(parse(&["--log-format", "json"]).log_format, LogFormat::Json);
        assert_eq!(parse(&["--log-format", "text"]).log_format, LogFormat::Text);
        let err = Config::try_parse_from(["runner", "--token", "t", "--log-format", "jsno"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("jsno") && err.contains("json"), "{err}");
    }

    #[test]
    fn labels_follow_the_coordinators_rule() {
        let ok = parse(&["--label", "gpu=a100", "--label", "os=linux"]);
        assert_eq!(ok.label_map().unwrap().len(), 2);
        for bad in ["gpu", "gpu=", "=a100", "gpu=a 100", "gpu=a/b"] {
            let err = parse(&["--label", bad]).validate().unwrap_err().to_string();
            assert!(err.starts_with("--label "), "{bad:?}: {err}");
        }
        let twice = parse(&["--label", "gpu=a", "--label", "gpu=b"]);
        assert!(twice.validate().is_err());
    }

    #[test]
    fn a_queue_wait_below_the_flush_interval_is_refused_by_name() {
        assert!(parse(&[]).validate().is_ok(), "the defaults are valid");
        for args in [
            &["--queue-wait", "0s"][..],
            &["--queue-wait", "10ms"],
            &["--queue-wait", "1s", "--flush-interval", "2s"],
        ] {
            let err = parse(args).validate().unwrap_err().to_string();
            assert!(err.contains("--queue-wait"), "{args:?}: {err}");
        }
        assert!(
            parse(&["--queue-wait", "20ms", "--flush-interval", "20ms"])
                .validate()
                .is_ok()
        );
        let err = parse(&["--flush-interval", "0s", "--queue-wait", "0s"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("--flush-interval"), "{err}");
    }
}
