//! Live state that is not in the store: the hub that fans changes out to
//! watchers, the pre-encoded frames it carries, and the signals that carry
//! changes to other coordinators sharing one Postgres.

pub mod cluster;
pub mod frame;
pub mod hub;
pub mod signal;
