//! The scale scenario's baseline: an in-memory "echo" coordinator that
//! speaks the runner protocol with no store, no dispatcher and no API. It
//! hands out `tests` assignments (one at a time per runner, like a 1-slot
//! credit) once it receives SIGUSR1, and acknowledges every result at once.
//! Run as a separate process (`testrunner-bench echo-server`), so it pays
//! the same process and loopback costs as the real coordinator.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::Stream;
use testrunner_proto::v1::{
    Assign, CoordinatorMessage, ResultAck, RunnerMessage, Welcome,
    coordinator_message::Message as Out,
    runner_message::Message as In,
    runner_service_server::{RunnerService, RunnerServiceServer},
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

#[derive(Debug)]
struct Echo {
    next: AtomicUsize,
    tests: usize,
    go: watch::Receiver<bool>,
}

impl Echo {
    /// The next test to hand out, if any is left.
    fn take(&self) -> Option<usize> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.tests).then_some(n)
    }
}

#[derive(Debug, Clone)]
struct EchoApi(Arc<Echo>);

type Tx = mpsc::Sender<Result<CoordinatorMessage, Status>>;

async fn send(tx: &Tx, message: Out) -> bool {
    tx.send(Ok(CoordinatorMessage {
        message: Some(message),
    }))
    .await
    .is_ok()
}

#[tonic::async_trait]
impl RunnerService for EchoApi {
    type AttachStream = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

    async fn attach(
        &self,
        request: Request<Streaming<RunnerMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(session(Arc::clone(&self.0), inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn session(echo: Arc<Echo>, mut inbound: Streaming<RunnerMessage>, tx: Tx) {
    let register = match inbound.message().await {
        Ok(Some(RunnerMessage {
            message: Some(In::Register(r)),
        })) => r,
        _ => return,
    };
    let welcome = Welcome {
        runner_id: register.instance_id,
        heartbeat_interval: Some(testrunner_proto::millis(3000)),
        lease: Some(testrunner_proto::millis(15_000)),
        max_lines_per_batch: 10_000,
        max_line_bytes: 64 << 10,
        max_batch_bytes: 0,
    };
    if !send(&tx, Out::Welcome(welcome)).await {
        return;
    }
    let mut go = echo.go.clone();
    let mut holding = false;
    loop {
        let started = *go.borrow();
        if started
            && !holding
            && let Some(n) = echo.take()
        {
            let assign = Assign {
                assignment_id: uuid::Uuid::new_v4().to_string(),
                testrun_id: 1,
                test_id: n as i64 + 1,
                name: format!("s{n:05}.sh"),
                content: "exit 0\n".into(),
                command: String::new(),
                timeout: Some(testrunner_proto::millis(600_000)),
                attempt: 1,
                ..Assign::default()
            };
            if !send(&tx, Out::Assign(assign)).await {
                return;
            }
            holding = true;
        }
        tokio::select! {
            changed = go.changed(), if !started => {
                if changed.is_err() {
                    return;
                }
            }
            message = inbound.message() => match message {
                Ok(Some(RunnerMessage { message: Some(In::Finished(f)) })) => {
                    holding = false;
                    let ack = ResultAck { assignment_id: f.assignment_id, accepted: true };
                    if !send(&tx, Out::ResultAck(ack)).await {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            },
        }
    }
}

/// Serves until killed; prints `echo listening on http://ADDR` first.
pub async fn serve(listen: SocketAddr, tests: usize) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("echo listening on http://{}", listener.local_addr()?);
    let (go_tx, go) = watch::channel(false);
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    tokio::spawn(async move {
        usr1.recv().await;
        let _ = go_tx.send(true);
        // Keep the sender alive so sessions never see the channel close.
        std::future::pending::<()>().await;
    });
    let api = EchoApi(Arc::new(Echo {
        next: AtomicUsize::new(0),
        tests,
        go,
    }));
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .add_service(RunnerServiceServer::new(api))
        // serve_with_incoming ignores Server::tcp_nodelay: set it on the
        // incoming stream, or small messages wait on Nagle + delayed ACK.
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await?;
    Ok(())
}
