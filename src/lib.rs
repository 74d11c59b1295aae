//! Kairos: a Kafka-wire-compatible broker on its own commit log.
//!
//! The crate is the broker as a library; `main.rs` is a thin CLI over
//! [`Broker::start`]. Module map (see ARCHITECTURE.md):
//! - [`protocol`]: TCP, framing, request headers, one handler per Kafka API.
//! - [`log`]: the partition commit log (segments, indexes, recovery).
//! - [`topics`]: the topic registry, topic configs, auto-creation.
//! - [`store`]: the embedded RocksDB for small state.
//! - [`console`]: HTTP: `/healthz`, `/metrics`, later the REST API.

pub mod alloc;
pub mod broker;
pub mod config;
pub mod console;
pub mod delay;
pub mod filter;
pub mod groups;
pub mod log;
pub mod protocol;
pub mod quotas;
pub mod store;
pub mod topics;
pub mod txn;
mod util;

pub use broker::{Broker, BrokerHandle};
pub use config::{BrokerConfig, FsyncPolicy};
