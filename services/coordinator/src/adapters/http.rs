//! Plain-HTTP routes on the API port: the log download, `/metrics`, and the
//! console's static files.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};

use super::status;
use crate::domain::now_millis;
use crate::engine::dispatch::Dispatcher;
use crate::engine::testruns::{TestRef, Testruns};
use crate::error::Error;
use crate::metrics::{self, Gauges, Metrics};

/// Lines per page when streaming a log download.
const DOWNLOAD_PAGE: i64 = 10_000;

#[derive(Clone)]
struct HttpState {
    service: Testruns,
    metrics: Arc<Metrics>,
    dispatcher: Arc<Dispatcher>,
}

/// Adds the HTTP routes to the gRPC router, with the console as fallback.
pub fn routes(
    router: Router,
    service: Testruns,
    metrics: Arc<Metrics>,
    dispatcher: Arc<Dispatcher>,
    console_dir: Option<&Path>,
) -> Router {
    let state = HttpState {
        service,
        metrics,
        dispatcher,
    };
    let router = router.merge(
        Router::new()
            .route("/metrics", get(metrics_text))
            .route("/testruns/{id}/tests/{name}/log", get(download_log))
            .with_state(state),
    );
    match console_dir {
        // Unknown paths are console routes (/testruns/7): serve index.html
        // and let the client-side router decide.
        Some(dir) => router
            .fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")))),
        None => router.fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "no console here: start the coordinator with --console-dir web-client/dist\n",
            )
        }),
    }
}

async fn metrics_text(State(state): State<HttpState>) -> Response {
    let stats = match state.service.store.queue_stats().await {
        Ok(s) => s,
        Err(err) => return error_response(err),
    };
    let (runners, free_slots) = state.dispatcher.gauges();
    let gauges = Gauges {
        by_selector: stats.by_selector,
        oldest_queued_seconds: stats
            .oldest_queued_at
            .map_or(0.0, |t| (now_millis() - t).max(0) as f64 / 1000.0),
        runners,
        free_slots,
    };
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.render(&gauges),
    )
        .into_response()
}

async fn download_log(
    State(state): State<HttpState>,
    UrlPath((id, name)): UrlPath<(i64, String)>,
) -> Response {
    let test = match state.service.test(id, &TestRef::Name(name.clone())).await {
        Ok(t) => t,
        Err(err) => return error_response(err),
    };
    let store = Arc::clone(&state.service.store);
    // Stream page by page: a million-line log never sits in memory whole.
    let body = futures::stream::unfold(Some(0i64), move |offset| {
        let store = Arc::clone(&store);
        async move {
            let offset = offset?;
            match store.read_test_log(test.id, offset, DOWNLOAD_PAGE).await {
                Ok(lines) if lines.is_empty() => None,
                Ok(lines) => {
                    let next = offset + lines.len() as i64;
                    let mut chunk = lines.join("\n");
                    chunk.push('\n');
                    let more = lines.len() as i64 == DOWNLOAD_PAGE;
                    Some((Ok::<_, std::io::Error>(chunk), more.then_some(next)))
                }
                Err(err) => Some((Err(std::io::Error::other(err.to_string())), None)),
            }
        }
    });
    let filename = name.replace('"', "_");
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{filename}.log\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn error_response(err: Error) -> Response {
    status::http(err).into_response()
}
