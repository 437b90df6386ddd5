//! Section builders: one function per TOML section, turning a raw table into validated values.
//!
//! Each builder reads every key it knows, records every problem, and returns the best value it
//! can (the default for a bad optional key, nothing for a bad entry of a list) so that the next
//! builder still runs and the operator sees every error at once. A value built here is only
//! handed to callers when no error at all was recorded. The only I/O is the check that key and
//! certificate files can be opened; nothing is bound, resolved or created.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use toml::{Table, Value};

use super::error::Errors;
use super::model::*;
use super::names;
use super::units;
use super::walk::{
    array_of, boolean, checked, duration_in, found, integer_in, one_of, path, size_in, table,
    tables_of, Fields,
};

pub(crate) const ROOT_KEYS: &[&str] = &[
    "server",
    "listener",
    "tls",
    "relay",
    "smtp",
    "route",
    "dkim",
    "dns",
    "verification",
    "delivery",
    "admin",
    "log",
];
const SERVER_KEYS: &[&str] = &[
    "hostname",
    "spool",
    "shards",
    "shutdown_timeout",
    "sessions_per_shard_max",
    "spool_size_max",
    "spool_free_min",
    "spool_segment_size",
    "spool_keys",
    "spool_key",
];
const LISTENER_KEYS: &[&str] = &["address", "tls", "auth", "client_certificates", "backlog"];
const TLS_KEYS: &[&str] = &["certificate", "private_key", "client_ca", "sni"];
const SNI_KEYS: &[&str] = &["names", "certificate", "private_key"];
const RELAY_KEYS: &[&str] = &["allow_networks", "local_domains"];
const SMTP_KEYS: &[&str] = &[
    "message_size_max",
    "command_line_max",
    "text_line_max",
    "recipients_max",
    "bad_commands_max",
    "greeting_delay",
    "command_timeout",
    "data_timeout",
    "bare_line_endings",
];
const ROUTE_KEYS: &[&str] = &[
    "domains",
    "smarthost",
    "mx",
    "tls",
    "tls_ca_file",
    "connections_max",
    "messages_per_connection_max",
    "source_address",
    "mx_port",
];
const DELIVERY_KEYS: &[&str] = &[
    "retry_schedule",
    "max_age",
    "delay_warning",
    "received_max",
    "connect_timeout",
    "command_timeout",
    "data_timeout",
    "data_done_timeout",
    "idle_timeout",
];
const DKIM_KEYS: &[&str] = &["domain", "selector", "algorithm", "private_key"];
const DNS_KEYS: &[&str] = &["servers"];
const VERIFICATION_KEYS: &[&str] = &["enabled", "authserv_id", "dmarc_reject", "timeout"];
const ADMIN_KEYS: &[&str] = &["address"];
const LOG_KEYS: &[&str] = &["level", "format"];

/// Upper bound on shards; far above any core count we ship on, low enough to catch a typo.
const SHARDS_MAX: i64 = 1024;
/// RFC 5321 §4.5.3.1.7: a server must accept message content of at least 64K octets.
const MESSAGE_SIZE_MAX_FLOOR_BYTES: u64 = 64 << 10;
/// Upper bound on `message_size_max`; larger messages belong on a file transfer service.
const MESSAGE_SIZE_MAX_CEILING_BYTES: u64 = 1 << 30;
/// RFC 5321 §4.5.3.1.4: a command line of 512 octets including CRLF must be accepted.
const COMMAND_LINE_MAX_FLOOR_BYTES: u64 = 512;
/// Commands longer than this are abuse; the read buffer must stay small.
const COMMAND_LINE_MAX_CEILING_BYTES: u64 = 64 << 10;
/// RFC 5321 §4.5.3.1.6: a text line of 1000 octets including CRLF must be accepted.
const TEXT_LINE_MAX_FLOOR_BYTES: u64 = 1000;
/// Upper bound on `text_line_max`, which sizes a per-session buffer.
const TEXT_LINE_MAX_CEILING_BYTES: u64 = 1 << 20;
/// RFC 5321 §4.5.3.1.8: at least 100 recipients per message must be accepted.
const RECIPIENTS_MAX_FLOOR: i64 = 100;
const RECIPIENTS_MAX_CEILING: i64 = 100_000;
/// RFC 5321 §4.5.3.2.1: clients wait 5 minutes for the greeting, so a longer delay loses them.
const GREETING_DELAY_CEILING: Duration = Duration::from_secs(5 * 60);
const TIMEOUT_FLOOR: Duration = Duration::from_secs(1);
const TIMEOUT_CEILING: Duration = Duration::from_secs(60 * 60);

