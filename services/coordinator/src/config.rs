//! Command-line flags with `TESTRUNNER_*` environment fallbacks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Default listen address: loopback, so a first run exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default database: a SQLite file in the working directory (zero set-up).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://testrunner.db";

/// The TestRunner coordinator: owns Testrun state, dispatches tests to
/// runners, serves the API (gRPC, grpc-web, reflection, health), the console
/// and `/metrics` on one port.
#[derive(Debug, Clone, Parser)]
#[command(name = "coordinator", version, about)]
pub struct Config {
    /// Address to listen on (`host:port`; port 0 picks a free one).
    #[arg(long, env = "TESTRUNNER_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Also serve RunnerService on this address, on threads of its own that
    /// get the CPU ahead of the public API's (see `--api-nice`), so runners'
    /// logs and results never wait behind console traffic or watchers.
    #[arg(long, env = "TESTRUNNER_RUNNER_LISTEN")]
    pub runner_listen: Option<SocketAddr>,

    /// Nice value (0 to 19) of the public API's threads when
    /// `--runner-listen` is set; higher leaves more CPU to runners.
    #[arg(long, env = "TESTRUNNER_API_NICE", default_value_t = 10,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    pub api_nice: i32,

    /// Database URL: `postgres://...` for a fleet, `sqlite://path.db` for a
    /// single machine (created if missing).
    #[arg(long, env = "TESTRUNNER_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Bearer token runners must present. When empty, a random token is
    /// generated at start and printed, so no unauthenticated runner ever
    /// gets work.
    #[arg(
        long,
        env = "TESTRUNNER_RUNNER_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub runner_token: String,

    /// When set, CreateTestrun, CancelTestrun and DeleteTestrun require
    /// `authorization: Bearer <api-token>`.
    #[arg(
        long,
        env = "TESTRUNNER_API_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub api_token: String,

    /// Directory of the built console (`web-client/dist`), served at `/`.
    #[arg(long, env = "TESTRUNNER_CONSOLE_DIR")]
    pub console_dir: Option<PathBuf>,

    /// Log format.
    #[arg(
        long,
        env = "TESTRUNNER_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,

    /// PEM certificate chain; with `--tls-key`, the listener speaks TLS.
    #[arg(long, env = "TESTRUNNER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "TESTRUNNER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle; when set, clients must present a certificate it signed
    /// (mutual TLS).
    #[arg(long, env = "TESTRUNNER_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub runners: RunnerSettings,
    #[command(flatten)]
    pub content: ContentSettings,
}

/// How the coordinator writes its log (to standard error). A value other
/// than these is refused at start-up, not taken silently as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

/// Limits on what clients may submit. Every one is a setting.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Largest test file, in bytes.
    #[arg(long, env = "TESTRUNNER_MAX_FILE_BYTES", default_value_t = 1 << 20)]
    pub max_file_bytes: usize,

    /// Most test files in one Testrun.
    #[arg(long, env = "TESTRUNNER_MAX_FILES", default_value_t = 10_000)]
    pub max_files: usize,

    /// Largest gRPC request, in bytes (bounds a whole CreateTestrun).
    #[arg(long, env = "TESTRUNNER_MAX_REQUEST_BYTES", default_value_t = 64 << 20)]
    pub max_request_bytes: usize,

    /// Per-test timeout when a Testrun gives none.
    #[arg(long, env = "TESTRUNNER_DEFAULT_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub default_timeout: Duration,

    /// Largest per-test timeout a Testrun may ask for.
    #[arg(long, env = "TESTRUNNER_MAX_TIMEOUT", default_value = "24h", value_parser = humantime::parse_duration)]
    pub max_timeout: Duration,
    /// Set-up timeout when a Testrun with a set-up gives none.
    #[arg(long, env = "TESTRUNNER_DEFAULT_SETUP_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub default_setup_timeout: Duration,
}

/// How runners are kept track of.
#[derive(Debug, Clone, clap::Args)]
pub struct RunnerSettings {
    /// How long a runner's tests survive without a message from it; after
    /// that they go back to the queue.
    #[arg(long, env = "TESTRUNNER_LEASE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease: Duration,

    /// How often an idle runner sends a heartbeat.
    #[arg(long, env = "TESTRUNNER_HEARTBEAT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,

    /// Attempts a test gets when its runners keep getting lost; then ERROR.
    #[arg(long, env = "TESTRUNNER_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: i32,

    /// Most lines in one Logs batch from a runner.
    #[arg(long, env = "TESTRUNNER_MAX_LINES_PER_BATCH", default_value_t = 50_000)]
    pub max_lines_per_batch: u32,

    /// Longest log line a runner may send, in bytes (runners truncate).
    #[arg(long, env = "TESTRUNNER_MAX_LINE_BYTES", default_value_t = 64 << 10)]
    pub max_line_bytes: u32,

    /// Largest message on a runner stream, in bytes.
    #[arg(long, env = "TESTRUNNER_MAX_RUNNER_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_runner_message_bytes: usize,
}

/// Workspaces: limits on a tree, the set-up step, and blob collection.
#[derive(Debug, Clone, clap::Args)]
pub struct ContentSettings {
    /// Largest workspace (bytes of all its files) and largest blob.
    #[arg(long, env = "TESTRUNNER_MAX_WORKSPACE_BYTES", default_value_t = 2 << 30)]
    pub max_workspace_bytes: i64,
    /// Most files in one workspace.
    #[arg(
        long,
        env = "TESTRUNNER_MAX_WORKSPACE_FILES",
        default_value_t = 200_000
    )]
    pub max_workspace_files: i64,
    /// How long a blob no Testrun references is kept after its last
    /// upload or lookup: covers uploads in progress and the gap between
    /// an upload and the CreateTestrun that uses it.
    #[arg(long, env = "TESTRUNNER_BLOB_GRACE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub blob_grace: Duration,
}

impl Config {
    /// A configuration with every default, listening on `listen` and storing
    /// in `database_url`; what tests and embedders start from.
    pub fn for_tests(listen: SocketAddr, database_url: impl Into<String>) -> Self {
        let mut config = Config::parse_from(["coordinator"]);
        config.listen = listen;
        config.database_url = database_url.into();
        config.runner_token = "test-token".into();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_format_is_text_or_json_and_a_typo_is_refused() {
        let parse = |args: &[&str]| {
            Config::try_parse_from(std::iter::once("coordinator").chain(args.iter().copied()))
        };
        assert_eq!(parse(&[]).unwrap().log_format, LogFormat::Text);
        assert_eq!(
            parse(&["--log-format", "json"]).unwrap().log_format,
            LogFormat::Json
        );
        let err = parse(&["--log-format", "jsno"]).unwrap_err().to_string();
        assert!(err.contains("jsno") && err.contains("json"), "{err}");
    }
}
