//! Checks for the names and addresses that appear in configuration values: host names, domain
//! patterns, `host:port` targets, networks and socket addresses.
//!
//! Each check takes the text as written and returns either the normalised value or a reason that
//! says what was expected; the caller attaches the key path. Pure functions, no I/O and no DNS:
//! a name is judged by its shape alone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// RFC 1035 §2.3.4: at most 253 characters in the text form of a name.
const DOMAIN_LENGTH_MAX: usize = 253;
/// RFC 1035 §2.3.4: at most 63 octets in a label.
const LABEL_LENGTH_MAX: usize = 63;

/// A domain name, returned in lowercase. One label (`localhost`) is allowed.
pub(crate) fn domain(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty; expected a domain name such as \"example.com\"".to_owned());
    }
    if text.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{text:?} is an IP address; expected a domain name such as \"example.com\""
        ));
    }
    if text.ends_with('.') {
        return Err(format!(
            "{text:?} ends with a dot; write it without: {:?}",
            text.trim_end_matches('.')
        ));
    }
    if text.len() > DOMAIN_LENGTH_MAX {
        return Err(format!(
            "{} characters long; a domain name has at most {DOMAIN_LENGTH_MAX}",
            text.len()
        ));
    }
    for label in text.split('.') {
        label_shape(text, label)?;
    }
    Ok(text.to_ascii_lowercase())
}

/// A domain, `*.domain` (every subdomain, not the domain itself), or, when `allow_any` is set,
/// a lone `*` for every domain. Returned in lowercase.
pub(crate) fn domain_pattern(text: &str, allow_any: bool) -> Result<String, String> {
    if text == "*" {
        if !allow_any {
            return Err(
                "\"*\" is not allowed here, as it would accept mail for every domain; \
                        list the domains, or \"*.example.com\" for every subdomain"
                    .to_owned(),
            );
        }
        return Ok("*".to_owned());
    }
    match text.strip_prefix("*.") {
        Some(parent) => domain(parent).map(|parent| format!("*.{parent}")),
        None if text.contains('*') => Err(format!(
            "{text:?} has a \"*\" inside; only a leading \"*.\" is allowed, as in \
             \"*.example.com\""
        )),
        None => domain(text),
    }
}

/// The name in the greeting and `EHLO`: a domain name, or an address literal such as
/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3). Case is kept as written.
pub(crate) fn hostname(text: &str) -> Result<String, String> {
    if let Some(inner) = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        let valid = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => {
                inner[5..].parse::<Ipv6Addr>().is_ok()
            }
            _ => inner.parse::<Ipv4Addr>().is_ok(),
        };
        if !valid {
            return Err(format!(
                "{text:?} is not an address literal; expected \"[192.0.2.1]\" or \
                 \"[IPv6:2001:db8::1]\""
            ));
        }
        return Ok(text.to_owned());
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        let literal = match address {
            IpAddr::V4(v4) => format!("[{v4}]"),
            IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
        };
        return Err(format!(
            "{text:?} is a bare IP address; write it as the address literal {literal:?}"
        ));
    }
    domain(text).map(|_| text.to_owned())
}

/// A DKIM selector (RFC 6376 §3.1): one or more dot-separated labels. Returned in lowercase.
pub(crate) fn selector(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty; expected a selector such as \"s2026\"".to_owned());
    }
    for label in text.split('.') {
        label_shape(text, label)?;
    }
    Ok(text.to_ascii_lowercase())
}

/// A `host:port` delivery target; the host is a domain, an IPv4 address or a bracketed IPv6
/// address. Returned as written.
pub(crate) fn smarthost(text: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected \"host:port\", e.g. \"mail.example.net:25\" or \"[2001:db8::1]:25\"";

    let (host, port) = match text.rsplit_once(':') {
        Some(parts) => parts,
        None => return Err(format!("{text:?} has no port; {EXPECTED}")),
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{text:?} has no valid port (1-65535); {EXPECTED}")),
        Ok(_) => {}
    }

    if let Some(inner) = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        return match inner.parse::<Ipv6Addr>() {
            Ok(_) => Ok(text.to_owned()),
            Err(_) => Err(format!("{host:?} is not an IPv6 address; {EXPECTED}")),
        };
    }
    if host.contains(':') {
        return Err(format!(
            "{text:?} looks like a bare IPv6 address; put it in brackets: \"[{host}]:{port}\""
        ));
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(text.to_owned());
    }
    match domain(host) {
        Ok(_) => Ok(text.to_owned()),
        Err(reason) => Err(format!("host part: {reason}")),
    }
}

/// Whether `domain` matches a validated pattern: `*` (every domain), `example.com` (that domain)
/// or `*.example.com` (its strict subdomains). DNS names compare case-insensitively (RFC 4343);
/// patterns are stored lowercase.
pub fn domain_matches(pattern: &str, domain: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        // Compared as bytes: a UTF-8 domain (SMTPUTF8) need not split at a char boundary.
        Some(parent) => {
            domain.len() > parent.len() + 1 && {
                let (head, tail) = domain.as_bytes().split_at(domain.len() - parent.len());
                tail.eq_ignore_ascii_case(parent.as_bytes()) && head.ends_with(b".")
            }
        }
        None => domain.eq_ignore_ascii_case(pattern),
    }
}

/// A single IP address, such as a source address to bind outbound connections to.
pub(crate) fn ip_address(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not an IP address; expected one such as \"192.0.2.25\" or \
             \"2001:db8::25\""
        )
    })
}

