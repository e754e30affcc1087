//! The TestRunner runner: attaches to a coordinator over one bidirectional
//! stream (`RunnerService/Attach`), runs the tests it is assigned as isolated
//! child processes, streams their output, survives disconnects, and drains
//! on SIGTERM.

pub mod agent;
pub mod config;
pub mod connection;
pub mod exec;
pub mod outbox;
pub mod stats;
pub mod wire;
pub mod workdir;

pub use agent::Agent;
pub use config::Config;
