use clap::Parser as _;
use coordinator::{Application, Config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(&config.log_format);
    let generated_token = config.runner_token.is_empty();
    let console = config.console_dir.is_some();
    let app = Application::build(config).await?;
    let scheme = if app.is_tls() { "https" } else { "http" };
    // One line on stdout that people and scripts can read.
    println!("coordinator listening on {scheme}://{}", app.local_addr());
    if console {
        println!("console: {scheme}://{}/", app.local_addr());
    }
    if generated_token {
        println!(
            "runner token (generated; set --runner-token to choose one): {}",
            app.runner_token()
        );
    }
    app.run_until_stopped(shutdown_signal()).await
}

/// Ctrl-C or SIGTERM (what Kubernetes sends).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
