//! The validated configuration: plain values the runtime can use without checking them again.
//!
//! Everything here has already passed validation in `sections`, so a `Config` in hand means every
//! limit is in range, every address parsed and every domain well formed. The types carry no
//! behaviour beyond naming themselves and describing the whole for the start-up log; in
//! particular nothing here opens sockets or files.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::units::{format_duration, format_size};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the text came from: a file path or `<embedded default>`.
    pub source: String,
    pub server: ServerConfig,
    /// `[[listener]]`; at least one.
    pub listeners: Vec<ListenerConfig>,
    /// `[tls]`; present whenever a listener uses TLS.
    pub tls: Option<TlsConfig>,
    pub relay: RelayConfig,
    pub smtp: SmtpConfig,
    /// `[[route]]`, in file order; the first whose domains match a recipient wins.
    pub routes: Vec<RouteConfig>,
    /// `[[dkim]]`; no two share a (domain, selector) pair.
    pub dkim: Vec<DkimConfig>,
    pub dns: DnsConfig,
    pub verification: VerificationConfig,
    pub delivery: DeliveryConfig,
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
}

/// `[server]`: the identity and the shape of the process.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name used in the greeting, `EHLO` and `Received:`; a domain name or an address literal.
    pub hostname: String,
    pub spool: PathBuf,
    /// Number of shards; 0 asks the runtime for one per online core.
    pub shards: usize,
    /// How long sessions may finish after SIGTERM before they are told `421`.
    pub shutdown_timeout: Duration,
    pub sessions_per_shard_max: usize,
    /// Disk space the whole spool may reserve; `None` = no limit but `spool_free_min`.
    pub spool_size_max_bytes: Option<u64>,
    /// Free space the spool's file system must keep; below it new mail is refused with 452.
    pub spool_free_min_bytes: u64,
    /// Size of each spool segment file (the unit of preallocation and of reclaim).
    pub spool_segment_bytes: u64,
    /// `spool_keys`: the directory of `<key id>.key` files, if encryption at rest is set up.
    pub spool_key_directory: Option<PathBuf>,
    /// Every key found there, already read and checked; its active key (`spool_key`) seals new
    /// segments. Empty when `spool_keys` is unset: encryption off.
    pub spool_keys: std::sync::Arc<crate::spool::KeyRing>,
}

/// One `[[listener]]`.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    pub tls: TlsMode,
    pub auth: AuthMode,
    /// Ask TLS clients for a certificate issued by `tls.client_ca`; a client that presents a
    /// valid one may relay as if it were in `relay.allow_networks`.
    pub client_certificates: bool,
    /// Length of the kernel accept queue handed to `listen(2)`.
    pub backlog: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    None,
    /// Plain text until the client sends `STARTTLS` (RFC 3207).
    StartTls,
    /// TLS from the first byte (RFC 8314), as on port 465.
    Implicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Optional,
    Required,
}

/// `[tls]`: the certificates every TLS listener serves, and who may present a client
/// certificate. The files are read at start and again on reload (SIGHUP or the admin API).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Served when the client names no host, or one no `[[tls.sni]]` entry covers.
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// CA certificates whose client certificates make a client a trusted relay, on listeners
    /// with `client_certificates = true`.
    pub client_ca: Option<PathBuf>,
    /// Certificates chosen by the name the client asks for (SNI), in file order.
    pub sni: Vec<SniCertificate>,
}

/// `[[tls.sni]]`: a certificate for some host names.
#[derive(Debug, Clone)]
pub struct SniCertificate {
    /// Lowercase names, exact (`mx.example.org`) or one-label wildcards (`*.example.org`).
    pub names: Vec<String>,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// `[relay]`: who may send mail where.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Clients from these networks may relay to any domain.
    pub allow_networks: Vec<ipnet::IpNet>,
    /// Lowercase domains, or `*.domain` for every subdomain, that anyone may send mail to.
    pub local_domains: Vec<String>,
}

/// `[smtp]`: protocol limits and timeouts for inbound sessions.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub message_size_max_bytes: u64,
    pub command_line_max_bytes: usize,
    pub text_line_max_bytes: usize,
    pub recipients_max: usize,
    pub bad_commands_max: u32,
    /// Silence before the `220`; clients that talk first are dropped.
    pub greeting_delay: Duration,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub bare_line_endings: BareLineEndings,
}

