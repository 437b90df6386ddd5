//! Checks that span more than one key: things each value allows on its own but the combination
//! does not, such as a TLS listener without a certificate or a route that can never match.
//!
//! They run on values that already passed their own checks, carrying their index in the file so
//! errors still name `listener[2]` after a bad `listener[1]` was dropped. No I/O.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::error::Errors;
use super::model::*;

/// Duplicate addresses, TLS listeners without `[tls]`, AUTH offered in clear text, and client
/// certificates asked for without TLS or without a CA to check them against.
///
/// `tls_section_written` tells a missing `[tls]` from one that is present but broken, which has
/// been reported already and must not be reported again as missing.
pub(crate) fn listeners(
    errors: &mut Errors,
    listeners: &[(usize, ListenerConfig)],
    tls_section_written: bool,
    tls: Option<&TlsConfig>,
) {
    let mut first_by_address: HashMap<SocketAddr, usize> = HashMap::new();
    for (index, listener) in listeners {
        // Port 0 asks the kernel for a fresh port each time, so repeats do not collide.
        if listener.address.port() != 0 {
            if let Some(first) = first_by_address.insert(listener.address, *index) {
                errors.push(
                    format!("listener[{index}].address"),
                    format!("{} is already used by listener[{first}]", listener.address),
                );
            }
        }

        if listener.tls != TlsMode::None && !tls_section_written {
            errors.push(
                format!("listener[{index}].tls"),
                format!(
                    "is {:?} but there is no [tls] section; add [tls] with certificate and \
                     private_key, or set tls = \"none\"",
                    listener.tls.as_str()
                ),
            );
        }

        if listener.client_certificates {
            if listener.tls == TlsMode::None {
                errors.push(
                    format!("listener[{index}].client_certificates"),
                    "is true on a listener without TLS; set tls = \"starttls\" or \"implicit\"",
                );
            } else if tls.is_some_and(|tls| tls.client_ca.is_none()) {
                errors.push(
                    format!("listener[{index}].client_certificates"),
                    "is true but [tls] has no client_ca to check client certificates against; \
                     add tls.client_ca = \"/etc/postern/tls/clients-ca.pem\"",
                );
            }
        }

        // RFC 4954 §4: credentials must not cross an untrusted network in clear text. Loopback
        // stays allowed for local submission agents and tests.
        if listener.auth != AuthMode::None
            && listener.tls == TlsMode::None
            && !listener.address.ip().is_loopback()
        {
            errors.push(
                format!("listener[{index}].auth"),
                format!(
                    "is {:?} on a listener without TLS, so passwords would cross the network in \
                     clear text; set tls = \"starttls\" or \"implicit\"",
                    listener.auth.as_str()
                ),
            );
        }
    }
}

/// Routes that can never be chosen, because an earlier route already takes their domains.
pub(crate) fn routes(errors: &mut Errors, routes: &[(usize, RouteConfig)]) {
    let mut catch_all: Option<usize> = None;
    let mut first_by_domain: HashMap<&str, usize> = HashMap::new();
    for (index, route) in routes {
        if let Some(earlier) = catch_all {
            errors.push(
                format!("route[{index}]"),
                format!(
                    "can never match: route[{earlier}] has domains = [\"*\"] and the first \
                     matching route wins; move this route above it"
                ),
            );
            continue;
        }
        for (position, domain) in route.domains.iter().enumerate() {
            match first_by_domain.get(domain.as_str()) {
                Some(earlier) => errors.push(
                    format!("route[{index}].domains[{position}]"),
                    format!(
                        "{domain:?} is already routed by route[{earlier}], and the first \
                         matching route wins"
                    ),
                ),
                None => {
                    first_by_domain.insert(domain, *index);
                }
            }
        }
        if route.domains.iter().any(|domain| domain == "*") {
            catch_all = Some(*index);
        }
    }
}

/// Two keys for the same domain and selector would publish one DNS record for two keys.
pub(crate) fn dkim(errors: &mut Errors, keys: &[(usize, DkimConfig)]) {
    let mut first_by_name: HashMap<(&str, &str), usize> = HashMap::new();
    for (index, key) in keys {
        let name = (key.domain.as_str(), key.selector.as_str());
        if let Some(first) = first_by_name.insert(name, *index) {
            errors.push(
                format!("dkim[{index}]"),
                format!(
                    "domain {:?} with selector {:?} is already configured by dkim[{first}]; \
                     give each key its own selector",
                    key.domain, key.selector
                ),
            );
        }
    }
}

