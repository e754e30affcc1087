//! Operating the runner fleet (RunnerAdminService): which runners are
//! attached, draining one, and the tokens runners attach with; and
//! checking the token a runner presents.

use std::sync::Arc;

use subtle::ConstantTimeEq as _;

use crate::domain::fleet::{self, RunnerToken, RunnerView};
use crate::domain::now_millis;
use crate::error::{Error, Result};
use crate::store::{DrainOutcome, Store};

/// The fleet side of the coordinator.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub store: Arc<dyn Store>,
    /// The shared runner token (`--runner-token`, or one made up at start).
    pub shared_token: Arc<str>,
}

/// How an attach (or a blob read) authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerCredential {
    Shared,
    /// A per-runner token, by name.
    Named(String),
}

impl RunnerCredential {
    /// The token name recorded with the runner ('' for the shared token).
    pub fn token_name(&self) -> &str {
        match self {
            Self::Shared => "",
            Self::Named(name) => name,
        }
    }
}

impl Fleet {
    /// Checks the token a runner presented: the shared one, or an issued
    /// one not revoked. `attach` stamps the token's last use.
    pub async fn authenticate(
        &self,
        presented: Option<&str>,
        attach: bool,
    ) -> Result<RunnerCredential> {
        let Some(token) = presented else {
            return Err(Error::Unauthenticated(
                "missing runner token: send `authorization: Bearer <token>`".into(),
            ));
        };
        // Compared without an early exit, so timing reveals no prefix.
        if bool::from(token.as_bytes().ct_eq(self.shared_token.as_bytes())) {
            return Ok(RunnerCredential::Shared);
        }
        let used_at = attach.then(now_millis);
        match self
            .store
            .runner_token_named(&fleet::hash_secret(token), used_at)
            .await?
        {
            Some(name) => Ok(RunnerCredential::Named(name)),
            None => Err(Error::Unauthenticated(
                "wrong runner token (unknown or revoked)".into(),
            )),
        }
    }

    pub async fn list_runners(&self) -> Result<Vec<RunnerView>> {
        self.store.list_runners(now_millis()).await
    }

    /// Drains an attached runner by id, or by its name when unique.
    pub async fn drain(&self, id: &str) -> Result<RunnerView> {
        if id.is_empty() {
            return Err(Error::invalid("id", "must name a runner (its id or name)"));
        }
        match self.store.drain_runner(id, now_millis()).await? {
            DrainOutcome::Drained(view) => {
                tracing::info!(runner_id = %view.info.id, runner = %view.info.name, "runner drained by an operator");
                Ok(*view)
            }
            DrainOutcome::NotFound => Err(Error::NotFound(format!(
                "id: no attached runner has the id or name {id:?}"
            ))),
            DrainOutcome::Ambiguous(n) => Err(Error::FailedPrecondition(format!(
                "id: {n} attached runners are named {id:?}; drain one by its id"
            ))),
        }
    }

    /// Issues a token; returns it with its secret (shown only now).
    pub async fn create_token(&self, name: &str) -> Result<(RunnerToken, String)> {
        fleet::validate_token_name(name)?;
        let secret = fleet::new_secret();
        let token = self
            .store
            .create_runner_token(name, &fleet::hash_secret(&secret), now_millis())
            .await?
            .ok_or_else(|| {
                Error::AlreadyExists(format!("name: a runner token named {name:?} exists"))
            })?;
        tracing::info!(token = name, "runner token created");
        Ok((token, secret))
    }

    pub async fn list_tokens(&self) -> Result<Vec<RunnerToken>> {
        self.store.list_runner_tokens().await
    }

    /// Revokes a token; streams attached with it end at their next tick.
    pub async fn revoke_token(&self, name: &str) -> Result<RunnerToken> {
        fleet::validate_token_name(name)?;
        let token = self
            .store
            .revoke_runner_token(name, now_millis())
            .await?
            .ok_or_else(|| Error::NotFound(format!("name: no runner token named {name:?}")))?;
        tracing::info!(token = name, "runner token revoked");
        Ok(token)
    }
}
