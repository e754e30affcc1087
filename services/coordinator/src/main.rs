use clap::Parser as _;
use coordinator::{Application, Config, runtime, telemetry};

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format);
    runtime::public(&config)?.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let generated_token = config.runner_token.is_empty();
    let console = config.console_dir.is_some();
    let app = Application::build(config).await?;
    let scheme = if app.is_tls() { "https" } else { "http" };
    // Lines on stdout that people and scripts can read, written at once so
    // a reader that stops after the first line never breaks the pipe early.
    let mut banner = format!("coordinator listening on {scheme}://{}\n", app.local_addr());
    if let Some(addr) = app.runner_addr() {
        banner += &format!("runners: {scheme}://{addr}\n");
    }
    if console {
        banner += &format!("console: {scheme}://{}/\n", app.local_addr());
    }
    if generated_token {
        banner += &format!(
            "runner token (generated; set --runner-token to choose one): {}\n",
            app.runner_token()
        );
    }
    print!("{banner}");
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
