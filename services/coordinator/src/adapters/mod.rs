//! Adapters: what clients and runners speak, turned into engine calls.
//! Each decodes, calls, and maps the engine's `Error` through `status`, the
//! one place errors become gRPC or HTTP statuses.

pub mod admin;
pub mod api;
pub mod auth;
pub mod content;
pub mod http;
pub mod runner;
pub mod status;
pub mod watch_route;
