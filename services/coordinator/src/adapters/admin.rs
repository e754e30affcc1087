//! `RunnerAdminService`: operating the runner fleet (`engine::fleet`),
//! behind the API token like TestrunService's writes: every RPC here
//! either shows the fleet or changes it.

use std::sync::Arc;

use testrunner_proto::v1::{self as pb, runner_admin_service_server::RunnerAdminService};
use tonic::{Request, Response, Status};

use super::auth::check_bearer;
use crate::engine::fleet::Fleet;
use crate::wire;

/// The gRPC adapter for operators.
#[derive(Debug, Clone)]
pub struct RunnerAdminApi {
    pub fleet: Fleet,
    /// Required on every RPC when non-empty.
    pub api_token: Arc<str>,
}

impl RunnerAdminApi {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        check_bearer(request.metadata(), &self.api_token, "API token").map_err(Status::from)
    }
}

#[tonic::async_trait]
impl RunnerAdminService for RunnerAdminApi {
    async fn list_runners(
        &self,
        request: Request<pb::ListRunnersRequest>,
    ) -> Result<Response<pb::ListRunnersResponse>, Status> {
        self.authorize(&request)?;
        let runners = self.fleet.list_runners().await?;
        Ok(Response::new(pb::ListRunnersResponse {
            runners: runners.iter().map(wire::runner_info).collect(),
        }))
    }

    async fn drain_runner(
        &self,
        request: Request<pb::DrainRunnerRequest>,
    ) -> Result<Response<pb::RunnerInfo>, Status> {
        self.authorize(&request)?;
        let view = self.fleet.drain(request.get_ref().id.trim()).await?;
        Ok(Response::new(wire::runner_info(&view)))
    }

    async fn create_runner_token(
        &self,
        request: Request<pb::CreateRunnerTokenRequest>,
    ) -> Result<Response<pb::CreateRunnerTokenResponse>, Status> {
        self.authorize(&request)?;
        let (token, secret) = self.fleet.create_token(&request.get_ref().name).await?;
        Ok(Response::new(pb::CreateRunnerTokenResponse {
            token: Some(wire::runner_token(&token)),
            secret,
        }))
    }

    async fn list_runner_tokens(
        &self,
        request: Request<pb::ListRunnerTokensRequest>,
    ) -> Result<Response<pb::ListRunnerTokensResponse>, Status> {
        self.authorize(&request)?;
        let tokens = self.fleet.list_tokens().await?;
        Ok(Response::new(pb::ListRunnerTokensResponse {
            tokens: tokens.iter().map(wire::runner_token).collect(),
        }))
    }

    async fn revoke_runner_token(
        &self,
        request: Request<pb::RevokeRunnerTokenRequest>,
    ) -> Result<Response<pb::RunnerToken>, Status> {
        self.authorize(&request)?;
        let token = self.fleet.revoke_token(&request.get_ref().name).await?;
        Ok(Response::new(wire::runner_token(&token)))
    }
}
