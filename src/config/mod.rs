//! Configuration: TOML text in, validated values out.
//!
//! Parsing runs in two stages. The `toml` crate turns text into a plain table (a syntax error
//! stops here, as one error with its line and column); then the section builders walk that table
//! by hand and collect every problem they find, whether a wrong type, an unknown key, a value out
//! of range, a missing key or two keys that contradict each other, so that one run of
//! `postern check-config` lists them all. A [`Config`] is only returned when nothing was wrong.
//!
//! This module knows nothing of the runtime: it opens no sockets, creates no directories and
//! resolves no names. Its only I/O is reading the file it is given, asking for the system host
//! name, and checking that the key files it names can be opened.

mod cross;
mod error;
mod model;
mod names;
mod sections;
pub mod spool_keys;
pub mod units;
mod walk;

#[cfg(test)]
mod testing;

use std::path::Path;

use toml::Table;

pub use error::{ConfigError, ConfigErrors, EXIT_INVALID_CONFIG};
pub use model::*;
pub use names::domain_matches;
pub use units::{parse_duration, parse_size_bytes};

pub(crate) use error::Errors;
use sections::SystemHostname;
use walk::Fields;

/// The configuration used when no file is given: loopback listener on port 2525, a spool under
/// the working directory, relaying for loopback clients, delivery by MX.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The name errors and logs give to [`DEFAULT_TOML`].
pub const EMBEDDED_SOURCE: &str = "<embedded default>";

/// Parses and validates `text`; `source` names the file in every error.
pub fn parse(text: &str, source: &str) -> Result<Config, ConfigErrors> {
    parse_with_hostname(text, source, &system_hostname)
}

/// Reads and parses the file at `path`. A file that cannot be read is a single error.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let source = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &source),
        Err(error) => {
            let mut errors = Errors::new(&source);
            errors.push(
                "(file)",
                format!("cannot read the configuration file: {error}"),
            );
            Err(errors.into_result().expect_err("one error was just pushed"))
        }
    }
}

/// The parsed [`DEFAULT_TOML`].
///
/// Without a file there is nobody to blame for an unusable system host name, so this falls back
/// to `localhost` rather than refusing to start the trial set-up.
pub fn embedded_default() -> Config {
    let hostname = || {
        let usable = system_hostname()
            .ok()
            .filter(|name| names::hostname(name).is_ok());
        Ok(usable.unwrap_or_else(|| "localhost".to_owned()))
    };
    parse_with_hostname(DEFAULT_TOML, EMBEDDED_SOURCE, &hostname)
        .expect("DEFAULT_TOML is valid (test embedded_default_parses) and the host name is usable")
}

/// [`parse`] with the source of the system host name supplied by the caller.
fn parse_with_hostname(
    text: &str,
    source: &str,
    system_hostname: SystemHostname<'_>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Errors::new(source);
    let root: Table = match text.parse() {
        Ok(root) => root,
        Err(error) => {
            errors.push(syntax_place(text, &error), one_line(error.message()));
            return Err(errors.into_result().expect_err("one error was just pushed"));
        }
    };
    let fields = Fields::new(&mut errors, "", &root, sections::ROOT_KEYS);

    let server = sections::server(&mut errors, fields.get("server"), system_hostname);
    let listeners = sections::listeners(&mut errors, fields.get("listener"));
    let tls = sections::tls(&mut errors, fields.get("tls"));
    let relay = sections::relay(&mut errors, fields.get("relay"));
    let smtp = sections::smtp(&mut errors, fields.get("smtp"));
    let routes = sections::routes(&mut errors, fields.get("route"));
    let dkim = sections::dkim(&mut errors, fields.get("dkim"));
    let dns = sections::dns(&mut errors, fields.get("dns"));
    let verification =
        sections::verification(&mut errors, fields.get("verification"), &server.hostname);
    let delivery = sections::delivery(&mut errors, fields.get("delivery"));
    let admin = sections::admin(&mut errors, fields.get("admin"));
    let log = sections::log(&mut errors, fields.get("log"));
    let auth = sections::auth(&mut errors, fields.get("auth"));

    cross::listeners(
        &mut errors,
        &listeners,
        fields.get("tls").is_some(),
        tls.as_ref(),
    );
    cross::auth(&mut errors, &listeners, &auth, fields.get("auth").is_some());
    cross::routes(&mut errors, &routes);
    cross::dkim(&mut errors, &dkim);
    cross::admin(&mut errors, admin.as_ref(), &listeners);
    errors.into_result()?;

    Ok(Config {
        source: source.to_owned(),
        server,
        listeners: without_index(listeners),
        tls,
        relay,
        smtp,
        routes: without_index(routes),
        dkim: without_index(dkim),
        dns,
        verification,
        delivery,
        admin,
        log,
        auth,
    })
}

