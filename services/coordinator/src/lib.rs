//! The TestRunner coordinator: owns Testrun state in a database, hands tests
//! to runners over `RunnerService/Attach`, and serves the public API
//! (gRPC, grpc-web, reflection, health), the console and `/metrics` on one
//! port. `Application` is the whole service; `main.rs` only starts it.

pub mod api;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod convert;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod finisher;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod reaper;
pub mod runner_service;
pub mod runtime;
pub mod service;
pub mod shared_watch;
pub mod store;
pub mod telemetry;
pub mod validate;
pub mod watch;

pub use app::Application;
pub use config::Config;