/// A segment must hold the largest record (1 MiB of payload) with room to spare.
const SEGMENT_SIZE_FLOOR_BYTES: u64 = 2 << 20;
const SEGMENT_SIZE_CEILING_BYTES: u64 = 1 << 30;
/// A spool smaller than this cannot hold one segment per shard on any real machine.
const SPOOL_SIZE_FLOOR_BYTES: u64 = 4 << 20;
const SPOOL_SIZE_CEILING_BYTES: u64 = 1 << 50;
/// Outbound connections per shard and destination; more would be abuse of the next hop.
const CONNECTIONS_PER_DESTINATION_MAX: i64 = 1000;
/// Default retry delays in seconds, in the spirit of RFC 5321 §4.5.4.1 (first retry within
/// minutes, then backing off): 1m, 5m, 15m, 30m, 1h, 2h, then every 4h.
const DEFAULT_RETRY_SCHEDULE: &[u64] = &[60, 300, 900, 1800, 3600, 7200, 14_400];
/// Verification waits on DNS at the end of data, while the client waits for its reply; RFC 5321
/// §4.5.3.2.6 gives the client 10 minutes for that reply, and a DNS query that has not answered
/// in a minute will not.
const VERIFICATION_TIMEOUT_CEILING: Duration = Duration::from_secs(60);
const RETRY_DELAY_FLOOR: Duration = Duration::from_secs(1);
const RETRY_DELAY_CEILING: Duration = Duration::from_secs(86_400);

/// Where the system host name comes from when `server.hostname` is omitted; injectable so that
/// tests and the embedded default do not depend on the machine they run on.
pub(crate) type SystemHostname<'a> = &'a dyn Fn() -> Result<String, String>;

pub(crate) fn server(
    errors: &mut Errors,
    value: Option<&Value>,
    system_hostname: SystemHostname<'_>,
) -> ServerConfig {
    let empty = Table::new();
    let fields = section(errors, "server", value, &empty, SERVER_KEYS);

    let hostname = match fields.get("hostname") {
        Some(value) => checked(names::hostname)(errors, &fields.key("hostname"), value),
        None => default_hostname(errors, &fields.key("hostname"), system_hostname),
    };
    let spool_key_directory = fields
        .get("spool_keys")
        .and_then(|value| path(errors, &fields.key("spool_keys"), value));
    let spool_key = fields.get("spool_key").and_then(|value| {
        checked(|text| crate::spool::check_key_id(text).map(|()| text.to_owned()))(
            errors,
            &fields.key("spool_key"),
            value,
        )
    });
    let spool_keys = super::spool_keys::key_ring(
        spool_key_directory.as_deref(),
        spool_key.as_deref(),
        (&fields.key("spool_keys"), &fields.key("spool_key")),
        &mut |key, reason| errors.push(key, reason),
    );
    ServerConfig {
        hostname: hostname.unwrap_or_default(),
        spool: fields.optional(errors, "spool", "./postern-spool".into(), path),
        shards: fields.optional(errors, "shards", 0, integer_in(0, SHARDS_MAX)),
        shutdown_timeout: fields.optional(
            errors,
            "shutdown_timeout",
            Duration::from_secs(30),
            duration_in(Duration::ZERO, TIMEOUT_CEILING),
        ),
        sessions_per_shard_max: fields.optional(
            errors,
            "sessions_per_shard_max",
            10_000,
            integer_in(1, 1_000_000),
        ),
        spool_size_max_bytes: fields.get("spool_size_max").and_then(|value| {
            size_in(SPOOL_SIZE_FLOOR_BYTES, SPOOL_SIZE_CEILING_BYTES)(
                errors,
                &fields.key("spool_size_max"),
                value,
            )
        }),
        spool_free_min_bytes: fields.optional(
            errors,
            "spool_free_min",
            256 << 20,
            size_in(0, SPOOL_SIZE_CEILING_BYTES),
        ),
        spool_segment_bytes: fields.optional(
            errors,
            "spool_segment_size",
            64 << 20,
            size_in(SEGMENT_SIZE_FLOOR_BYTES, SEGMENT_SIZE_CEILING_BYTES),
        ),
        spool_key_directory,
        spool_keys: std::sync::Arc::new(spool_keys),
    }
}

