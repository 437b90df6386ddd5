//! Scenario: SMTP AUTH after STARTTLS, driven by Python's smtplib (tests/peers/auth_probe.py).
//! PLAIN and LOGIN succeed with the right password, the authenticated session relays to a
//! domain that is not local and its message says `with ESMTPSA` (and, being trusted, is not
//! verified); a wrong password is `535`, and once a client address has used up `failures_max`,
//! even the right password is `454`.
//! The same holds over implicit TLS. `/metrics` counts each verdict, and `POST /reload` reloads
//! the users file.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::certificates::Authority;
use common::{free_port, postern_binary, Options, Relay};
use serde_json::Value;

struct AuthRelay {
    relay: Relay,
    ca: PathBuf,
    admin: SocketAddr,
    implicit: SocketAddr,
    _directory: tempfile::TempDir,
}

/// A STARTTLS listener with `auth = "required"` that trusts no network, so only AUTH can grant
/// relaying; alice's password is `correct horse`.
fn start(failures_max: u32) -> AuthRelay {
    let directory = tempfile::tempdir().expect("temporary directory");
    let authority = Authority::new(directory.path(), "ca");
    let server = authority.server("server", &["relay.test"]);
    let users = directory.path().join("users");
    add_user(&users, "alice", "correct horse");

    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let implicit = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let extra = format!(
        "[tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n\n[admin]\naddress = \"{admin}\"\n\n\
         [[listener]]\naddress = \"{implicit}\"\ntls = \"implicit\"\nauth = \"required\"\n\n\
         [auth]\nusers_file = \"{}\"\nfailures_max = {failures_max}\nfailure_window = \"10m\"\n",
        server.certificate.display(),
        server.private_key.display(),
        users.display(),
    );
    let relay = Relay::start(Options {
        listener: "tls = \"starttls\"\nauth = \"required\"".into(),
        relay: Some("allow_networks = []\nlocal_domains = [\"example.com\"]"),
        extra,
        ..Options::default()
    });
    AuthRelay {
        relay,
        ca: authority.certificate.clone(),
        admin,
        implicit,
        _directory: directory,
    }
}

fn add_user(users: &Path, name: &str, password: &str) {
    use std::io::Write as _;
    let mut child = Command::new(postern_binary())
        .args(["user", "add", name, "--password-stdin", "--users-file"])
        .arg(users)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run postern user add");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{password}").expect("write the password");
    drop(stdin);
    assert!(child.wait().expect("wait").success());
}