/// What to do with a CR or LF that is not part of a CRLF pair inside DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLineEndings {
    /// Refuse the message; this closes the SMTP smuggling hole.
    Reject,
    /// Pass them through; only for known, broken clients behind the relay.
    Accept,
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Lowercase `domain`, `*.domain` or `*` for every domain.
    pub domains: Vec<String>,
    pub target: RouteTarget,
    pub tls: OutboundTls,
    /// CA certificates (PEM) that `tls = "required"` verifies next hops against; the system's
    /// CA bundle when absent.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Simultaneous connections per shard to one destination of this route.
    pub connections_max: usize,
    /// Messages sent over one connection before it is closed and a fresh one opened.
    pub messages_per_connection_max: usize,
    /// Local address outbound connections are bound to; the kernel's choice when absent.
    pub source_address: Option<std::net::IpAddr>,
    /// The port MX hosts are reached on: 25 (RFC 5321 §2.3.5), other values for test beds.
    pub mx_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Relay through these `host:port` entries, tried in order.
    Smarthost(Vec<String>),
    /// Look up the recipient domain's MX records.
    Mx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundTls {
    None,
    /// Use STARTTLS when offered, without certificate verification (RFC 7435), and deliver in
    /// clear text when it is not offered or its handshake fails.
    Opportunistic,
    /// Deliver only over TLS with a certificate that verifies for the host name; defer
    /// otherwise, never falling back to clear text.
    Required,
}

/// One `[[dkim]]` signing key.
#[derive(Debug, Clone)]
pub struct DkimConfig {
    pub domain: String,
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    pub private_key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    Ed25519Sha256,
    RsaSha256,
}

/// `[dns]`: resolvers; an empty list means the system's `resolv.conf`.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub servers: Vec<SocketAddr>,
}

/// `[verification]`: SPF (RFC 7208), DKIM (RFC 6376) and DMARC (RFC 7489) checks of mail from
/// clients that are neither in `allow_networks` nor authenticated.
#[derive(Debug, Clone)]
pub struct VerificationConfig {
    pub enabled: bool,
    /// The name that marks our `Authentication-Results:` fields (RFC 8601 §2.5), lowercase.
    pub authserv_id: String,
    /// Refuse with `550 5.7.1` a message whose DMARC result is `fail` under `p=reject`.
    pub dmarc_reject: bool,
    /// Longest the end-of-data reply waits for the checks; then they read `temperror`.
    pub timeout: Duration,
}

/// `[delivery]`: the retry schedule, loop protection and the outbound SMTP timeouts.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Delays between attempts: the first after the first failure, and so on; the last one
    /// repeats until `max_age`. Each delay is spread by a random jitter of up to a tenth.
    pub retry_schedule: Vec<Duration>,
    /// Age after which a message still deferred fails and is bounced (RFC 5321 §4.5.4.1).
    pub max_age: Duration,
    /// Age at which the sender is told once that delivery is delayed; `None` = never.
    pub delay_warning: Option<Duration>,
    /// More `Received:` headers than this fail the message as a loop (RFC 5321 §6.3).
    pub received_max: usize,
    pub connect_timeout: Duration,
    /// Greeting, EHLO, MAIL, RCPT, RSET and QUIT replies (RFC 5321 §4.5.3.2).
    pub command_timeout: Duration,
    /// The DATA reply and each block of the message (RFC 5321 §4.5.3.2.5, §4.5.3.2.6).
    pub data_timeout: Duration,
    /// The reply after the end of data (RFC 5321 §4.5.3.2.6: 10 minutes).
    pub data_done_timeout: Duration,
    /// How long an unused outbound connection stays open for the next message.
    pub idle_timeout: Duration,
}

