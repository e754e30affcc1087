//! The TestRunner runner: attaches to a coordinator over one bidirectional
//! stream (`RunnerService/Attach`), runs the tests it is assigned as isolated
//! child processes, streams their output, survives disconnects, and drains
//! on SIGTERM.
//!
//! `session` is the only place with network I/O and timers; it feeds what
//! happens to `assignments`, the state machine of every held assignment,
//! and carries out what that returns: `processes` starts and kills tests
//! (`exec` runs one, in a directory from `workdir`), messages go on the
//! stream as `wire` builds them, with `shipping` deciding what of an
//! assignment's `outbox` goes when. `connection` reaches the coordinator,
//! `drain` has the shutdown phases and signals, `stats` serves gauges.
//! `workspace` fetches, caches, prepares and copies the trees that
//! Testruns with a workspace run in.

pub mod assignments;
pub mod config;
pub mod connection;
pub mod drain;
pub mod exec;
pub mod isolation;
pub mod junit;
pub mod outbox;
pub mod processes;
pub mod session;
pub mod shipping;
pub mod stats;
pub mod wire;
pub mod workdir;
pub mod workspace;

pub use config::Config;
pub use session::Agent;