/// One HTTP/1.1 request to the admin API; the whole response, headers and body.
fn admin_request(admin: SocketAddr, request_line: &str) -> String {
    let mut stream = TcpStream::connect(admin).expect("connect to the admin API");
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// The sum over shards of one metric.
fn total(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// One smtplib session on the STARTTLS listener.
fn probe(relay: &AuthRelay, mechanism: &str, password: &str) -> Value {
    let port = relay.relay.address.port();
    probe_on(relay, port, mechanism, password, &[])
}

fn probe_on(
    relay: &AuthRelay,
    port: u16,
    mechanism: &str,
    password: &str,
    extra: &[&str],
) -> Value {
    let output = Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/auth_probe.py"
        ))
        .args(["--port", &port.to_string(), "--ca"])
        .arg(&relay.ca)
        .args(extra)
        .args([
            "--mechanism",
            mechanism,
            "--user",
            "alice",
            "--password",
            password,
        ])
        .output()
        .expect("run tests/peers/auth_probe.py with /usr/bin/python3");
    assert!(
        output.status.success(),
        "auth_probe.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("probe prints JSON")
}

#[test]
fn plain_and_login_succeed_and_may_relay() {
    let relay = start(5);

    for (round, mechanism) in ["PLAIN", "LOGIN"].into_iter().enumerate() {
        let result = probe(&relay, mechanism, "correct horse");
        let before = result["ehlo_before"].as_str().unwrap();
        assert!(!before.contains("AUTH"), "AUTH offered in clear: {before}");
        assert_eq!(result["mail_before_auth"], 530, "{result}");
        let after = result["ehlo_after"].as_str().unwrap();
        assert!(after.contains("AUTH PLAIN LOGIN"), "{after}");

        assert_eq!(result["auth"], 235, "{mechanism}: {result}");
        assert!(result["auth_text"]
            .as_str()
            .unwrap()
            .contains("Authentication successful"));
        assert_eq!(result["mail"], 250, "{result}");
        assert_eq!(result["rcpt"], 250, "relay to a non-local domain: {result}");
        assert_eq!(result["data_done"], 250, "{result}");

        let stored = relay.relay.stored();
        assert_eq!(stored.len(), round + 1);
        let text = stored[round].message_text();
        assert!(text.contains(" with ESMTPSA id "), "{text}");
        // Authenticated mail is taken on trust: no SPF/DKIM/DMARC verdict is added.
        assert!(!text.contains("Authentication-Results:"), "{text}");
    }

    let log = relay.relay.log();
    assert_eq!(log.matches("message accepted").count(), 2, "{log}");
    assert!(
        log.lines()
            .filter(|line| line.contains("message accepted"))
            .all(|line| line.contains("auth_user=\"alice\"") || line.contains("auth_user=alice")),
        "{log}"
    );
    assert!(
        !log.contains("correct horse"),
        "the password reached the log"
    );

    let metrics = admin_request(relay.admin, "GET /metrics");
    assert_eq!(
        total(&metrics, "postern_auth_successes_total"),
        2,
        "{metrics}"
    );
    assert_eq!(
        total(&metrics, "postern_auth_failures_total"),
        0,
        "{metrics}"
    );

    let reload = admin_request(relay.admin, "POST /reload");
    assert!(reload.contains("\"auth\""), "{reload}");
    assert!(reload.contains("\"users\":1"), "{reload}");
}

#[test]
fn wrong_password_is_535_then_the_client_is_rate_limited() {
    let relay = start(2);

    for mechanism in ["PLAIN", "LOGIN"] {
        let result = probe(&relay, mechanism, WRONG_PASSWORD);
        assert_eq!(result["auth"], 535, "{mechanism}: {result}");
        assert!(result["auth_text"]
            .as_str()
            .unwrap()
            .contains("Authentication credentials invalid"));
    }

    // Two failures used up the window for 127.0.0.1: the right password is refused, unchecked.
    let limited = probe(&relay, "PLAIN", "correct horse");
    assert_eq!(limited["auth"], 454, "{limited}");
    assert_eq!(relay.relay.stored().len(), 0);

    let log = relay.relay.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("AUTH failed"))
        .collect();
    assert_eq!(failures.len(), 2, "{log}");
    assert!(failures
        .iter()
        .all(|line| line.contains("127.0.0.1") && line.contains("alice")));
    assert!(log.contains("too many failures from this client"), "{log}");
    assert!(!log.contains(WRONG_PASSWORD), "a password reached the log");
    assert!(
        !log.contains("correct horse"),
        "the password reached the log"
    );

    let metrics = admin_request(relay.admin, "GET /metrics");
    assert_eq!(
        total(&metrics, "postern_auth_successes_total"),
        0,
        "{metrics}"
    );
    assert_eq!(
        total(&metrics, "postern_auth_failures_total"),
        2,
        "{metrics}"
    );
    let temporary = total(&metrics, "postern_auth_temporary_failures_total");
    assert_eq!(temporary, 1, "{metrics}");
}

#[test]
fn implicit_tls_offers_auth_from_the_first_ehlo() {
    let relay = start(5);
    let port = relay.implicit.port();
    let result = probe_on(&relay, port, "LOGIN", "correct horse", &["--implicit"]);

    let ehlo = result["ehlo_after"].as_str().unwrap();
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(result["mail_before_auth"], 530, "{result}");
    assert_eq!(result["auth"], 235, "{result}");
    assert_eq!(result["rcpt"], 250, "{result}");
    assert_eq!(result["data_done"], 250, "{result}");
    let stored = relay.relay.stored();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].message_text().contains(" with ESMTPSA id "));
}

const WRONG_PASSWORD: &str = "Tr0ub4dor&3";