/// A network in CIDR form, or a bare address taken as a single host (/32 or /128).
pub(crate) fn network(text: &str) -> Result<IpNet, String> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    let network: IpNet = text.parse().map_err(|_| {
        format!("{text:?} is not a network; expected CIDR such as \"192.0.2.0/24\" or an address")
    })?;
    if network.trunc() != network {
        return Err(format!(
            "{text:?} has host bits set; did you mean {:?}?",
            network.trunc().to_string()
        ));
    }
    Ok(network)
}

/// A socket address `ip:port` (IPv6 in brackets). With `default_port`, a bare IP is accepted and
/// gets that port.
pub(crate) fn socket_address(text: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Some(port) = default_port {
        let bare = text
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'));
        if let Ok(ip) = bare.unwrap_or(text).parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        return Err(format!(
            "{text:?} is not an address; expected \"192.0.2.1\", \"192.0.2.1:{port}\" or \
             \"[2001:db8::1]:{port}\""
        ));
    }
    if text.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{text:?} has no port; expected \"ip:port\" such as \"0.0.0.0:25\""
        ));
    }
    Err(format!(
        "{text:?} is not an address; expected \"ip:port\" such as \"0.0.0.0:25\" or \"[::]:25\" \
         (names are not resolved here)"
    ))
}

/// One label: letters, digits and inner hyphens, 1 to 63 characters (RFC 1123 §2.1).
fn label_shape(whole: &str, label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(format!(
            "{whole:?} has an empty label (two dots in a row, or a leading dot)"
        ));
    }
    if label.len() > LABEL_LENGTH_MAX {
        return Err(format!(
            "{whole:?} has a label of {} characters; at most {LABEL_LENGTH_MAX} are allowed",
            label.len()
        ));
    }
    if let Some(bad) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        // Only a non-ASCII character suggests an internationalised name written in Unicode.
        let hint = if bad.is_ascii() {
            ""
        } else {
            " (write internationalised names in their xn-- form)"
        };
        return Err(format!(
            "{whole:?} contains {bad:?}; only letters, digits, hyphens and dots are allowed{hint}"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "{whole:?} has a label that starts or ends with a hyphen"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lowercased_and_checked() {
        assert_eq!(domain("Example.COM"), Ok("example.com".to_owned()));
        assert_eq!(domain("localhost"), Ok("localhost".to_owned()));
        assert_eq!(
            domain("xn--bcher-kva.example"),
            Ok("xn--bcher-kva.example".to_owned())
        );
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "-a.com",
            "a-.com",
            "a_b.com",
            "bücher.de",
            "1.2.3.4",
        ] {
            assert!(domain(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(domain(&"a".repeat(64)).is_err());
        assert!(domain(&["a"; 128].join(".")).is_err());
    }

    #[test]
    fn patterns_allow_a_leading_wildcard() {
        assert_eq!(
            domain_pattern("*.Example.com", false),
            Ok("*.example.com".to_owned())
        );
        assert_eq!(domain_pattern("*", true), Ok("*".to_owned()));
        assert!(domain_pattern("*", false).is_err());
        assert!(domain_pattern("a.*.com", true).is_err());
        assert!(domain_pattern("*example.com", true).is_err());
        assert!(domain_pattern("*.", true).is_err());
    }

    #[test]
    fn hostnames_accept_address_literals() {
        assert_eq!(
            hostname("Relay.example.net"),
            Ok("Relay.example.net".to_owned())
        );
        assert_eq!(hostname("[192.0.2.1]"), Ok("[192.0.2.1]".to_owned()));
        assert_eq!(
            hostname("[IPv6:2001:db8::1]"),
            Ok("[IPv6:2001:db8::1]".to_owned())
        );
        assert!(hostname("[2001:db8::1]").is_err());
        assert!(hostname("[300.0.0.1]").is_err());

        let reason = hostname("192.0.2.1").unwrap_err();

        assert!(reason.contains("\"[192.0.2.1]\""), "{reason}");
    }

    #[test]
    fn smarthosts_need_host_and_port() {
        for good in [
            "mail.example.net:25",
            "192.0.2.1:2526",
            "[2001:db8::1]:587",
            "hub:25",
        ] {
            assert_eq!(smarthost(good), Ok(good.to_owned()));
        }
        for bad in [
            "mail.example.net",
            "mail:0",
            "mail:70000",
            "2001:db8::1:25",
            "[x]:25",
            ":25",
        ] {
            assert!(smarthost(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn networks_take_cidr_or_single_addresses() {
        assert_eq!(network("127.0.0.0/8"), Ok("127.0.0.0/8".parse().unwrap()));
        assert_eq!(network("192.0.2.7"), Ok("192.0.2.7/32".parse().unwrap()));
        assert_eq!(network("::1"), Ok("::1/128".parse().unwrap()));
        assert!(network("10.0.0.0/33").is_err());
        assert!(network("localhost").is_err());

        let reason = network("192.168.1.5/24").unwrap_err();

        assert!(reason.contains("192.168.1.0/24"), "{reason}");
    }

    #[test]
    fn socket_addresses_with_and_without_default_port() {
        let v4: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let v6: SocketAddr = "[::1]:53".parse().unwrap();
        assert_eq!(socket_address("127.0.0.1", Some(53)), Ok(v4));
        assert_eq!(socket_address("::1", Some(53)), Ok(v6));
        assert_eq!(socket_address("[::1]", Some(53)), Ok(v6));
        assert_eq!(socket_address("[::1]:53", None), Ok(v6));
        assert!(socket_address("127.0.0.1", None)
            .unwrap_err()
            .contains("no port"));
        assert!(socket_address("localhost:25", None).is_err());
        assert!(socket_address("localhost", Some(53)).is_err());
    }

    #[test]
    fn selectors_are_labels() {
        assert_eq!(selector("S2026.eu"), Ok("s2026.eu".to_owned()));
        assert!(selector("").is_err());
        assert!(selector("s_1").is_err());
    }
}
