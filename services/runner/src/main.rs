use std::sync::Arc;

use clap::Parser as _;
use runner::config::LogFormat;
use runner::{Agent, Config, stats};

// One thread: a runner's own work is moving bytes between pipes and one
// stream, and its tests run as processes of their own. On two worker
// threads, cross-thread wake-ups (futex calls and context switches) were a
// third of the runner's CPU per test in the dispatch benchmark.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(config.log_format);
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
