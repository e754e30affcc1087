//! The TestRunner coordinator: owns Testrun state in a database, hands tests
//! to runners over `RunnerService/Attach`, and serves the public API
//! (gRPC, grpc-web, reflection, health), the console and `/metrics` on one
//! port. `Application` is the whole service; `main.rs` only starts it.

// Layers, each importing only those below it (`scripts/check-layers`
// checks it): domain (with `error` and `config`), then infrastructure
// (`store`, `live`, `metrics`, `wire`), the engine, the adapters, and the
// wiring (`app`, `runtime`, `telemetry`).
pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod live;
pub mod metrics;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod wire;

pub use app::Application;
pub use config::Config;
