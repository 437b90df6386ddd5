//! Scenario: trust by client certificate decides signing too. On an implicit-TLS listener that
//! asks for client certificates, with no trusted networks, a client presenting a certificate
//! from the client CA gets its message signed (and dkimpy verifies it), while the same message
//! sent without a certificate is stored unsigned.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;

use common::certificates::Authority;
use common::dkim::{signature_fields, verify, Keys};
use common::{free_port, Options, Relay};

/// Sends one message over implicit TLS with `tests/peers/tls_probe.py`; returns its replies.
fn send(port: u16, ca: &std::path::Path, message_id: &str, extra: &[&str]) -> serde_json::Value {
    let output = Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/tls_probe.py"
        ))
        .args(["implicit", "--port", &port.to_string(), "--ca"])
        .arg(ca)
        .args(["--from-header", "Alice <alice@example.com>"])
        .args(["--message-id", message_id])
        .args(extra)
        .output()
        .expect("run tests/peers/tls_probe.py with /usr/bin/python3");
    assert!(
        output.status.success(),
        "tls_probe.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("probe prints JSON")
}

#[test]
fn a_client_certificate_makes_mail_signed() {
    let keys = Keys::generate(
        "example.com",
        &[("rsa2026", "rsa-sha256"), ("ed2026", "ed25519-sha256")],
    );
    let pki = tempfile::tempdir().expect("pki directory");
    let server_ca = Authority::new(pki.path(), "server-ca");
    let server = server_ca.server("server", &["relay.test"]);
    let client_ca = Authority::new(pki.path(), "client-ca");
    let client = client_ca.client("client", "trusted-client");

    let implicit = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let extra = format!(
        "[tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\nclient_ca = \"{}\"\n\n\
         [[listener]]\naddress = \"{implicit}\"\ntls = \"implicit\"\nclient_certificates = true\n\n\
         # Untrusted clients would be verified, asking the system's DNS; signing is tested here.\n\
         [verification]\nenabled = false\n\n{}",
        server.certificate.display(),
        server.private_key.display(),
        client_ca.certificate.display(),
        keys.config,
    );
    let relay = Relay::start(Options {
        relay: Some("allow_networks = []\nlocal_domains = [\"example.com\"]"),
        extra,
        ..Options::default()
    });

    let anonymous = send(implicit.port(), &server_ca.certificate, "anonymous", &[]);
    assert_eq!(anonymous["data_done"], 250, "{anonymous}");
    let certificate = client.certificate.to_str().unwrap();
    let key = client.private_key.to_str().unwrap();
    let with_certificate = ["--client-certificate", certificate, "--client-key", key];
    let trusted = send(
        implicit.port(),
        &server_ca.certificate,
        "certified",
        &with_certificate,
    );
    assert_eq!(trusted["data_done"], 250, "{trusted}");

    let mut stored = BTreeMap::new();
    for message in relay.stored() {
        let text = message.message_text();
        let id = if text.contains("<certified@client.test>") {
            "certified"
        } else {
            "anonymous"
        };
        stored.insert(id, message.message);
    }
    assert_eq!(stored.len(), 2, "{:?}", stored.keys());
    assert!(
        signature_fields(&stored["anonymous"]).is_empty(),
        "a client without a certificate was signed"
    );
    let verdicts = &verify(&keys, &[&stored["certified"]])[0];
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    assert!(
        verdicts.iter().all(|verdict| verdict.verified),
        "{verdicts:?}"
    );
}