/// Every `[[listener]]` that is valid on its own, with its index in the file.
pub(crate) fn listeners(
    errors: &mut Errors,
    value: Option<&Value>,
) -> Vec<(usize, ListenerConfig)> {
    let entries = value.map_or_else(Vec::new, |value| tables_of(errors, "listener", value));
    if is_absent_or_empty(value) {
        errors.push(
            "listener",
            "missing; expected at least one [[listener]] with an address such as \"0.0.0.0:25\"",
        );
    }

    let mut listeners = Vec::with_capacity(entries.len());
    for (index, (path, table)) in entries.into_iter().enumerate() {
        let fields = Fields::new(errors, path, table, LISTENER_KEYS);
        let address = fields.required(
            errors,
            "address",
            "an address such as \"0.0.0.0:25\"",
            checked(|text| names::socket_address(text, None)),
        );
        let tls = fields.optional(errors, "tls", TlsMode::None, one_of(TlsMode::ALL));
        let auth = fields.optional(errors, "auth", AuthMode::None, one_of(AuthMode::ALL));
        let client_certificates = fields.optional(errors, "client_certificates", false, boolean);
        let backlog = fields.optional(errors, "backlog", 4096, integer_in(1, 65_535));
        if let Some(address) = address {
            listeners.push((
                index,
                ListenerConfig {
                    address,
                    tls,
                    auth,
                    client_certificates,
                    backlog,
                },
            ));
        }
    }
    listeners
}

pub(crate) fn tls(errors: &mut Errors, value: Option<&Value>) -> Option<TlsConfig> {
    let table = table(errors, "tls", value?)?;
    let fields = Fields::new(errors, "tls", table, TLS_KEYS);
    let certificate = fields.required(errors, "certificate", "a PEM file path", readable_file);
    let private_key = fields.required(errors, "private_key", "a PEM file path", readable_file);
    let client_ca = fields.optional(errors, "client_ca", None, |errors, key, value| {
        readable_file(errors, key, value).map(Some)
    });
    let sni = fields
        .get("sni")
        .map_or_else(Vec::new, |value| sni_certificates(errors, value));
    Some(TlsConfig {
        certificate: certificate?,
        private_key: private_key?,
        client_ca,
        sni,
    })
}

fn sni_certificates(errors: &mut Errors, value: &Value) -> Vec<SniCertificate> {
    let mut certificates = Vec::new();
    for (path, table) in tables_of(errors, "tls.sni", value) {
        let fields = Fields::new(errors, path, table, SNI_KEYS);
        let names = fields.required(
            errors,
            "names",
            "host names such as [\"mx.example.org\", \"*.example.org\"]",
            array_of(|text| names::domain_pattern(text, false)),
        );
        let certificate = fields.required(errors, "certificate", "a PEM file path", readable_file);
        let private_key = fields.required(errors, "private_key", "a PEM file path", readable_file);
        if let Some(names) = &names {
            if names.is_empty() {
                errors.push(
                    fields.key("names"),
                    "empty; list the host names this certificate is for",
                );
            }
        }
        if let (Some(names), Some(certificate), Some(private_key)) =
            (names, certificate, private_key)
        {
            certificates.push(SniCertificate {
                names,
                certificate,
                private_key,
            });
        }
    }
    certificates
}

