//! Outbound delivery: routes, the outbound SMTP client, the retry schedule and bounces.
//!
//! Everything here is executor-free: the shard (`shard::outbound`) owns the sockets, the timers
//! and the spool records, and drives these pieces. Route choice and the retry schedule are pure
//! functions of the configuration; the client runs over any byte stream and timer it is given;
//! bounces are rendered from the original message and the outcomes.

pub mod bounce;
pub mod client;
pub mod loops;
pub mod reply;
pub mod route;
pub mod schedule;
