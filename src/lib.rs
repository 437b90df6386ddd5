//! postern: an SMTP edge relay built thread-per-core on io_uring.
//!
//! The crate follows the architecture in DESIGN.md: `config` turns text into validated values,
//! `smtp` is the pure protocol machine (bytes in, replies and events out), `shard` owns the
//! glommio data plane (listeners, sessions, storage), `control` owns the tokio control thread
//! (signals, DNS, AUTH verification), `sasl` the SMTP AUTH users file and
//! its checks, `delivery` the outbound side (bounces so far), `serve` wires them together
//! at start-up, `histogram` counts the durations `/metrics` reports, and `cli` is the `postern`
//! command line.

pub mod cli;
pub mod config;
pub mod control;
pub mod delivery;
pub mod dkim;
pub mod fatal;
pub mod histogram;
pub mod listener;
pub mod logging;
pub mod sasl;
pub mod serve;
pub mod shard;
pub mod smtp;
pub mod spool;
pub mod spool_lock;
pub mod time;
pub mod tls;
pub mod verification;
