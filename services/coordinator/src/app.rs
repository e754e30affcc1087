//! Wiring: builds the coordinator from its configuration and serves it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use testrunner_proto::v1::content_service_server::ContentServiceServer;
use testrunner_proto::v1::runner_admin_service_server::RunnerAdminServiceServer;
use testrunner_proto::v1::runner_service_server::RunnerServiceServer;
use testrunner_proto::v1::testrun_service_server::TestrunServiceServer;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_web::GrpcWebLayer;
use tower::{Layer as _, ServiceExt as _};

use crate::adapters::admin::RunnerAdminApi;
use crate::adapters::api::TestrunApi;
use crate::adapters::content::ContentApi;
use crate::adapters::http;
use crate::adapters::runner::RunnerApi;
use crate::adapters::watch_route::{self, SharedWatchRoute};
use crate::config::Config;
use crate::engine::content::Content;
use crate::engine::dispatch::Dispatcher;
use crate::engine::finisher::Finisher;
use crate::engine::fleet::Fleet;
use crate::engine::runners::Runners;
use crate::engine::testruns::Testruns;
use crate::engine::{collector, reaper};
use crate::live::cluster;
use crate::live::hub::Hub;
use crate::live::signal::Cluster;
use crate::metrics::Metrics;
use crate::runtime::{self, Plane};
use crate::store;

/// How long in-flight calls get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A built coordinator, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    routes: Routes,
    tls: Option<ServerTlsConfig>,
    runner_token: String,
    /// Background work (dispatch, finisher, reaper, cluster), ended when
    /// serving ends.
    tasks: JoinSet<()>,
    plane: Option<RunnerPlane>,
}

/// RunnerService on its own listener and runtime (`--runner-listen`).
struct RunnerPlane {
    runtime: Plane,
    /// A std listener: it joins the plane's reactor when serving starts,
    /// so accepting runners never waits on the API's threads.
    listener: std::net::TcpListener,
    addr: SocketAddr,
    routes: Routes,
}

/// Spawns on the runner plane if there is one, else here.
fn spawn_on<F>(tasks: &mut JoinSet<()>, plane: Option<&Runtime>, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match plane {
        Some(runtime) => tasks.spawn_on(task, runtime.handle()),
        None => tasks.spawn(task),
    };
}

impl Application {
    /// Connects the store, starts the dispatcher and the lease reaper, and
    /// binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Built first, from this thread (the main one, at normal priority):
        // threads inherit their creator's priority.
        let plane_runtime = match config.runner_listen {
            Some(_) => Some(runtime::runner_plane().context("starting the runner plane")?),
            None => None,
        };
        let plane = plane_runtime.as_deref();
        // The runner side's store is opened on the plane: a Postgres
        // connection is driven by the runtime that opened it, and SQLite's
        // writer thread takes the priority of the thread that starts it.
        // The API gets a pool of its own on Postgres, so runner-side queries
        // never wait on the API's lower-priority threads.
        let url = config.database_url.clone();
        let store = match plane {
            Some(runtime) => runtime
                .spawn(async move { store::connect(&url).await })
                .await
                .context("opening the store on the runner plane")??,
            None => store::connect(&url).await?,
        };
        let api_store: Arc<dyn store::Store> = match (plane, store.shared_pool()) {
            (Some(_), Some(_)) => Arc::new(store::PgStore::open(&config.database_url).await?),
            _ => Arc::clone(&store),
        };
        let mut tasks = JoinSet::new();
        let (cluster, cluster_listener) = match store.shared_pool() {
            Some(pool) => {
                let (cluster, origin, sender) = cluster::start(pool.clone());
                spawn_on(&mut tasks, plane, sender.run());
                (cluster, Some((pool, origin)))
            }
            None => (Cluster::default(), None),
        };
        let hub = Arc::new(Hub::new(cluster));
        let metrics = Arc::new(Metrics::default());
        let dispatcher = Arc::new(Dispatcher::new(
            Arc::clone(&store),
            Arc::clone(&hub),
            Arc::clone(&metrics),
        ));
        let runner_token = if config.runner_token.is_empty() {
            // Never hand work to an unauthenticated runner, even with zero
            // set-up: invent a token and let the operator read it.
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            config.runner_token.clone()
        };

