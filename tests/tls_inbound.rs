//! Inbound TLS against OpenSSL (Python's ssl module, tests/peers/tls_probe.py): STARTTLS and
//! implicit TLS, the version floor, SNI, the RFC 3207 reset and discarded plaintext, session
//! resumption, relaying by client certificate, and certificate reload by SIGHUP and the admin
//! API while sessions carry on.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::certificates::{Authority, Issued};
use common::{eventually, free_port, Options, Relay};
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

struct TlsRelay {
    relay: Relay,
    implicit: SocketAddr,
    admin: SocketAddr,
    server_ca: Authority,
    server: Issued,
    sni: Issued,
    client: Issued,
    _pki: tempfile::TempDir,
}

/// A relay that trusts nobody by network: the STARTTLS listener is the harness's first one,
/// an implicit-TLS listener asks for client certificates from a second CA.
fn start() -> TlsRelay {
    let pki = tempfile::tempdir().expect("pki directory");
    let server_ca = Authority::new(pki.path(), "server-ca");
    let server = server_ca.server("server", &["relay.test"]);
    let sni = server_ca.server("sni", &["mx.example.org", "*.example.com"]);
    let client_ca = Authority::new(pki.path(), "client-ca");
    let client = client_ca.client("client", "trusted-client");

    let implicit = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let extra = format!(
        "[tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\nclient_ca = \"{}\"\n\n\
         [[tls.sni]]\nnames = [\"mx.example.org\", \"*.example.com\"]\n\
         certificate = \"{}\"\nprivate_key = \"{}\"\n\n\
         [[listener]]\naddress = \"{implicit}\"\ntls = \"implicit\"\nclient_certificates = true\n\n\
         [admin]\naddress = \"{admin}\"\n\n\
         # The clients here are untrusted; no DNS question may leave for the system resolver.\n\
         [verification]\nenabled = false\n",
        server.certificate.display(),
        server.private_key.display(),
        client_ca.certificate.display(),
        sni.certificate.display(),
        sni.private_key.display(),
    );
    let relay = Relay::start(Options {
        listener: "tls = \"starttls\"".into(),
        relay: Some("allow_networks = []\nlocal_domains = [\"example.com\"]"),
        extra,
        ..Options::default()
    });
    TlsRelay {
        relay,
        implicit,
        admin,
        server_ca,
        server,
        sni,
        client,
        _pki: pki,
    }
}

fn probe(scenario: &str, port: u16, ca: &Path, extra: &[&str]) -> Value {
    let output = Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/tls_probe.py"
        ))
        .arg(scenario)
        .args(["--port", &port.to_string(), "--ca"])
        .arg(ca)
        .args(extra)
        .output()
        .expect("run tests/peers/tls_probe.py with /usr/bin/python3");
    assert!(
        output.status.success(),
        "tls_probe.py {scenario} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("probe prints JSON")
}