pub(crate) fn relay(errors: &mut Errors, value: Option<&Value>) -> RelayConfig {
    let empty = Table::new();
    let fields = section(errors, "relay", value, &empty, RELAY_KEYS);
    let loopback = vec![
        IpNet::new_assert(Ipv4Addr::new(127, 0, 0, 0).into(), 8),
        IpNet::new_assert(Ipv6Addr::LOCALHOST.into(), 128),
    ];
    RelayConfig {
        allow_networks: fields.optional(
            errors,
            "allow_networks",
            loopback,
            array_of(names::network),
        ),
        local_domains: fields.optional(
            errors,
            "local_domains",
            Vec::new(),
            array_of(|text| names::domain_pattern(text, false)),
        ),
    }
}

pub(crate) fn smtp(errors: &mut Errors, value: Option<&Value>) -> SmtpConfig {
    let empty = Table::new();
    let fields = section(errors, "smtp", value, &empty, SMTP_KEYS);
    SmtpConfig {
        message_size_max_bytes: fields.optional(
            errors,
            "message_size_max",
            50 << 20,
            size_in(MESSAGE_SIZE_MAX_FLOOR_BYTES, MESSAGE_SIZE_MAX_CEILING_BYTES),
        ),
        command_line_max_bytes: fields.optional(
            errors,
            "command_line_max",
            512,
            size_in(COMMAND_LINE_MAX_FLOOR_BYTES, COMMAND_LINE_MAX_CEILING_BYTES),
        ),
        text_line_max_bytes: fields.optional(
            errors,
            "text_line_max",
            1000,
            size_in(TEXT_LINE_MAX_FLOOR_BYTES, TEXT_LINE_MAX_CEILING_BYTES),
        ),
        recipients_max: fields.optional(
            errors,
            "recipients_max",
            1000,
            integer_in(RECIPIENTS_MAX_FLOOR, RECIPIENTS_MAX_CEILING),
        ),
        bad_commands_max: fields.optional(errors, "bad_commands_max", 20, integer_in(1, 1000)),
        greeting_delay: fields.optional(
            errors,
            "greeting_delay",
            Duration::ZERO,
            duration_in(Duration::ZERO, GREETING_DELAY_CEILING),
        ),
        command_timeout: fields.optional(
            errors,
            "command_timeout",
            Duration::from_secs(5 * 60),
            duration_in(TIMEOUT_FLOOR, TIMEOUT_CEILING),
        ),
        data_timeout: fields.optional(
            errors,
            "data_timeout",
            Duration::from_secs(3 * 60),
            duration_in(TIMEOUT_FLOOR, TIMEOUT_CEILING),
        ),
        bare_line_endings: fields.optional(
            errors,
            "bare_line_endings",
            BareLineEndings::Reject,
            one_of(BareLineEndings::ALL),
        ),
    }
}

