//! The coordinator's two runtimes: the public API's, and the runner
//! plane's.
//!
//! With `--runner-listen`, runner streams (logs, results) and the work that
//! feeds runners (dispatch, result batches, lease reaping) run on threads of
//! their own, and the public API's threads (console, grpcurl, watchers) run
//! at a lower CPU priority (`--api-nice`). On a busy machine the kernel then
//! gives runners' work the CPU first: in the bench, 500 watchers of one
//! Testrun otherwise took most of two cores from the ingestion of its
//! logs. Watchers that fall behind lose nothing; they catch up from the
//! store.

use tokio::runtime::{Builder, Runtime};

use crate::config::Config;

/// The runtime `main` serves the public API on. With a runner listener,
/// its threads lower their priority to `api_nice` as they start (the
/// calling thread keeps its own, so the runner plane it builds does too).
pub fn public(config: &Config) -> std::io::Result<Runtime> {
    let nice = config.runner_listen.map(|_| config.api_nice);
    let mut builder = Builder::new_multi_thread();
    builder.enable_all().thread_name("api");
    if let Some(nice) = nice {
        builder.on_thread_start(move || lower_priority(nice));
    }
    builder.build()
}

/// The runner plane's runtime, at the priority of the thread that builds it.
///
/// One worker thread: the plane's tasks (runner streams, dispatch, result
/// batches) hand work to each other several times per test, and across
/// threads every hand-off is a futex wake-up. In the dispatch bench a
/// second worker cost the coordinator a third more CPU per test and bought
/// no throughput: the rest of the work runs on the store's own threads
/// (SQLite's writer, or the Postgres server).
pub fn runner_plane() -> std::io::Result<Plane> {
    let runtime = Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("runner-plane")
        .build()?;
    Ok(Plane(Some(runtime)))
}

/// The runner plane's runtime. Unlike a bare `Runtime` it may be dropped
/// from async code (an error while building the coordinator, or its end),
/// where dropping a runtime would panic.
#[derive(Debug)]
pub struct Plane(Option<Runtime>);

impl std::ops::Deref for Plane {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Sets the calling thread's nice value: on Linux a nice value belongs to a
/// thread, not to its process. Best effort: a failure only costs priority.
fn lower_priority(nice: i32) {
    if let Err(error) = rustix::process::setpriority_process(None, nice) {
        tracing::warn!(%error, nice, "cannot lower the API threads' priority");
    }
}
