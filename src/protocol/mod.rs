//! The Kafka wire layer: TCP listener, framing, request headers, dispatch by
//! API key to one handler file per API (`api/`), the ApiVersions table and the
//! error-code mapping. It knows no files: handlers call `topics` and `log`.
//!
//! Ordering: requests of one connection are executed in arrival order; a
//! handler may return a deferred reply (a Fetch long-poll, an acks=all produce
//! waiting for its fsync, a JoinGroup waiting for the rebalance). Dispatch
//! polls it once at once, so its work is done in order; only its waiting
//! overlaps later requests, and replies are still written in request order.

pub mod api;
pub mod dispatch;
pub mod errors;
pub mod frame;
pub mod server;
pub mod throttle;
pub mod versions;

pub use server::serve;