/// Every `[[route]]` that is valid on its own, with its index in the file.
pub(crate) fn routes(errors: &mut Errors, value: Option<&Value>) -> Vec<(usize, RouteConfig)> {
    let entries = value.map_or_else(Vec::new, |value| tables_of(errors, "route", value));
    if is_absent_or_empty(value) {
        errors.push(
            "route",
            "missing; expected at least one [[route]], e.g. domains = [\"*\"] with mx = true",
        );
    }

    let mut routes = Vec::with_capacity(entries.len());
    for (index, (path, table)) in entries.into_iter().enumerate() {
        let fields = Fields::new(errors, &path, table, ROUTE_KEYS);
        let domains = fields.required(
            errors,
            "domains",
            "a list of domains such as [\"example.com\", \"*.example.com\"] or [\"*\"]",
            array_of(|text| names::domain_pattern(text, true)),
        );
        if table
            .get("domains")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            errors.push(
                fields.key("domains"),
                "empty; list at least one domain, or \"*\"",
            );
        }
        let target = route_target(errors, &fields, &path);
        let tls = fields.optional(
            errors,
            "tls",
            OutboundTls::Opportunistic,
            one_of(OutboundTls::ALL),
        );
        let tls_ca_file = fields.optional(errors, "tls_ca_file", None, |errors, key, value| {
            readable_file(errors, key, value).map(Some)
        });
        let connections_max = fields.optional(
            errors,
            "connections_max",
            10,
            integer_in(1, CONNECTIONS_PER_DESTINATION_MAX),
        );
        let messages_per_connection_max = fields.optional(
            errors,
            "messages_per_connection_max",
            100,
            integer_in(1, 100_000),
        );
        let source_address = fields.get("source_address").and_then(|value| {
            checked(names::ip_address)(errors, &fields.key("source_address"), value)
        });
        let mx_port = fields.optional(errors, "mx_port", 25, integer_in(1, 65_535));
        if let (Some(domains), Some(target)) = (domains, target) {
            routes.push((
                index,
                RouteConfig {
                    domains,
                    target,
                    tls,
                    tls_ca_file,
                    connections_max,
                    messages_per_connection_max,
                    source_address,
                    mx_port,
                },
            ));
        }
    }
    routes
}

/// Every `[[dkim]]` that is valid on its own, with its index in the file.
pub(crate) fn dkim(errors: &mut Errors, value: Option<&Value>) -> Vec<(usize, DkimConfig)> {
    let Some(value) = value else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for (index, (path, table)) in tables_of(errors, "dkim", value).into_iter().enumerate() {
        let fields = Fields::new(errors, path, table, DKIM_KEYS);
        let domain = fields.required(errors, "domain", "a domain name", checked(names::domain));
        let selector = fields.required(
            errors,
            "selector",
            "a selector such as \"s2026\"",
            checked(names::selector),
        );
        let algorithm = fields.required(
            errors,
            "algorithm",
            "\"ed25519-sha256\" or \"rsa-sha256\"",
            one_of(DkimAlgorithm::ALL),
        );
        let private_key = fields.required(errors, "private_key", "a PEM file path", readable_file);
        if let (Some(domain), Some(selector), Some(algorithm), Some(private_key)) =
            (domain, selector, algorithm, private_key)
        {
            keys.push((
                index,
                DkimConfig {
                    domain,
                    selector,
                    algorithm,
                    private_key,
                },
            ));
        }
    }
    keys
}

pub(crate) fn dns(errors: &mut Errors, value: Option<&Value>) -> DnsConfig {
    let empty = Table::new();
    let fields = section(errors, "dns", value, &empty, DNS_KEYS);
    DnsConfig {
        servers: fields.optional(
            errors,
            "servers",
            Vec::new(),
            array_of(|text| names::socket_address(text, Some(53))),
        ),
    }
}

/// `[verification]`: SPF, DKIM and DMARC checks of mail from untrusted clients. The authserv-id
/// defaults to the server's host name (RFC 8601 §2.5 asks for a name the operator controls).
pub(crate) fn verification(
    errors: &mut Errors,
    value: Option<&Value>,
    server_hostname: &str,
) -> VerificationConfig {
    let empty = Table::new();
    let fields = section(errors, "verification", value, &empty, VERIFICATION_KEYS);
    VerificationConfig {
        enabled: fields.optional(errors, "enabled", true, boolean),
        authserv_id: fields.optional(
            errors,
            "authserv_id",
            server_hostname.to_ascii_lowercase(),
            checked(names::domain),
        ),
        dmarc_reject: fields.optional(errors, "dmarc_reject", false, boolean),
        timeout: fields.optional(
            errors,
            "timeout",
            Duration::from_secs(10),
            duration_in(TIMEOUT_FLOOR, VERIFICATION_TIMEOUT_CEILING),
        ),
    }
}