/// `[admin]`: the HTTP API and `/metrics`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub address: SocketAddr,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A level (`info`) or a filter directive (`info,postern::spool=debug`).
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The spelling each enum has in the TOML file, so logs and errors quote what operators write.
macro_rules! spelled {
    ($type:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $type {
            /// Every accepted spelling, in documentation order.
            pub const SPELLINGS: &'static [&'static str] = &[$($text),+];

            /// Every value with its spelling, in documentation order.
            pub(crate) const ALL: &'static [($type, &'static str)] =
                &[$((<$type>::$variant, $text)),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(<$type>::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

spelled!(TlsMode { None => "none", StartTls => "starttls", Implicit => "implicit" });
spelled!(AuthMode { None => "none", Optional => "optional", Required => "required" });
spelled!(BareLineEndings { Reject => "reject", Accept => "accept" });
spelled!(OutboundTls { None => "none", Opportunistic => "opportunistic", Required => "required" });
spelled!(DkimAlgorithm { Ed25519Sha256 => "ed25519-sha256", RsaSha256 => "rsa-sha256" });
spelled!(LogFormat { Text => "text", Json => "json" });

impl Config {
    /// The effective configuration on one line, for the info log at start-up.
    ///
    /// Paths to key files are shown; their contents never are.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        self.describe_into(&mut text)
            .expect("writing into a String cannot fail");
        text
    }

    fn describe_into(&self, out: &mut String) -> fmt::Result {
        let server = &self.server;
        let shards = match server.shards {
            0 => "auto".to_owned(),
            count => count.to_string(),
        };
        write!(
            out,
            "source={} server{{hostname={} spool={} shards={shards} sessions_per_shard_max={} \
             shutdown_timeout={} spool_size_max={} spool_free_min={} spool_segment_size={} \
             spool_keys={} spool_key={}}}",
            self.source,
            server.hostname,
            server.spool.display(),
            server.sessions_per_shard_max,
            format_duration(server.shutdown_timeout),
            server
                .spool_size_max_bytes
                .map_or_else(|| "none".to_owned(), format_size),
            format_size(server.spool_free_min_bytes),
            format_size(server.spool_segment_bytes),
            server.spool_key_directory.as_ref().map_or_else(
                || "none".to_owned(),
                |directory| format!("{}({} keys)", directory.display(), server.spool_keys.len())
            ),
            server
                .spool_keys
                .active()
                .map_or("none", crate::spool::SpoolKey::id),
        )?;

        for (index, listener) in self.listeners.iter().enumerate() {
            write!(
                out,
                " listener[{index}]{{address={} tls={} auth={} client_certificates={} backlog={}}}",
                listener.address,
                listener.tls,
                listener.auth,
                listener.client_certificates,
                listener.backlog
            )?;
        }
        if let Some(tls) = &self.tls {
            write!(
                out,
                " tls{{certificate={} private_key={}",
                tls.certificate.display(),
                tls.private_key.display()
            )?;
            if let Some(client_ca) = &tls.client_ca {
                write!(out, " client_ca={}", client_ca.display())?;
            }
            for sni in &tls.sni {
                write!(
                    out,
                    " sni{{names=[{}] certificate={}}}",
                    sni.names.join(","),
                    sni.certificate.display()
                )?;
            }
            out.write_str("}")?;
        }

        write!(
            out,
            " relay{{allow_networks=[{}] local_domains=[{}]}}",
            join(&self.relay.allow_networks),
            self.relay.local_domains.join(",")
        )?;

        let smtp = &self.smtp;
        write!(
            out,
            " smtp{{message_size_max={} command_line_max={} text_line_max={} recipients_max={} \
             bad_commands_max={} greeting_delay={} command_timeout={} data_timeout={} \
             bare_line_endings={}}}",
            format_size(smtp.message_size_max_bytes),
            smtp.command_line_max_bytes,
            smtp.text_line_max_bytes,
            smtp.recipients_max,
            smtp.bad_commands_max,
            format_duration(smtp.greeting_delay),
            format_duration(smtp.command_timeout),
            format_duration(smtp.data_timeout),
            smtp.bare_line_endings,
        )?;

        for (index, route) in self.routes.iter().enumerate() {
            let target = match &route.target {
                RouteTarget::Mx => "mx".to_owned(),
                RouteTarget::Smarthost(hosts) => format!("smarthost=[{}]", hosts.join(",")),
            };
            write!(
                out,
                " route[{index}]{{domains=[{}] {target} tls={} connections_max={} \
                 messages_per_connection_max={} source_address={} mx_port={}}}",
                route.domains.join(","),
                route.tls,
                route.connections_max,
                route.messages_per_connection_max,
                route
                    .source_address
                    .map_or_else(|| "auto".to_owned(), |address| address.to_string()),
                route.mx_port,
            )?;
        }
        for (index, dkim) in self.dkim.iter().enumerate() {
            write!(
                out,
                " dkim[{index}]{{domain={} selector={} algorithm={} private_key={}}}",
                dkim.domain,
                dkim.selector,
                dkim.algorithm,
                dkim.private_key.display()
            )?;
        }

        let dns = if self.dns.servers.is_empty() {
            "system".to_owned()
        } else {
            join(&self.dns.servers)
        };
        write!(out, " dns{{servers=[{dns}]}}")?;

        let verification = &self.verification;
        write!(
            out,
            " verification{{enabled={} authserv_id={} dmarc_reject={} timeout={}}}",
            verification.enabled,
            verification.authserv_id,
            verification.dmarc_reject,
            format_duration(verification.timeout),
        )?;

        let delivery = &self.delivery;
        let schedule: Vec<String> = delivery
            .retry_schedule
            .iter()
            .map(|delay| format_duration(*delay))
            .collect();
        write!(
            out,
            " delivery{{retry_schedule=[{}] max_age={} delay_warning={} received_max={} \
             connect_timeout={} command_timeout={} data_timeout={} data_done_timeout={} \
             idle_timeout={}}}",
            schedule.join(","),
            format_duration(delivery.max_age),
            delivery
                .delay_warning
                .map_or_else(|| "off".to_owned(), format_duration),
            delivery.received_max,
            format_duration(delivery.connect_timeout),
            format_duration(delivery.command_timeout),
            format_duration(delivery.data_timeout),
            format_duration(delivery.data_done_timeout),
            format_duration(delivery.idle_timeout),
        )?;
        if let Some(admin) = &self.admin {
            write!(out, " admin{{address={}}}", admin.address)?;
        }
        write!(
            out,
            " log{{level={} format={}}}",
            self.log.level, self.log.format
        )
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    let mut text = String::new();
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        // Writing into a String cannot fail.
        let _ = write!(text, "{item}");
    }
    text
}
