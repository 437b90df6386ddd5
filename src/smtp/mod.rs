//! The SMTP protocol machine: bytes in, replies and events out. This module owns the server side of
//! RFC 5321 with the extensions postern offers (PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
//! ENHANCEDSTATUSCODES, CHUNKING, DSN, STARTTLS, AUTH). It guarantees that every byte a client can
//! send is answered by a reply from a fixed table, that memory per session stays within the named
//! `Limits`, and that only `<CRLF>.<CRLF>` ends a DATA body. It never touches sockets, files,
//! clocks, the spool or any runtime: the shard driver feeds it bytes and acts on its events.

pub mod address;
pub mod command;
pub mod data;
pub mod envelope;
pub mod params;
mod received;
pub mod reply;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

pub use command::{parse_command, Command, CommandError, SaslResponse};
pub use data::{BodyFault, DataDecoder};
pub use envelope::{BodyType, Envelope, Notify, Recipient, Ret};
pub use reply::{EnhancedStatus, Reply};
pub use session::{Event, Phase, Refusal, Session, StoreOutcome};

/// The bounds of one session. Each limit names the RFC 5321 section that sets its floor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4 sets 512).
    pub command_line_max_bytes: usize,
    /// Longest line of message text, CRLF included (RFC 5321 §4.5.3.1.6 sets 1000).
    pub text_line_max_bytes: usize,
    /// Recipients per transaction (RFC 5321 §4.5.3.1.8 demands at least 100).
    pub recipients_max: usize,
    /// Largest message body, advertised as the EHLO SIZE value (RFC 1870).
    pub message_size_max_bytes: u64,
    /// Rejected commands before the session is closed with `421 4.7.0`.
    pub bad_commands_max: u32,
    /// Dangerous: accept bare CR and bare LF inside DATA bodies. Off by default because
    /// receivers that disagree on line endings can be made to see two messages where postern
    /// saw one (SMTP smuggling). Even when on, only `<CRLF>.<CRLF>` ends the data.
    pub accept_bare_line_endings: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            command_line_max_bytes: 512,
            text_line_max_bytes: 1000,
            recipients_max: 1000,
            message_size_max_bytes: 50 * 1024 * 1024,
            bad_commands_max: 20,
            accept_bare_line_endings: false,
        }
    }
}

/// What the driver knows about one connection when it starts a session.
#[derive(Clone, Debug)]
pub struct SessionParams {
    /// Our name in the greeting, the EHLO reply and the `Received:` header.
    pub hostname: Arc<str>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub limits: Limits,
    /// The peer may relay to any domain (it is inside `allow_networks`).
    pub relay_allowed: bool,
    /// Lowercase ASCII domains accepted from anyone; `*.example.com` matches strict subdomains.
    pub local_domains: Arc<[String]>,
    /// Advertise and accept STARTTLS.
    pub starttls_available: bool,
    /// The session already runs under TLS (implicit TLS, RFC 8314).
    pub tls_active: bool,
    /// Accept AUTH (RFC 4954); it is advertised and usable only once TLS is active.
    pub auth_available: bool,
    /// MAIL is refused with `530 5.7.0` until AUTH succeeds (`auth = "required"`).
    pub auth_required: bool,
}

/// The reply written on accept when a shard already serves its maximum number of sessions.
/// RFC 5321 §3.1 lets a server answer the connection with 421 instead of a greeting.
pub fn too_many_sessions_reply(hostname: &str) -> Vec<u8> {
    let text = format!("{hostname} too many sessions, try again later");
    let mut out = Vec::with_capacity(text.len() + 16);
    Reply::new(421, Some(EnhancedStatus::new(4, 3, 2)), text).write_to(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rfc_minimums() {
        let limits = Limits::default();
        assert_eq!(limits.command_line_max_bytes, 512);
        assert_eq!(limits.text_line_max_bytes, 1000);
        assert!(limits.recipients_max >= 100);
        assert!(!limits.accept_bare_line_endings);
    }

    #[test]
    fn too_many_sessions_is_one_421_line() {
        assert_eq!(
            too_many_sessions_reply("mx.example.net"),
            b"421 4.3.2 mx.example.net too many sessions, try again later\r\n"
        );
    }
}