fn sha256_hex(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn starttls_encrypts_and_resets_the_session() {
    let tls = start();
    let port = tls.relay.address.port();
    let result = probe("starttls", port, &tls.server_ca.certificate, &[]);

    assert!(result["ehlo_before"].as_str().unwrap().contains("STARTTLS"));
    let after = result["ehlo_after"].as_str().unwrap();
    assert!(
        !after.contains("STARTTLS"),
        "STARTTLS offered again: {after}"
    );
    assert_eq!(result["version"], "TLSv1.3");
    assert_eq!(result["certificate_sha256"], sha256_hex(&tls.server.der));
    assert_eq!(result["mail"], 250);
    assert_eq!(result["rcpt"], 250);
    assert_eq!(result["data_done"], 250);

    let stored = tls.relay.stored();
    assert_eq!(stored.len(), 1);
    let text = stored[0].message_text();
    assert!(text.contains("with ESMTPS id"), "{text}");
    assert!(text.contains("(using TLSv1.3 with cipher TLS13_"), "{text}");
}

#[test]
fn implicit_tls_greets_after_the_handshake() {
    let tls = start();
    let result = probe(
        "implicit",
        tls.implicit.port(),
        &tls.server_ca.certificate,
        &[],
    );
    assert!(!result["ehlo_after"].as_str().unwrap().contains("STARTTLS"));
    assert_eq!(result["data_done"], 250);
}

#[test]
fn only_tls_1_2_and_1_3_are_spoken() {
    let tls = start();
    for (version, expected) in [("1.0", false), ("1.1", false), ("1.2", true), ("1.3", true)] {
        let result = probe(
            "version",
            tls.implicit.port(),
            &tls.server_ca.certificate,
            &["--tls-version", version],
        );
        assert_eq!(result["handshake"], expected, "TLS {version}: {result}");
        if expected {
            assert_eq!(result["version"], format!("TLSv{version}"));
        }
    }

    let metrics = get(tls.admin, "/metrics");
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(value("postern_tls_handshakes_total"), 2, "{metrics}");
    assert_eq!(
        value("postern_tls_handshake_failures_total"),
        2,
        "{metrics}"
    );
}

#[test]
fn sni_chooses_the_certificate() {
    let tls = start();
    let port = tls.relay.address.port();
    let ca = &tls.server_ca.certificate;
    for (name, expected) in [
        ("mx.example.org", &tls.sni),
        ("a.example.com", &tls.sni),
        ("b.a.example.com", &tls.server),
        ("unknown.test", &tls.server),
    ] {
        let result = probe("starttls", port, ca, &["--sni", name]);
        assert_eq!(
            result["certificate_sha256"],
            sha256_hex(&expected.der),
            "certificate for {name}"
        );
    }
}

#[test]
fn plaintext_pipelined_after_starttls_is_discarded() {
    let tls = start();
    let port = tls.relay.address.port();
    let result = probe("injection", port, &tls.server_ca.certificate, &[]);
    assert_eq!(result["starttls"][0], "220 2.0.0 Ready to start TLS");
    let rcpt = result["rcpt"][0].as_str().unwrap();
    assert!(
        rcpt.starts_with("503"),
        "the MAIL FROM sent in clear was executed: {rcpt}"
    );
}

#[test]
fn sessions_resume() {
    let tls = start();
    let result = probe(
        "resumption",
        tls.implicit.port(),
        &tls.server_ca.certificate,
        &[],
    );
    assert_eq!(result["first_resumed"], false);
    assert_eq!(result["second_resumed"], true, "{result}");
}

#[test]
fn a_client_certificate_from_the_client_ca_may_relay() {
    let tls = start();
    let ca = &tls.server_ca.certificate;
    let elsewhere = ["--recipient", "someone@elsewhere.test"];
    let anonymous = probe("implicit", tls.implicit.port(), ca, &elsewhere);
    assert_eq!(
        anonymous["rcpt"], 554,
        "relayed without a certificate: {anonymous}"
    );

    let certificate = tls.client.certificate.to_str().unwrap();
    let key = tls.client.private_key.to_str().unwrap();
    let with_certificate = [
        elsewhere[0],
        elsewhere[1],
        "--client-certificate",
        certificate,
        "--client-key",
        key,
    ];
    let trusted = probe("implicit", tls.implicit.port(), ca, &with_certificate);
    assert_eq!(trusted["rcpt"], 250, "{trusted}");
    assert_eq!(trusted["data_done"], 250);

    // The STARTTLS listener does not ask for certificates, so the same client gains nothing.
    let port = tls.relay.address.port();
    let not_asked = probe("starttls", port, ca, &with_certificate);
    assert_eq!(not_asked["rcpt"], 554, "{not_asked}");
}

/// A rustls client session opened before a reload, to show it carries on after it.
fn open_implicit_session(
    address: SocketAddr,
    ca: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("relay.test").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    rustls::StreamOwned::new(connection, socket)
}

fn read_line(stream: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).expect("reply line");
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

fn get(address: SocketAddr, path: &str) -> String {
    request(address, "GET", path).1
}

fn post(address: SocketAddr, path: &str) -> (u16, String) {
    request(address, "POST", path)
}

fn request(address: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("admin API");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nX-Postern-Actor: test\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    BufReader::new(stream)
        .read_to_string(&mut response)
        .unwrap();
    let status = response
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[test]
fn certificates_reload_on_sighup_and_admin_while_sessions_carry_on() {
    let tls = start();
    let ca = tls.server_ca.certificate.clone();
    let port = tls.relay.address.port();

    let mut open = open_implicit_session(tls.implicit, &ca);
    assert!(read_line(&mut open).starts_with("220 "));

    // A new certificate in the same files: SIGHUP serves it to new handshakes.
    let renewed = tls.server_ca.server("renewed", &["relay.test"]);
    std::fs::copy(&renewed.certificate, &tls.server.certificate).unwrap();
    std::fs::copy(&renewed.private_key, &tls.server.private_key).unwrap();
    tls.relay.hangup();
    let served_renewed = eventually(Duration::from_secs(10), || {
        probe("starttls", port, &ca, &[])["certificate_sha256"] == sha256_hex(&renewed.der)
    });
    assert!(
        served_renewed,
        "SIGHUP did not reload:\n{}",
        tls.relay.log()
    );

    // The session opened before the reload still works.
    open.write_all(b"EHLO client.test\r\n").unwrap();
    open.flush().unwrap();
    let mut reader = BufReader::new(open);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("250"), "open session after reload: {line}");

    // A broken file is refused with the reason, and the working certificate stays.
    std::fs::write(&tls.server.private_key, "not a key\n").unwrap();
    let (status, body) = post(tls.admin, "/reload");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("tls.private_key"), "{body}");
    let still = probe("starttls", port, &ca, &[]);
    assert_eq!(still["certificate_sha256"], sha256_hex(&renewed.der));

    // Fixed again, the admin API reloads it.
    let third = tls.server_ca.server("third", &["relay.test"]);
    std::fs::copy(&third.certificate, &tls.server.certificate).unwrap();
    std::fs::copy(&third.private_key, &tls.server.private_key).unwrap();
    let (status, body) = post(tls.admin, "/reload");
    assert_eq!(status, 200, "{body}");
    let result = probe("starttls", port, &ca, &[]);
    assert_eq!(result["certificate_sha256"], sha256_hex(&third.der));
}

