use std::sync::Arc;

use clap::Parser as _;
use runner::config::LogFormat;
use runner::isolation::hardening;
use runner::{Agent, Config, stats};

// One thread: a runner's own work is moving bytes between pipes and one
// stream, and its tests run as processes of their own. On two worker
// threads, cross-thread wake-ups (futex calls and context switches) were a
// third of the runner's CPU per test in the dispatch benchmark.
fn main() -> anyhow::Result<()> {
    // Before any secret is read: nothing of ours is readable through /proc.
    hardening::harden_process();
    let mut config = Config::parse();
    // Still one thread: the environment may be changed safely.
    hardening::scrub_token_env();
    init_tracing(config.log_format);
    if hardening::token_on_command_line() {
        tracing::warn!(
            "--token on the command line is readable by every process here; use --token-file"
        );
    }
    config.load_token()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let stats = Arc::new(stats::Stats::default());
    if let Some(addr) = config.metrics_listen {
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            if let Err(err) = stats::serve(addr, stats).await {
                tracing::error!(error = %err, "metrics listener failed");
            }
        });
    }
    Agent::new(config, stats)?.run().await
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,h2=warn,tower=warn,hyper=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