pub(crate) fn delivery(errors: &mut Errors, value: Option<&Value>) -> DeliveryConfig {
    let empty = Table::new();
    let fields = section(errors, "delivery", value, &empty, DELIVERY_KEYS);
    let retry_schedule = fields.optional(
        errors,
        "retry_schedule",
        DEFAULT_RETRY_SCHEDULE
            .iter()
            .map(|seconds| Duration::from_secs(*seconds))
            .collect(),
        array_of(|text| {
            let delay = units::parse_duration(text).map_err(|error| error.to_string())?;
            if (RETRY_DELAY_FLOOR..=RETRY_DELAY_CEILING).contains(&delay) {
                Ok(delay)
            } else {
                Err(format!(
                    "{} is out of range; expected from {} to {}",
                    units::format_duration(delay),
                    units::format_duration(RETRY_DELAY_FLOOR),
                    units::format_duration(RETRY_DELAY_CEILING)
                ))
            }
        }),
    );
    if retry_schedule.is_empty() && fields.get("retry_schedule").is_some() {
        errors.push(
            fields.key("retry_schedule"),
            "empty; list at least one delay, e.g. [\"5m\", \"30m\", \"2h\"]",
        );
    }
    let timeout = |name: &str, default_seconds: u64, errors: &mut Errors| {
        fields.optional(
            errors,
            name,
            Duration::from_secs(default_seconds),
            duration_in(TIMEOUT_FLOOR, TIMEOUT_CEILING),
        )
    };
    DeliveryConfig {
        max_age: fields.optional(
            errors,
            "max_age",
            Duration::from_secs(5 * 86_400),
            duration_in(Duration::from_secs(1), Duration::from_secs(60 * 86_400)),
        ),
        // "0s", the default, turns the warning off.
        delay_warning: Some(fields.optional(
            errors,
            "delay_warning",
            Duration::ZERO,
            duration_in(Duration::ZERO, Duration::from_secs(60 * 86_400)),
        ))
        .filter(|delay| !delay.is_zero()),
        received_max: fields.optional(errors, "received_max", 100, integer_in(10, 1000)),
        connect_timeout: timeout("connect_timeout", 30, errors),
        command_timeout: timeout("command_timeout", 5 * 60, errors),
        data_timeout: timeout("data_timeout", 3 * 60, errors),
        data_done_timeout: timeout("data_done_timeout", 10 * 60, errors),
        idle_timeout: timeout("idle_timeout", 5, errors),
        retry_schedule,
    }
}

pub(crate) fn admin(errors: &mut Errors, value: Option<&Value>) -> Option<AdminConfig> {
    let table = table(errors, "admin", value?)?;
    let fields = Fields::new(errors, "admin", table, ADMIN_KEYS);
    let address = fields.required(
        errors,
        "address",
        "an address such as \"127.0.0.1:8025\"",
        checked(|text| names::socket_address(text, None)),
    )?;
    Some(AdminConfig { address })
}

pub(crate) fn log(errors: &mut Errors, value: Option<&Value>) -> LogConfig {
    let empty = Table::new();
    let fields = section(errors, "log", value, &empty, LOG_KEYS);
    LogConfig {
        level: fields.optional(errors, "level", "info".to_owned(), checked(log_level)),
        format: fields.optional(errors, "format", LogFormat::Text, one_of(LogFormat::ALL)),
    }
}

fn is_absent_or_empty(value: Option<&Value>) -> bool {
    value.is_none_or(|value| value.as_array().is_some_and(Vec::is_empty))
}

