//! `TestrunService`: a thin adapter from gRPC to `service::Testruns`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use testrunner_proto::v1::{
    self as pb, get_test_log_request, testrun_service_server::TestrunService,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::check_bearer;
use crate::convert;
use crate::domain::ListFilter;
use crate::error::Error;
use crate::service::{TestRef, Testruns};
use crate::validate::CreateInput;
use crate::watch;

/// Events buffered per watcher before it stops reading the hub (and lags).
const WATCH_BUFFER: usize = 64;

/// The gRPC adapter for users.
#[derive(Debug, Clone)]
pub struct TestrunApi {
    pub service: Testruns,
    /// Required on write RPCs when non-empty.
    pub api_token: Arc<str>,
}

pub type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl TestrunApi {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        check_bearer(request.metadata(), &self.api_token, "API token")
    }

    /// Starts a watch; its events are shared (see `shared_watch`).
    pub async fn watch_shared(
        &self,
        r: pb::WatchTestrunRequest,
    ) -> Result<EventStream<watch::WireEvent>, Status> {
        // Unknown ids fail the call itself, not the first message.
        self.service.get(r.id).await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let start = if r.from_end {
            watch::Start::End
        } else {
            watch::Start::After(r.after)
        };
        tokio::spawn(watch::watch_testrun(self.service.clone(), r.id, start, tx));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

fn filter(status: Option<i32>, username: Option<String>) -> Result<ListFilter, Status> {
    let status = match status {
        None => None,
        Some(v) => Some(convert::testrun_status_from(v).ok_or_else(|| {
            Status::from(Error::invalid(
                "status",
                format!("{v} is not a Testrun status"),
            ))
        })?),
    };
    Ok(ListFilter { status, username })
}

#[tonic::async_trait]
impl TestrunService for TestrunApi {
    async fn create_testrun(
        &self,
        request: Request<pb::CreateTestrunRequest>,
    ) -> Result<Response<pb::Testrun>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let input = CreateInput {
            username: r.username,
            tests: r.tests.into_iter().map(|t| (t.name, t.content)).collect(),
            command: r.command,
            timeout_seconds: r.timeout_seconds,
        };
        let run = self.service.create(input).await?;
        Ok(Response::new(convert::testrun(&run)))
    }

    async fn get_testrun(
        &self,
        request: Request<pb::GetTestrunRequest>,
    ) -> Result<Response<pb::Testrun>, Status> {
        let run = self.service.get(request.into_inner().id).await?;
        Ok(Response::new(convert::testrun(&run)))
    }

    async fn list_testruns(
        &self,
        request: Request<pb::ListTestrunsRequest>,
    ) -> Result<Response<pb::ListTestrunsResponse>, Status> {
        let r = request.into_inner();
        let filter = filter(r.status, r.username)?;
        let page = self
            .service
            .list(&filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListTestrunsResponse {
            testruns: page.testruns.iter().map(convert::testrun).collect(),
            next_page_token: page.next_page_token,
            total_size: page.total.max(0) as u64,
        }))
    }

    async fn cancel_testrun(
        &self,
        request: Request<pb::CancelTestrunRequest>,
    ) -> Result<Response<pb::Testrun>, Status> {
        self.authorize(&request)?;
        let run = self.service.cancel(request.into_inner().id).await?;
        Ok(Response::new(convert::testrun(&run)))
    }

    async fn delete_testrun(
        &self,
        request: Request<pb::DeleteTestrunRequest>,
    ) -> Result<Response<pb::DeleteTestrunResponse>, Status> {
        self.authorize(&request)?;
        self.service.delete(request.into_inner().id).await?;
        Ok(Response::new(pb::DeleteTestrunResponse {}))
    }

    type WatchTestrunStream = EventStream<pb::TestrunEvent>;

    async fn watch_testrun(
        &self,
        request: Request<pb::WatchTestrunRequest>,
    ) -> Result<Response<Self::WatchTestrunStream>, Status> {
        // Normally served by `shared_watch` (encoded once); this is the same
        // watch for anything that reaches the generated service.
        let shared = self.watch_shared(request.into_inner()).await?;
        Ok(Response::new(Box::pin(shared.map(|event| {
            event.and_then(watch::WireEvent::into_message)
        }))))
    }

    type WatchTestrunsStream = EventStream<pb::TestrunsEvent>;

    async fn watch_testruns(
        &self,
        request: Request<pb::WatchTestrunsRequest>,
    ) -> Result<Response<Self::WatchTestrunsStream>, Status> {
        let r = request.into_inner();
        let filter = filter(r.status, r.username)?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch::watch_testruns(self.service.clone(), filter, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_test_log(
        &self,
        request: Request<pb::GetTestLogRequest>,
    ) -> Result<Response<pb::GetTestLogResponse>, Status> {
        let r = request.into_inner();
        let which = match r.test {
            Some(get_test_log_request::Test::TestId(id)) => TestRef::Id(id),
            Some(get_test_log_request::Test::TestName(name)) => TestRef::Name(name),
            None => {
                return Err(Error::invalid("test", "give test_id or test_name").into());
            }
        };
        let (lines, test) = self
            .service
            .test_log(r.testrun_id, &which, r.offset, r.limit)
            .await?;
        Ok(Response::new(pb::GetTestLogResponse {
            next_offset: r.offset + lines.len() as u64,
            total: test.log_lines.max(0) as u64,
            lines,
        }))
    }
}