fn system_hostname() -> Result<String, String> {
    let name = nix::unistd::gethostname()
        .map_err(|error| format!("the system host name cannot be read ({error})"))?;
    name.into_string()
        .map_err(|name| format!("the system host name {name:?} is not valid UTF-8"))
}

/// `line L, column C` (both from 1) for a TOML syntax error, standing in for a key path.
fn syntax_place(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else {
        return "(syntax)".to_owned();
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}")
}

/// Keeps each error on one line of output, whatever the TOML parser put in its message.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    format!("TOML syntax error: {}", lines.join("; "))
}

fn without_index<T>(entries: Vec<(usize, T)>) -> Vec<T> {
    entries.into_iter().map(|(_, entry)| entry).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Duration;

    use super::testing::*;
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let config = parse_test(DEFAULT_TOML).expect("DEFAULT_TOML is valid");

        assert_eq!(config.server.hostname, "relay.test");
        assert_eq!(config.server.spool, Path::new("./postern-spool"));
        assert_eq!(config.server.shards, 0);
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(
            config.listeners[0].address,
            "127.0.0.1:2525".parse().unwrap()
        );
        assert_eq!(config.listeners[0].tls, TlsMode::None);
        assert!(config.tls.is_none());
        let loopback: Vec<ipnet::IpNet> =
            vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert_eq!(config.relay.allow_networks, loopback);
        assert!(config.relay.local_domains.is_empty());
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.routes[0].domains, ["*"]);
        assert_eq!(config.routes[0].target, RouteTarget::Mx);
        assert_eq!(config.routes[0].tls, OutboundTls::Opportunistic);
        assert!(config.dkim.is_empty());
        assert_eq!(
            config.admin.map(|admin| admin.address),
            Some("127.0.0.1:8025".parse().unwrap())
        );

        let config = embedded_default();

        assert_eq!(config.source, EMBEDDED_SOURCE);
        assert!(!config.server.hostname.is_empty());
    }

    #[test]
    fn omitted_keys_take_their_defaults() {
        let config = parse_test(MINIMAL).expect("minimal file is valid");

        assert_eq!(config.source, "test.toml");
        assert_eq!(config.server.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(config.server.sessions_per_shard_max, 10_000);
        assert_eq!(config.listeners[0].auth, AuthMode::None);
        assert_eq!(config.listeners[0].backlog, 4096);
        let smtp = &config.smtp;
        assert_eq!(smtp.message_size_max_bytes, 50 * 1024 * 1024);
        assert_eq!(smtp.command_line_max_bytes, 512);
        assert_eq!(smtp.text_line_max_bytes, 1000);
        assert_eq!(smtp.recipients_max, 1000);
        assert_eq!(smtp.bad_commands_max, 20);
        assert_eq!(smtp.greeting_delay, Duration::ZERO);
        assert_eq!(smtp.command_timeout, Duration::from_secs(300));
        assert_eq!(smtp.data_timeout, Duration::from_secs(180));
        assert_eq!(smtp.bare_line_endings, BareLineEndings::Reject);
        assert!(config.dns.servers.is_empty());
        assert_eq!(config.log.level, "info");
        assert_eq!(config.log.format, LogFormat::Text);
    }

    #[test]
    fn every_key_can_be_set() {
        let dkim_key = key_file();
        let (text, _certificate, _private_key) = with_tls(&format!(
            r#"
            [server]
            hostname = "Relay.Example.net"
            spool = "/var/spool/postern"
            shards = 8
            shutdown_timeout = "1m"
            sessions_per_shard_max = 500

            [[listener]]
            address = "0.0.0.0:25"
            tls = "starttls"

            [[listener]]
            address = "[::]:587"
            tls = "starttls"
            auth = "required"
            backlog = 128

            [relay]
            allow_networks = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
            local_domains = ["Example.com", "*.example.org"]

            [smtp]
            message_size_max = "25MB"
            command_line_max = "1KiB"
            text_line_max = 2000
            recipients_max = 500
            bad_commands_max = 5
            greeting_delay = "2s"
            command_timeout = "1m30s"
            data_timeout = "10m"
            bare_line_endings = "accept"

            [[route]]
            domains = ["example.com", "*.example.com"]
            smarthost = ["hub1.example.net:25", "[2001:db8::25]:2525"]
            tls = "required"

            [[route]]
            domains = ["*"]
            mx = true

            [[dkim]]
            domain = "Example.com"
            selector = "s2026"
            algorithm = "ed25519-sha256"
            private_key = {:?}

            [dns]
            servers = ["127.0.0.1:5353", "192.0.2.53", "::1"]

            [admin]
            address = "127.0.0.1:8025"

            [log]
            level = "info,postern::spool=debug"
            format = "json"

            [auth]
            users_file = "/etc/postern/users"
            failures_max = 3
            failure_window = "5m"
            "#,
            dkim_key.path().display().to_string()
        ));

        let config = parse_test(&text).unwrap_or_else(|errors| panic!("{errors}"));

        assert_eq!(config.server.hostname, "Relay.Example.net");
        assert_eq!(config.server.shards, 8);
        assert_eq!(config.server.shutdown_timeout, Duration::from_secs(60));
        assert_eq!(config.listeners[1].address, "[::]:587".parse().unwrap());
        assert_eq!(config.listeners[1].auth, AuthMode::Required);
        assert_eq!(
            config.auth.users_file.as_deref(),
            Some(Path::new("/etc/postern/users"))
        );
        assert_eq!(config.auth.failures_max, 3);
        assert_eq!(config.auth.failure_window, Duration::from_secs(300));
        assert_eq!(config.listeners[1].backlog, 128);
        assert_eq!(
            config.relay.allow_networks[1],
            "192.0.2.7/32".parse().unwrap()
        );
        assert_eq!(config.relay.local_domains, ["example.com", "*.example.org"]);
        assert_eq!(config.smtp.message_size_max_bytes, 25_000_000);
        assert_eq!(config.smtp.command_line_max_bytes, 1024);
        assert_eq!(config.smtp.text_line_max_bytes, 2000);
        assert_eq!(config.smtp.command_timeout, Duration::from_secs(90));
        assert_eq!(config.smtp.bare_line_endings, BareLineEndings::Accept);
        assert_eq!(
            config.routes[0].target,
            RouteTarget::Smarthost(vec![
                "hub1.example.net:25".to_owned(),
                "[2001:db8::25]:2525".to_owned()
            ])
        );
        assert_eq!(config.routes[0].tls, OutboundTls::Required);
        assert_eq!(config.dkim[0].domain, "example.com");
        assert_eq!(config.dkim[0].algorithm, DkimAlgorithm::Ed25519Sha256);
        assert_eq!(config.dns.servers[1], "192.0.2.53:53".parse().unwrap());
        assert_eq!(config.dns.servers[2], "[::1]:53".parse().unwrap());
        assert_eq!(
            config.admin.unwrap().address,
            "127.0.0.1:8025".parse().unwrap()
        );
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn many_errors_are_reported_at_once() {
        let text = r#"
            bogus = 1

            [server]
            hostname = "bad_host"
            shards = 5000
            shutdown_timeout = 30

            [[listener]]
            address = "127.0.0.1"
            tls = "ssl"

            [[listener]]
            address = "0.0.0.0:25"
            auth = "required"
            backlog = 0

            [relay]
            allow_networks = ["10.0.0.1/8", "nonsense"]
            local_domains = ["*"]

            [smtp]
            message_size_max = "50M"
            command_line_max = 100
            recipients_max = "lots"
            data_timeout = "3 minutes"
            bare_line_endings = "fix"

            [[route]]
            domains = ["example.com"]

            [[route]]
            domains = ["*"]
            smarthost = "hub.example.net"

            [[dkim]]
            domain = "example.com"
            algorithm = "rsa"

            [log]
            level = "INFO"
            format = "xml"
        "#;

        let errors = parse_test(text).expect_err("the file is full of mistakes");

        assert_eq!(
            errors.keys(),
            [
                "bogus",
                "server.hostname",
                "server.shards",
                "server.shutdown_timeout",
                "listener[0].address",
                "listener[0].tls",
                "listener[1].backlog",
                "relay.allow_networks[0]",
                "relay.allow_networks[1]",
                "relay.local_domains[0]",
                "smtp.message_size_max",
                "smtp.command_line_max",
                "smtp.recipients_max",
                "smtp.data_timeout",
                "smtp.bare_line_endings",
                "route[0]",
                "route[1].smarthost",
                "dkim[0].selector",
                "dkim[0].algorithm",
                "dkim[0].private_key",
                "log.level",
                "log.format",
                "listener[1].auth",
                "listener[1].auth",
            ]
        );
        assert!(errors.errors.iter().all(|error| error.file == "test.toml"));
        let shown = errors.to_string();
        assert_eq!(shown.lines().count(), errors.errors.len());
        assert!(shown
            .contains("test.toml: server.shards: expected an integer from 0 to 1024, found 5000"));
        assert!(shown.contains(
            "test.toml: listener[0].tls: expected one of \"none\", \"starttls\", \"implicit\", \
             found \"ssl\""
        ));
    }

    #[test]
    fn unknown_keys_are_reported_at_every_level() {
        let dkim_key = key_file();
        let (text, _certificate, _private_key) = with_tls(&format!(
            r#"
            colour = "blue"
            [server]
            hostnam = "x.example"
            [[listener]]
            address = "127.0.0.1:25"
            port = 25
            [relay]
            networks = []
            [smtp]
            max_size = "1MiB"
            [[route]]
            domains = ["*"]
            mx = true
            via = "x"
            [[dkim]]
            domain = "example.com"
            selector = "s1"
            algorithm = "rsa-sha256"
            private_key = {:?}
            key = "x"
            [dns]
            server = "127.0.0.1"
            [admin]
            address = "127.0.0.1:8025"
            listen = "x"
            [log]
            levle = "info"
            "#,
            dkim_key.path().display().to_string()
        ));
        let text = text.replace("[tls]\n", "[tls]\nca = \"x\"\n");

        assert_eq!(
            error_keys(&text),
            [
                "colour",
                "server.hostnam",
                "listener[0].port",
                "tls.ca",
                "relay.networks",
                "smtp.max_size",
                "route[0].via",
                "dkim[0].key",
                "dns.server",
                "admin.listen",
                "log.levle",
            ]
        );
    }

    #[test]
    fn unknown_key_reasons_suggest_the_likely_key() {
        let text = format!("{MINIMAL}\n[log]\nlevle = \"info\"\n");

        assert_eq!(only_reason(&text), "unknown key; did you mean \"level\"?");
    }

    #[test]
    fn wrongly_typed_sections_are_reported() {
        let text = r#"
            server = 5
            listener = { address = "127.0.0.1:25" }
            route = [5]
            dns = "8.8.8.8"
        "#;

        assert_eq!(error_keys(text), ["server", "listener", "route[0]", "dns"]);
        let reason = parse_test(text).unwrap_err().errors[1].reason.clone();
        assert!(reason.contains("[[listener]]"), "{reason}");
    }

    #[test]
    fn missing_listener_and_route_are_errors() {
        assert_eq!(error_keys("[server]\nshards = 1\n"), ["listener", "route"]);
        assert_eq!(
            error_keys("listener = []\nroute = []\n"),
            ["listener", "route"]
        );
    }

    #[test]
    fn every_listener_enum_value_is_accepted() {
        for (tls, tls_name) in TlsMode::ALL {
            for (auth, auth_name) in AuthMode::ALL {
                let listener = format!(
                    "{MINIMAL}\n[[listener]]\naddress = \"127.0.0.1:2000\"\n\
                     tls = {tls_name:?}\nauth = {auth_name:?}\n\
                     [auth]\nusers_file = \"/etc/postern/users\"\n"
                );
                let (text, _certificate, _private_key) = with_tls(&listener);

                let config = parse_test(&text).unwrap_or_else(|errors| panic!("{errors}"));

                assert_eq!(
                    (config.listeners[1].tls, config.listeners[1].auth),
                    (*tls, *auth)
                );
                assert_eq!(tls.as_str(), *tls_name);
                assert_eq!(auth.to_string(), *auth_name);
            }
        }
    }

    #[test]
    fn every_other_enum_value_is_accepted() {
        for (mode, name) in BareLineEndings::ALL {
            let text = format!("{MINIMAL}\n[smtp]\nbare_line_endings = {name:?}\n");
            assert_eq!(parse_test(&text).unwrap().smtp.bare_line_endings, *mode);
        }
        for (format, name) in LogFormat::ALL {
            let text = format!("{MINIMAL}\n[log]\nformat = {name:?}\n");
            assert_eq!(parse_test(&text).unwrap().log.format, *format);
        }
        for (tls, name) in OutboundTls::ALL {
            let text = format!("{MINIMAL}tls = {name:?}\n");
            assert_eq!(parse_test(&text).unwrap().routes[0].tls, *tls);
        }
        for (algorithm, name) in DkimAlgorithm::ALL {
            let key = key_file();
            let text = format!(
                "{MINIMAL}\n[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\n\
                 algorithm = {name:?}\nprivate_key = {:?}\n",
                key.path().display().to_string()
            );
            assert_eq!(parse_test(&text).unwrap().dkim[0].algorithm, *algorithm);
        }
        assert_eq!(TlsMode::SPELLINGS, ["none", "starttls", "implicit"]);
    }

    #[test]
    fn log_levels_accept_directives_only_in_lowercase() {
        for good in [
            "trace",
            "debug",
            "warn",
            "error",
            "postern=debug,glommio=warn",
        ] {
            let text = format!("{MINIMAL}\n[log]\nlevel = {good:?}\n");
            assert_eq!(parse_test(&text).unwrap().log.level, good);
        }
        for bad in ["", "Info", "info debug", "postern[session]=trace"] {
            let text = format!("{MINIMAL}\n[log]\nlevel = {bad:?}\n");
            assert_eq!(error_keys(&text), ["log.level"], "{bad:?}");
        }
    }

    #[test]
    fn rfc_floors_are_enforced() {
        let text = format!(
            "{MINIMAL}\n[smtp]\nmessage_size_max = \"60KiB\"\ncommand_line_max = 511\n\
             text_line_max = 999\nrecipients_max = 99\n"
        );

        assert_eq!(
            error_keys(&text),
            [
                "smtp.message_size_max",
                "smtp.command_line_max",
                "smtp.text_line_max",
                "smtp.recipients_max"
            ]
        );
        let reason = parse_test(&text).unwrap_err().errors[0].reason.clone();
        assert_eq!(reason, "60KiB is out of range; expected from 64KiB to 1GiB");
    }

    #[test]
    fn tls_files_must_be_readable() {
        let text = format!(
            "{MINIMAL}\n[tls]\ncertificate = \"/nonexistent/postern/cert.pem\"\n\
             private_key = \"/\"\n"
        );

        let errors = parse_test(&text).unwrap_err();

        assert_eq!(errors.keys(), ["tls.certificate", "tls.private_key"]);
        assert!(errors.errors[0]
            .reason
            .starts_with("cannot open /nonexistent/postern/cert.pem:"));
        assert_eq!(errors.errors[1].reason, "/ is not a regular file");
    }

    #[test]
    fn syntax_errors_are_one_error_with_a_position() {
        let errors = parse_test("[server]\nshards = \n").unwrap_err();

        assert_eq!(errors.keys(), ["line 2, column 10"]);
        assert!(errors.errors[0].reason.starts_with("TOML syntax error: "));
        assert!(!errors.errors[0].reason.contains('\n'));
    }

    #[test]
    fn unusable_system_hostname_asks_for_the_key() {
        let errors =
            parse_with_hostname(MINIMAL, "t.toml", &|| Ok("my_box".to_owned())).unwrap_err();

        assert_eq!(errors.keys(), ["server.hostname"]);
        assert!(errors.errors[0]
            .reason
            .starts_with("omitted, and the system host name \"my_box\""));
        assert!(errors.errors[0].reason.ends_with("; set server.hostname"));

        let errors = parse_with_hostname(MINIMAL, "t.toml", &|| Err("no name".into())).unwrap_err();
        assert_eq!(
            errors.errors[0].reason,
            "omitted, and no name; set server.hostname"
        );
    }

    #[test]
    fn load_reads_files_and_reports_unreadable_ones() {
        let mut file = tempfile::NamedTempFile::new().expect("temporary file");
        file.write_all(DEFAULT_TOML.as_bytes()).expect("write");

        let config = load(file.path()).unwrap_or_else(|errors| panic!("{errors}"));
        assert_eq!(config.source, file.path().display().to_string());

        let errors = load(Path::new("/nonexistent/postern.toml")).unwrap_err();
        assert_eq!(errors.errors.len(), 1);
        assert_eq!(errors.errors[0].file, "/nonexistent/postern.toml");
        assert_eq!(errors.errors[0].key, "(file)");
    }

    #[test]
    fn guide_example_is_valid() {
        let certificate = key_file();
        let private_key = key_file();
        let dkim_key = key_file();
        let text = guide_example("## Example")
            .replace(
                "/etc/postern/tls/fullchain.pem",
                &certificate.path().display().to_string(),
            )
            .replace(
                "/etc/postern/tls/key.pem",
                &private_key.path().display().to_string(),
            )
            .replace(
                "/etc/postern/dkim/example.com.s2026.pem",
                &dkim_key.path().display().to_string(),
            );

        let config = parse_test(&text).unwrap_or_else(|errors| panic!("{errors}"));

        assert_eq!(config.listeners.len(), 3);
        assert_eq!(config.routes.len(), 2);
    }

    #[test]
    fn guide_shows_the_embedded_default() {
        assert!(DEFAULT_TOML.contains(guide_example("## The built-in configuration")));
    }

    #[test]
    fn delivery_and_route_keys_parse_and_report_errors() {
        let text = r#"
            [[listener]]
            address = "127.0.0.1:2525"

            [[route]]
            domains = ["*"]
            smarthost = "127.0.0.1:2526"
            connections_max = 3
            messages_per_connection_max = 7
            source_address = "127.0.0.1"

            [delivery]
            retry_schedule = ["10s", "1m"]
            max_age = "2h"
            delay_warning = "30m"
            idle_timeout = "2s"
        "#;
        let config = parse_test(text).unwrap();
        let route = &config.routes[0];
        assert_eq!(route.connections_max, 3);
        assert_eq!(route.messages_per_connection_max, 7);
        assert_eq!(route.source_address, Some("127.0.0.1".parse().unwrap()));
        let delivery = &config.delivery;
        assert_eq!(
            delivery.retry_schedule,
            [Duration::from_secs(10), Duration::from_secs(60)]
        );
        assert_eq!(delivery.max_age, Duration::from_secs(7200));
        assert_eq!(delivery.delay_warning, Some(Duration::from_secs(1800)));
        assert_eq!(delivery.idle_timeout, Duration::from_secs(2));

        let bad = r#"
            [[listener]]
            address = "127.0.0.1:2525"

            [[route]]
            domains = ["*"]
            mx = true
            connections_max = 0
            source_address = "here"

            [delivery]
            retry_schedule = ["10s", "soon"]
            received_max = 5
            retries = 3
        "#;
        assert_eq!(
            error_keys(bad),
            [
                "route[0].connections_max",
                "route[0].source_address",
                "delivery.retries",
                "delivery.retry_schedule[1]",
                "delivery.received_max",
            ]
        );
    }

    #[test]
    fn spool_keys_are_loaded_and_every_problem_is_named() {
        use std::os::unix::fs::PermissionsExt;

        let keys = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = keys.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        write("2026-01.key", &[1; 32]);
        write("2026-02.key", "ff".repeat(32).as_bytes());
        let good = format!(
            "[server]\nspool_keys = \"{}\"\nspool_key = \"2026-02\"\n\n\
             [[listener]]\naddress = \"127.0.0.1:25\"\n\n[[route]]\ndomains = [\"*\"]\nmx = true\n",
            keys.path().display()
        );
        let config = parse_test(&good).unwrap();
        assert_eq!(
            config
                .server
                .spool_keys
                .active()
                .map(crate::spool::SpoolKey::id),
            Some("2026-02")
        );
        assert_eq!(config.server.spool_keys.len(), 2);
        assert!(config.describe().contains("spool_key=2026-02"));

        write("broken.key", b"short");
        let bad = good.replace("2026-02\"", "bad/id\"");
        assert_eq!(error_keys(&bad), ["server.spool_key", "server.spool_keys"]);
        let unset = "[server]\nspool_key = \"a\"\n\n[[listener]]\naddress = \"127.0.0.1:25\"\n\n\
                     [[route]]\ndomains = [\"*\"]\nmx = true\n";
        assert_eq!(error_keys(unset), ["server.spool_key"]);
    }

    #[test]
    fn verification_defaults_to_on_with_the_host_name_and_reports_errors() {
        let config = parse_test(MINIMAL).unwrap();
        let verification = &config.verification;
        assert!(verification.enabled);
        assert_eq!(verification.authserv_id, config.server.hostname);
        assert!(!verification.dmarc_reject);
        assert_eq!(verification.timeout, Duration::from_secs(10));

        let text = format!(
            "{MINIMAL}\n[verification]\nenabled = false\nauthserv_id = \"MX.Example.Net\"\n\
             dmarc_reject = true\ntimeout = \"3s\"\n"
        );
        let verification = parse_test(&text).unwrap().verification;
        assert!(!verification.enabled);
        assert_eq!(verification.authserv_id, "mx.example.net");
        assert!(verification.dmarc_reject);
        assert_eq!(verification.timeout, Duration::from_secs(3));

        let bad = format!(
            "{MINIMAL}\n[verification]\nenabled = \"yes\"\nauthserv_id = \"not a name\"\n\
             dmarc_reject = 1\ntimeout = \"5m\"\nspf = true\n"
        );
        assert_eq!(
            error_keys(&bad),
            [
                "verification.spf",
                "verification.enabled",
                "verification.authserv_id",
                "verification.dmarc_reject",
                "verification.timeout",
            ]
        );
    }

    #[test]
    fn describe_shows_the_effective_values() {
        let config = parse_test(DEFAULT_TOML).unwrap();

        assert_eq!(
            config.describe(),
            "source=test.toml server{hostname=relay.test spool=./postern-spool shards=auto \
             sessions_per_shard_max=10000 shutdown_timeout=30s spool_size_max=none \
             spool_free_min=256MiB spool_segment_size=64MiB spool_keys=none spool_key=none} \
             listener[0]{address=127.0.0.1:2525 tls=none auth=none client_certificates=false \
             backlog=4096} \
             auth{users_file=none failures_max=5 failure_window=10m} \
             relay{allow_networks=[127.0.0.0/8,::1/128] local_domains=[]} \
             smtp{message_size_max=50MiB command_line_max=512 text_line_max=1000 \
             recipients_max=1000 bad_commands_max=20 greeting_delay=0s command_timeout=5m \
             data_timeout=3m bare_line_endings=reject} \
             route[0]{domains=[*] mx tls=opportunistic connections_max=10 \
             messages_per_connection_max=100 source_address=auto mx_port=25} dns{servers=[system]} \
             verification{enabled=true authserv_id=relay.test dmarc_reject=false timeout=10s} \
             delivery{retry_schedule=[1m,5m,15m,30m,1h,2h,4h] max_age=5d delay_warning=off \
             received_max=100 connect_timeout=30s command_timeout=5m data_timeout=3m \
             data_done_timeout=10m idle_timeout=5s} admin{address=127.0.0.1:8025} \
             log{level=info format=text}"
        );
    }
}
