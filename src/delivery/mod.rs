//! Outbound delivery: routes, the outbound SMTP client, the retry schedule and bounces.

pub mod bounce;