/// The admin API cannot share a socket with an SMTP listener.
pub(crate) fn admin(
    errors: &mut Errors,
    admin: Option<&AdminConfig>,
    listeners: &[(usize, ListenerConfig)],
) {
    let Some(admin) = admin else {
        return;
    };
    if admin.address.port() == 0 {
        return;
    }
    if let Some((index, _)) = listeners
        .iter()
        .find(|(_, listener)| listener.address == admin.address)
    {
        errors.push(
            "admin.address",
            format!("{} is already used by listener[{index}]", admin.address),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;

    #[test]
    fn listener_cross_checks() {
        let duplicate = r#"
            [[listener]]
            address = "127.0.0.1:25"
            [[listener]]
            address = "127.0.0.1:0"
            [[listener]]
            address = "127.0.0.1:0"
            [[listener]]
            address = "127.0.0.1:25"
            [[route]]
            domains = ["*"]
            mx = true
        "#;
        assert_eq!(error_keys(duplicate), ["listener[3].address"]);
        assert_eq!(
            only_reason(duplicate),
            "127.0.0.1:25 is already used by listener[0]"
        );

        let without_tls =
            format!("{MINIMAL}\n[[listener]]\naddress = \"[::]:465\"\ntls = \"implicit\"\n");
        assert_eq!(error_keys(&without_tls), ["listener[1].tls"]);
        assert!(only_reason(&without_tls).contains("no [tls] section"));

        let clear_auth =
            format!("{MINIMAL}\n[[listener]]\naddress = \"0.0.0.0:587\"\nauth = \"optional\"\n");
        assert_eq!(error_keys(&clear_auth), ["listener[1].auth"]);
        let loopback_auth =
            format!("{MINIMAL}\n[[listener]]\naddress = \"127.0.0.1:587\"\nauth = \"required\"\n");
        assert!(
            parse_test(&loopback_auth).is_ok(),
            "loopback AUTH without TLS is allowed"
        );

        let admin_clash = format!("{MINIMAL}\n[admin]\naddress = \"127.0.0.1:25\"\n");
        assert_eq!(error_keys(&admin_clash), ["admin.address"]);
    }

    #[test]
    fn broken_tls_section_is_not_also_reported_missing() {
        let text = format!(
            "{MINIMAL}\n[[listener]]\naddress = \"127.0.0.1:587\"\ntls = \"starttls\"\n\
             [tls]\ncertificate = \"/nonexistent/c.pem\"\n"
        );

        assert_eq!(error_keys(&text), ["tls.certificate", "tls.private_key"]);
    }

    #[test]
    fn route_cross_checks() {
        let route =
            |body: &str| format!("[[listener]]\naddress = \"127.0.0.1:25\"\n[[route]]\n{body}\n");

        assert_eq!(error_keys(&route("domains = [\"*\"]")), ["route[0]"]);
        assert!(only_reason(&route("domains = [\"*\"]")).contains("has no target"));
        let both = route("domains = [\"*\"]\nmx = true\nsmarthost = \"hub:25\"");
        assert!(only_reason(&both).contains("has both smarthost and mx"));
        let mx_false = route("domains = [\"*\"]\nmx = false\nsmarthost = \"hub:25\"");
        assert!(parse_test(&mx_false).is_ok());
        let no_port = route("domains = [\"*\"]\nsmarthost = [\"hub:25\", \"hub2\"]");
        assert_eq!(error_keys(&no_port), ["route[0].smarthost[1]"]);
        let empty = route("domains = []\nsmarthost = []");
        assert_eq!(
            error_keys(&empty),
            ["route[0].domains", "route[0].smarthost"]
        );

        let shadowed = format!(
            "{}[[route]]\ndomains = [\"example.com\"]\nmx = true\n\
             [[route]]\ndomains = [\"Example.com\"]\nmx = true\n",
            route("domains = [\"*\"]\nmx = true")
        )
        .replace("domains = [\"*\"]", "domains = [\"example.com\", \"*\"]");
        assert_eq!(error_keys(&shadowed), ["route[1]", "route[2]"]);

        let repeated = format!(
            "{}[[route]]\ndomains = [\"a.example\", \"EXAMPLE.com\"]\nmx = true\n",
            route("domains = [\"example.com\"]\nmx = true")
        );
        assert_eq!(error_keys(&repeated), ["route[1].domains[1]"]);
    }

    #[test]
    fn dkim_pairs_must_be_unique() {
        let key = key_file();
        let entry = format!(
            "[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\nalgorithm = \"rsa-sha256\"\n\
             private_key = {:?}\n",
            key.path().display().to_string()
        );
        let other_selector = entry.replace("\"s1\"", "\"s2\"");
        let text = format!(
            "{MINIMAL}\n{entry}{other_selector}{}",
            entry.replace("example", "EXAMPLE")
        );

        assert_eq!(error_keys(&text), ["dkim[2]"]);
        assert!(only_reason(&text).contains("already configured by dkim[0]"));
    }
}