#[test]
fn check_config_reports_every_unusable_certificate() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Authority::new(pki.path(), "ca");
    let good = ca.server("good", &["relay.test"]);
    let other = ca.server("other", &["other.test"]);
    let garbage = pki.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let config = pki.path().join("postern.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhostname = \"relay.test\"\nspool = \"{spool}\"\n\n\
             [[listener]]\naddress = \"127.0.0.1:2525\"\ntls = \"starttls\"\n\n\
             [[route]]\ndomains = [\"*\"]\nmx = true\n\n\
             [tls]\ncertificate = \"{good_cert}\"\nprivate_key = \"{other_key}\"\n\n\
             [[tls.sni]]\nnames = [\"mx.example.org\"]\ncertificate = \"{good_cert}\"\n\
             private_key = \"{good_key}\"\n\n\
             [[tls.sni]]\nnames = [\"x.example.org\"]\ncertificate = \"{garbage}\"\n\
             private_key = \"{good_key}\"\n",
            spool = pki.path().join("spool").display(),
            good_cert = good.certificate.display(),
            good_key = good.private_key.display(),
            other_key = other.private_key.display(),
            garbage = garbage.display(),
        ),
    )
    .unwrap();
    let output = Command::new(common::postern_binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("tls.private_key"), "{stderr}");
    assert!(stderr.contains("tls.sni[0].names[0]"), "{stderr}");
    assert!(stderr.contains("tls.sni[1].certificate"), "{stderr}");
    assert!(stderr.contains("3 configuration error(s)"), "{stderr}");
}
