//! The store's contract: the operations the coordinator needs, and what
//! each returns. `postgres` and `sqlite` implement it.

use async_trait::async_trait;

use crate::domain::{
    Assignment, ListFilter, LogLine, Millis, NewTestrun, RunnerInfo, Test, TestResult, Testrun,
};
use crate::error::Result;

/// What a cancel did.
#[derive(Debug, Clone)]
pub struct CancelOutcome {
    pub testrun: Testrun,
    /// Assignments still running: their runners must be told to kill them.
    pub running: Vec<RunningAssignment>,
}

/// A test currently held by a runner.
#[derive(Debug, Clone)]
pub struct RunningAssignment {
    pub assignment_id: String,
    pub runner_id: String,
}

/// What storing a batch of log lines did.
#[derive(Debug, Clone)]
pub enum AppendOutcome {
    /// Stored; `lines` are the ones that were new (a resend may overlap).
    Stored { last_seq: i64, lines: Vec<LogLine> },
    /// The assignment is no longer current; nothing was stored.
    Refused,
}

/// What storing a batch of results did.
#[derive(Debug, Clone, Default)]
pub struct FinishOutcome {
    /// Per result, in order: its test, or `None` if the assignment is no
    /// longer current (the result is refused).
    pub tests: Vec<Option<Test>>,
    /// The Testruns the results changed, after them (without tests).
    pub testruns: Vec<Testrun>,
}

/// What registering a runner (a new stream) did.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The stream's epoch: claims for it must present it.
    pub epoch: i64,
    /// Assignments the runner listed that are still its own.
    pub resumed: Vec<Resumed>,
    /// Testruns whose tests the runner held without knowing (their Assign
    /// was lost) and that were handed back.
    pub requeued: Vec<i64>,
}

/// Why running tests are taken back from their runner.
#[derive(Debug, Clone, Copy)]
pub enum TakeBack {
    /// Handed back, or never delivered: requeue without using an attempt.
    Release,
    /// The runner was lost: the attempt counts; past the last, ERROR.
    Lost { max_attempts: i32 },
}

impl TakeBack {
    /// (whether the attempt counts, the most attempts) for the SQL.
    pub(crate) fn attempts(self) -> (bool, i32) {
        match self {
            Self::Release => (false, i32::MAX),
            Self::Lost { max_attempts } => (true, max_attempts),
        }
    }
}

/// An assignment a reconnecting runner may keep.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub assignment_id: String,
    pub testrun_id: i64,
    /// The test's file name (named in live log events).
    pub name: String,
    /// Its Testrun was cancelled while the runner was away.
    pub cancelled: bool,
}

/// Queue figures for metrics.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    pub queued: i64,
    pub running: i64,
    pub oldest_queued_at: Option<Millis>,
    /// The same per Testrun selector (canonical text, '' for none).
    pub by_selector: Vec<SelectorQueue>,
}

/// Tests queued and running of Testruns with one selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorQueue {
    pub selector: String,
    pub queued: i64,
    pub running: i64,
}

/// Storage operations the coordinator needs.
#[async_trait]
pub trait Store:
    super::cases::CaseStore
    + super::content::ContentStore
    + super::fleet::FleetStore
    + super::history::HistoryStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// Stores a Testrun and all its tests in one transaction.
    async fn create_testrun(&self, run: &NewTestrun, now: Millis) -> Result<Testrun>;
    /// One Testrun, with its tests when asked.
    async fn get_testrun(&self, id: i64, with_tests: bool) -> Result<Option<Testrun>>;
    /// Testruns newest first, with `id < before` when given, and the total
    /// number matching the filter.
    async fn list_testruns(
        &self,
        filter: &ListFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<Testrun>, i64)>;
    /// Cancels a CREATED or RUNNING Testrun and its queued tests.
    async fn cancel_testrun(&self, id: i64, now: Millis) -> Result<CancelOutcome>;
    /// Deletes a Testrun with its tests and logs. The caller cancels first.
    async fn delete_testrun(&self, id: i64) -> Result<()>;

    /// Claims up to `n` queued tests for the runner's stream of `epoch`.
    async fn claim_tests(
        &self,
        runner: &RunnerInfo,
        epoch: i64,
        n: i64,
        now: Millis,
    ) -> Result<Claim>;
    /// Puts an assignment back in the queue without using up an attempt.
    async fn release_assignment(&self, assignment_id: &str, now: Millis) -> Result<Option<i64>>;
    /// Stores a batch of log lines of an assignment, ignoring lines it has.
    async fn append_logs(
        &self,
        assignment_id: &str,
        first_seq: i64,
        lines: &[String],
    ) -> Result<AppendOutcome>;
    /// Stores results (assignment id, result) in one transaction.
    async fn finish_tests(
        &self,
        results: &[(String, TestResult)],
        now: Millis,
    ) -> Result<FinishOutcome>;
    /// Records a runner's new stream (a new epoch) and its lease, keeps the
    /// assignments in `resume` that are still its own, and hands back the
    /// ones it holds without knowing.
    async fn register_runner(
        &self,
        runner: &RunnerInfo,
        lease_until: Millis,
        resume: &[String],
        now: Millis,
    ) -> Result<Registration>;
    /// Extends a runner's lease.
    async fn renew_lease(&self, runner_id: &str, lease_until: Millis) -> Result<()>;
    /// Moves tests of runners whose lease ran out back to the queue (attempt
    /// allowing), to ERROR (attempts used up) or to CANCELLED (their Testrun
    /// was cancelled). Returns the ids of the Testruns touched.
    async fn expire_leases(&self, now: Millis, max_attempts: i32) -> Result<Vec<i64>>;

    /// One test by id, with its Testrun id.
    async fn get_test(&self, test_id: i64) -> Result<Option<Test>>;
    /// One test by its Testrun and name.
    async fn find_test(&self, testrun_id: i64, name: &str) -> Result<Option<Test>>;
    /// Lines of a Testrun's log stream after `after` (a run_seq), in order.
    async fn read_run_log(&self, testrun_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>>;
    /// Lines `offset..offset+limit` of one test's log.
    async fn read_test_log(&self, test_id: i64, offset: i64, limit: i64) -> Result<Vec<String>>;
    /// Queue figures for `/metrics`.
    async fn queue_stats(&self) -> Result<QueueStats>;
    /// Brings every open Testrun's `waiting` up to date with the labels of
    /// the runners holding a live lease (on any coordinator); returns the
    /// Testruns whose `waiting` changed, after the change.
    async fn refresh_waiting(&self, now: Millis) -> Result<Vec<Testrun>>;

    /// The Postgres pool, when other coordinators may share the database.
    fn shared_pool(&self) -> Option<sqlx::PgPool> {
        None
    }
}

/// What a claim took: the assignments, and the Testruns they belong to as
/// they are after the claim (status RUNNING, counts updated).
#[derive(Debug, Clone, Default)]
pub struct Claim {
    pub assignments: Vec<Assignment>,
    pub testruns: Vec<Testrun>,
    /// Assignment ids taken from Testruns cancelled meanwhile: the store
    /// cancels them instead of handing them out.
    pub cancelled: Vec<String>,
    /// The stream the claim was for has been replaced (a newer epoch).
    pub stale: bool,
    /// An operator drained the runner (DrainRunner, on any coordinator).
    pub drained: bool,
}

impl Claim {
    pub(crate) fn stale() -> Self {
        Self {
            stale: true,
            ..Self::default()
        }
    }

    pub(crate) fn drained() -> Self {
        Self {
            drained: true,
            ..Self::default()
        }
    }
}