        let (finisher, finishing) =
            Finisher::new(Arc::clone(&store), Arc::clone(&hub), Arc::clone(&metrics));
        spawn_on(&mut tasks, plane, finishing);
        spawn_on(&mut tasks, plane, Arc::clone(&dispatcher).run());
        spawn_on(
            &mut tasks,
            plane,
            reaper::run(
                Arc::clone(&store),
                Arc::clone(&hub),
                Arc::clone(&dispatcher),
                config.runners.lease,
                config.runners.max_attempts,
            ),
        );
        if let Some((pool, origin)) = cluster_listener {
            spawn_on(
                &mut tasks,
                plane,
                cluster::listen(
                    pool,
                    origin,
                    Arc::clone(&store),
                    Arc::clone(&hub),
                    Arc::clone(&dispatcher) as Arc<dyn cluster::LocalRunners>,
                ),
            );
        }
        // Tests left queued by an earlier run of the coordinator.
        dispatcher.wake();

        let content = Content {
            store: Arc::clone(&api_store),
            settings: config.content.clone(),
        };
        spawn_on(
            &mut tasks,
            plane,
            collector::run(
                Arc::clone(&store),
                Arc::clone(&hub),
                config.content.blob_grace,
                config.runners.lease,
            ),
        );
        let service = Testruns {
            store: api_store,
            hub: Arc::clone(&hub),
            dispatcher: Arc::clone(&dispatcher),
            limits: config.limits.clone(),
            content: content.clone(),
        };
        let max = config.limits.max_request_bytes;
        let testrun_api = TestrunServiceServer::new(TestrunApi {
            service: service.clone(),
            api_token: config.api_token.as_str().into(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
        // Runner tokens are checked on the runner plane's store; operators
        // use the API's.
        let runner_fleet = Fleet {
            store: Arc::clone(&store),
            shared_token: runner_token.as_str().into(),
        };
        let admin_api = RunnerAdminServiceServer::new(RunnerAdminApi {
            fleet: Fleet {
                store: Arc::clone(&service.store),
                shared_token: runner_token.as_str().into(),
            },
            api_token: config.api_token.as_str().into(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
        let runner_api = RunnerServiceServer::new(RunnerApi {
            runners: Runners {
                store: Arc::clone(&store),
                hub: Arc::clone(&hub),
                dispatcher: Arc::clone(&dispatcher),
                finisher,
                metrics: Arc::clone(&metrics),
                settings: config.runners.clone(),
            },
            fleet: runner_fleet.clone(),
        })
        .max_decoding_message_size(config.runners.max_runner_message_bytes)
        .max_encoding_message_size(max);
        // Batches carry up to 4 MiB of data plus their digests.
        let content_api = ContentServiceServer::new(ContentApi {
            content,
            api_token: config.api_token.as_str().into(),
            fleet: runner_fleet,
        })
        .max_decoding_message_size(max.max(8 << 20))
        .max_encoding_message_size(max.max(8 << 20));

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(testrunner_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building reflection v1")?;
        // grpcurl 1.8 only asks v1alpha.
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(testrunner_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("building reflection v1alpha")?;
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<TestrunServiceServer<TestrunApi>>()
            .await;

        // grpc-web per service, not server-wide: a server-wide layer would
        // answer 400 to plain HTTP (console files, /metrics).
        let web = GrpcWebLayer::new();
        let plane_routes = Routes::builder()
            .add_service(runner_api.clone())
            .add_service(content_api.clone())
            .add_service(health.clone())
            .clone()
            .routes();
        let grpc = Routes::builder()
            .add_service(web.layer(testrun_api))
            .add_service(web.layer(health))
            .add_service(web.layer(content_api))
            .add_service(web.layer(admin_api))
            .add_service(runner_api)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .clone()
            .routes();
        // WatchTestrun with shared, pre-framed events (see watch_route).
        let shared_watch = web.layer(SharedWatchRoute {
            service: service.clone(),
        });
        let grpc_router = grpc.into_axum_router().route_service(
            watch_route::PATH,
            shared_watch
                .map_request(|r: ::http::Request<axum::body::Body>| r.map(tonic::body::Body::new)),
        );
        let router = http::routes(
            grpc_router,
            service,
            metrics,
            dispatcher,
            config.console_dir.as_deref(),
        );

        let tls = tls_config(&config)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let plane = match (plane_runtime, config.runner_listen) {
            (Some(runtime), Some(runner_listen)) => {
                let listener = std::net::TcpListener::bind(runner_listen)
                    .with_context(|| format!("binding {runner_listen}"))?;
                listener.set_nonblocking(true)?;
                let addr = listener.local_addr()?;
                Some(RunnerPlane {
                    runtime,
                    listener,
                    addr,
                    routes: plane_routes,
                })
            }
            _ => None,
        };
        Ok(Self {
            listener,
            addr,
            routes: Routes::from(router),
            tls,
            runner_token,
            tasks,
            plane,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The runner listener's address, with `--runner-listen`.
    pub fn runner_addr(&self) -> Option<SocketAddr> {
        self.plane.as_ref().map(|p| p.addr)
    }

    /// The token runners must present (generated when none was configured).
    pub fn runner_token(&self) -> &str {
        &self.runner_token
    }

    /// True when the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` resolves, then gives in-flight calls a short
    /// grace (long-lived streams would otherwise hold shutdown forever).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let signal = {
            let stop = stop.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down");
                stop.cancel();
            }
        };
        let builder = || -> anyhow::Result<Server> {
            let mut builder = Server::builder()
                .accept_http1(true)
                .http2_keepalive_interval(Some(Duration::from_secs(20)))
                .http2_keepalive_timeout(Some(Duration::from_secs(20)))
                .max_frame_size(Some(1 << 20));
            if let Some(tls) = self.tls.clone() {
                builder = builder.tls_config(tls).context("configuring TLS")?;
            }
            Ok(builder)
        };
        let plane = match self.plane {
            Some(plane) => {
                let mut server = builder()?;
                let shutdown = stop.clone().cancelled_owned();
                let serving = plane.runtime.spawn(async move {
                    let listener = TcpListener::from_std(plane.listener)?;
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    server
                        .add_routes(plane.routes)
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                        .context("serving runners")
                });
                Some((plane.runtime, serving))
            }
            None => None,
        };
        // serve_with_incoming ignores Server::tcp_nodelay: set it here, or
        // every small message (ResultAck then Assign) may wait ~40 ms for a
        // delayed ACK, which capped dispatch at ~200 tests/s in the bench.
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let serve = builder()?
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(incoming, signal);
        let grace = async move {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::pin!(serve, grace);
        // The runner listener failing is fatal: a coordinator that looks
        // healthy but never gets its runners must not keep running.
        // After a shutdown signal, both servers finish their calls within
        // the same grace; whichever ends first waits for the other.
        let mut plane = plane;
        let mut plane_serving = plane.is_some();
        let mut api_result = None;
        let result = loop {
            tokio::select! {
                r = &mut serve, if api_result.is_none() => {
                    let r = r.context("serving");
                    if r.is_err() || !plane_serving {
                        break r;
                    }
                    api_result = Some(r);
                }
                () = &mut grace => break api_result.unwrap_or(Ok(())),
                r = ended(plane.as_mut().map(|(_, serving)| serving)), if plane_serving => {
                    plane_serving = false;
                    match r {
                        Ok(Ok(())) => {
                            if let Some(api) = api_result.take() {
                                break api;
                            }
                        }
                        Ok(Err(error)) => break Err(error),
                        Err(join) => break Err(join.into()),
                    }
                }
            }
        };
        let mut tasks = self.tasks;
        tasks.shutdown().await;
        if let Some((runtime, serving)) = plane {
            serving.abort();
            drop(runtime);
        }
        result
    }
}

/// Resolves when the runner plane's server ends (never without one).
async fn ended(
    serving: Option<&mut JoinHandle<anyhow::Result<()>>>,
) -> Result<anyhow::Result<()>, tokio::task::JoinError> {
    match serving {
        Some(serving) => serving.await,
        None => std::future::pending().await,
    }
}

fn tls_config(config: &Config) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let cert = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &config.tls_client_ca {
        let ca = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(Some(tls))
}