/// The fields of an optional section; an absent or mistyped section reads as empty, so every
/// key takes its default (a mistyped one has already been reported).
fn section<'t>(
    errors: &mut Errors,
    name: &str,
    value: Option<&'t Value>,
    empty: &'t Table,
    known: &'static [&'static str],
) -> Fields<'t> {
    let table = value
        .and_then(|value| table(errors, name, value))
        .unwrap_or(empty);
    Fields::new(errors, name, table, known)
}

fn default_hostname(
    errors: &mut Errors,
    key: &str,
    system_hostname: SystemHostname<'_>,
) -> Option<String> {
    let outcome = system_hostname().and_then(|name| {
        names::hostname(&name).map_err(|reason| format!("the system host name {reason}"))
    });
    match outcome {
        Ok(name) => Some(name),
        Err(reason) => {
            errors.push(key, format!("omitted, and {reason}; set server.hostname"));
            None
        }
    }
}

/// `smarthost` or `mx = true`, exactly one.
fn route_target(errors: &mut Errors, fields: &Fields<'_>, path: &str) -> Option<RouteTarget> {
    let mx = match fields.get("mx") {
        Some(value) => boolean(errors, &fields.key("mx"), value),
        None => Some(false),
    };
    let smarthost = fields
        .get("smarthost")
        .map(|value| smarthosts(errors, &fields.key("smarthost"), value));

    match (smarthost, mx) {
        (Some(Some(hosts)), Some(false)) => Some(RouteTarget::Smarthost(hosts)),
        (None, Some(true)) => Some(RouteTarget::Mx),
        (Some(_), Some(true)) => {
            errors.push(
                path,
                "has both smarthost and mx = true; keep exactly one of them",
            );
            None
        }
        (None, Some(false)) => {
            errors.push(
                path,
                "has no target; set smarthost = \"host:port\" or mx = true",
            );
            None
        }
        // The smarthost or mx value itself was bad, and that is already reported.
        (Some(None), _) | (_, None) => None,
    }
}

/// `"host:port"` or a non-empty list of them.
fn smarthosts(errors: &mut Errors, key: &str, value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(_) => checked(names::smarthost)(errors, key, value).map(|host| vec![host]),
        Value::Array(entries) if entries.is_empty() => {
            errors.push(key, "empty; expected \"host:port\" or a list of them");
            None
        }
        // A bad entry is reported by `array_of`; the others are kept only to carry on checking.
        Value::Array(_) => array_of(names::smarthost)(errors, key, value),
        other => {
            errors.push(
                key,
                format!(
                    "expected \"host:port\" or a list of them, found {}",
                    found(other)
                ),
            );
            None
        }
    }
}

/// A level or an EnvFilter-style directive list; the shape is checked here and the meaning by
/// the logging set-up, which owns the filter syntax.
fn log_level(text: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_:=,".contains(c);
    if text.is_empty() || !text.chars().all(allowed) {
        return Err(format!(
            "{text:?} is not a log level; expected trace, debug, info, warn or error, or a \
             directive such as \"info,postern::spool=debug\" (lowercase letters, digits, _ : = ,)"
        ));
    }
    Ok(text.to_owned())
}

/// A path to a file this process can open for reading now; the error names the path.
fn readable_file(errors: &mut Errors, key: &str, value: &Value) -> Option<std::path::PathBuf> {
    let file_path = path(errors, key, value)?;
    match check_readable(&file_path) {
        Ok(()) => Some(file_path),
        Err(reason) => {
            errors.push(key, reason);
            None
        }
    }
}

fn check_readable(file_path: &Path) -> Result<(), String> {
    let shown = file_path.display();
    let file = File::open(file_path).map_err(|error| format!("cannot open {shown}: {error}"))?;
    let metadata = file
        .metadata()
        .map_err(|error| format!("cannot inspect {shown}: {error}"))?;
    if !metadata.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    Ok(())
}
