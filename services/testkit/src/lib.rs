//! The test kit of this workspace, for the coordinator's, the runner's and
//! the CLI's tests and for the bench harness:
//!
//! - [`TestDb`]: a fresh database per test on either [`Backend`]: a new
//!   Postgres database, dropped again afterwards, or a SQLite file in a
//!   temporary directory;
//! - [`TestApp`]: the coordinator inside the test's process, on port 0;
//! - [`CoordinatorProcess`] and [`Process`]: the real binaries as child
//!   processes, killed on drop, the coordinator's addresses read from the
//!   banner it prints; [`e2e`] starts them with test settings and has the
//!   client calls end-to-end tests make;
//! - [`on_both_stores!`]: one test body run as a `sqlite` and a `postgres`
//!   test;
//! - [`eventually`]: the one way to wait, on observable state (API answers,
//!   `/metrics`), bounded, with a message saying what was awaited.

mod app;
mod db;
pub mod e2e;
pub mod metrics;
mod process;
mod wait;

pub use app::TestApp;
pub use db::{Backend, DEFAULT_POSTGRES, TEST_DB_PREFIX, TestDb, postgres_admin_url};
pub use process::{CoordinatorProcess, LogTail, Process, bin, tail};
pub use wait::{GaveUp, eventually, within};

/// Runs each test body once per store, as the tests `NAME::sqlite` and
/// `NAME::postgres` (on a multi-threaded runtime), with `backend` bound to
/// the store:
///
/// ```ignore
/// on_both_stores! {
///     a_created_testrun_is_stored(backend) {
///         let app = TestApp::spawn(backend).await.unwrap();
///         // ...
///     }
/// }
/// ```
#[macro_export]
macro_rules! on_both_stores {
    ($($(#[$meta:meta])* $name:ident($backend:ident) $body:block)+) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn body($backend: $crate::Backend) $body
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() { body($crate::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() { body($crate::Backend::Postgres).await }
        }
    )+};
}
