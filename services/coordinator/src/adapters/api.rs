//! `TestrunService`: a thin adapter from gRPC to `engine::testruns` and
//! `engine::watch`: decode, call, map the error.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use testrunner_proto::v1::{
    self as pb, get_test_log_request, testrun_service_server::TestrunService,
};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use super::auth::check_bearer;
use crate::domain::ListFilter;
use crate::domain::cases::CaseFilter;
use crate::domain::validate::CreateInput;
use crate::engine::testruns::{TestRef, Testruns};
use crate::engine::watch;
use crate::error::Error;
use crate::wire;

/// The gRPC adapter for users.
#[derive(Debug, Clone)]
pub struct TestrunApi {
    pub service: Testruns,
    /// Required on write RPCs when non-empty.
    pub api_token: Arc<str>,
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl TestrunApi {
    /// A Testrun on the wire with its workspace, set-up, env and set-ups.
    async fn with_workspace(&self, run: &crate::domain::Testrun) -> Result<pb::Testrun, Status> {
        let mut out = wire::testrun(run);
        let (ws, setups) = self.service.content.extras(run.id).await?;
        if let Some(ws) = ws {
            wire::add_workspace(&mut out, &ws, &setups);
        }
        Ok(out)
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        check_bearer(request.metadata(), &self.api_token, "API token").map_err(Status::from)
    }
}

/// The workspace fields of a create request (`None` when none is given).
fn workspace_input(
    workspace: Option<pb::Digest>,
    setup: Option<String>,
    env: std::collections::HashMap<String, String>,
    setup_timeout_seconds: Option<u32>,
) -> Result<Option<crate::domain::workspace::WorkspaceInput>, Status> {
    if workspace.is_none() && setup.is_none() && env.is_empty() {
        return Ok(None);
    }
    let root = match &workspace {
        None => None,
        Some(d) => {
            testrunner_content::check_digest(Some(d), "workspace")
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            Some((d.hash.clone(), d.size_bytes))
        }
    };
    Ok(Some(crate::domain::workspace::WorkspaceInput {
        root,
        setup,
        env: env.into_iter().collect(),
        setup_timeout_seconds,
    }))
}

fn filter(status: Option<i32>, username: Option<String>) -> Result<ListFilter, Status> {
    let status = match status {
        None => None,
        Some(v) => Some(wire::testrun_status_from(v).ok_or_else(|| {
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
            workspace: workspace_input(r.workspace, r.setup, r.env, r.setup_timeout_seconds)?,
            test_memory_bytes: r.test_memory_bytes,
            test_pids: r.test_pids,
            suite: r.suite,
            selector: r.selector.into_iter().collect(),
        };
        let run = self.service.create(input).await?;
        Ok(Response::new(self.with_workspace(&run).await?))
    }

    async fn get_testrun(
        &self,
        request: Request<pb::GetTestrunRequest>,
    ) -> Result<Response<pb::Testrun>, Status> {
        let run = self.service.get(request.into_inner().id).await?;
        Ok(Response::new(self.with_workspace(&run).await?))
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
            testruns: page.testruns.iter().map(wire::testrun).collect(),
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
        Ok(Response::new(wire::testrun(&run)))
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
        // Normally served by `watch_route` (encoded once); this is the same
        // watch for anything that reaches the generated service.
        let shared = watch::watch_testrun(&self.service, &request.into_inner()).await?;
        Ok(Response::new(Box::pin(shared.map(|event| {
            event
                .and_then(watch::WireEvent::into_message)
                .map_err(Status::from)
        }))))
    }

    type WatchTestrunsStream = EventStream<pb::TestrunsEvent>;

    async fn watch_testruns(
        &self,
        request: Request<pb::WatchTestrunsRequest>,
    ) -> Result<Response<Self::WatchTestrunsStream>, Status> {
        let r = request.into_inner();
        let filter = filter(r.status, r.username)?;
        let events = watch::watch_testruns(&self.service, filter);
        Ok(Response::new(Box::pin(
            events.map(|event| event.map_err(Status::from)),
        )))
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

    async fn list_test_cases(
        &self,
        request: Request<pb::ListTestCasesRequest>,
    ) -> Result<Response<pb::ListTestCasesResponse>, Status> {
        let r = request.into_inner();
        let status = match r.status {
            None => None,
            Some(v) => Some(wire::case_status_from(v).ok_or_else(|| {
                Status::from(Error::invalid(
                    "status",
                    format!("{v} is not a case status"),
                ))
            })?),
        };
        let filter = CaseFilter {
            test_id: r.test_id,
            status,
            name_contains: r.name_contains.filter(|n| !n.is_empty()),
        };
        let page = self
            .service
            .list_cases(r.testrun_id, filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListTestCasesResponse {
            cases: page.cases.iter().map(wire::test_case).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    // RerunTestrun answers UNIMPLEMENTED until its engine part lands (the
    // retries branch).
    async fn rerun_testrun(
        &self,
        _request: Request<pb::RerunTestrunRequest>,
    ) -> Result<Response<pb::Testrun>, Status> {
        Err(Status::unimplemented("RerunTestrun is not built yet"))
    }

    async fn get_test_history(
        &self,
        request: Request<pb::GetTestHistoryRequest>,
    ) -> Result<Response<pb::GetTestHistoryResponse>, Status> {
        let r = request.into_inner();
        let history = self
            .service
            .test_history(&r.suite, &r.name, r.limit)
            .await?;
        Ok(Response::new(wire::test_history(&history)))
    }

    async fn list_suites(
        &self,
        request: Request<pb::ListSuitesRequest>,
    ) -> Result<Response<pb::ListSuitesResponse>, Status> {
        let r = request.into_inner();
        let page = self.service.suites(r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListSuitesResponse {
            suites: page.suites.iter().map(wire::suite_summary).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_suite(
        &self,
        request: Request<pb::GetSuiteRequest>,
    ) -> Result<Response<pb::Suite>, Status> {
        let r = request.into_inner();
        let suite = self.service.suite(&r.suite, r.limit).await?;
        Ok(Response::new(wire::suite(&suite)))
    }
}
