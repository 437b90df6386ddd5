//! postern: an SMTP edge relay built thread-per-core on io_uring.
//!
//! The crate is laid out along the architecture in DESIGN.md: `config` turns text into validated
//! values, `smtp` is the pure protocol machine, `shard` owns the glommio data plane, `control`
//! owns the tokio control thread, and `cli` wires them into the `postern` binary.

pub mod config;
pub mod smtp;
