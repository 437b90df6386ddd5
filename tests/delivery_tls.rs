//! Scenario: delivery over STARTTLS to an aiosmtpd next hop (Python's ssl, OpenSSL) under each
//! route policy: `required` delivers when the certificate verifies against the route's CA and
//! keeps the mail queued, unsent, when it does not; `opportunistic` encrypts even to a
//! certificate nobody vouches for.

mod common;

use std::time::Duration;

use common::certificates::Authority;
use common::next_hop::FaultyHop;
use common::{Options, Relay};

struct Setup {
    relay: Relay,
    hop: FaultyHop,
    _pki: tempfile::TempDir,
}

/// A hop whose certificate (for 127.0.0.1) comes from `hop_ca`, and a relay whose route has
/// `policy` and trusts `trusted_ca` (when given).
fn setup(policy: &str, trusted_is_hop_ca: Option<bool>) -> Setup {
    let pki = tempfile::tempdir().unwrap();
    let hop_ca = Authority::new(pki.path(), "hop-ca");
    let other_ca = Authority::new(pki.path(), "other-ca");
    let certificate = hop_ca.server("hop", &["127.0.0.1"]);
    let hop = FaultyHop::start(&[
        "--tls-certificate",
        certificate.certificate.to_str().unwrap(),
        "--tls-key",
        certificate.private_key.to_str().unwrap(),
    ]);
    let ca_line = match trusted_is_hop_ca {
        None => String::new(),
        Some(true) => format!("tls_ca_file = \"{}\"\n", hop_ca.certificate.display()),
        Some(false) => format!("tls_ca_file = \"{}\"\n", other_ca.certificate.display()),
    };
    let routes = format!(
        "[[route]]\ndomains = [\"*\"]\nsmarthost = \"{}\"\ntls = \"{policy}\"\n{ca_line}",
        hop.address
    );
    let relay = Relay::start(Options {
        routes: Some(routes),
        delivery: "retry_schedule = [\"1s\"]".into(),
        ..Options::default()
    });
    Setup {
        relay,
        hop,
        _pki: pki,
    }
}

fn send(relay: &Relay, id: &str) {
    let mut client = relay.connect();
    let body = format!("X-Test-Id: {id}\r\nSubject: over TLS\r\n\r\nsecret\r\n");
    let reply = client.send_message("s@client.test", &["r@example.com"], body.as_bytes());
    assert_eq!(reply.code, 250, "{reply:?}");
}

#[test]
fn required_tls_delivers_when_the_certificate_verifies() {
    let setup = setup("required", Some(true));
    send(&setup.relay, "required-ok");
    let accepted = setup.hop.wait_for(1, Duration::from_secs(20));
    assert_eq!(accepted.len(), 1, "not delivered:\n{}", setup.relay.log());
    assert_eq!(accepted[0].tls.as_deref(), Some("TLSv1.3"));
    let log = setup.relay.log();
    assert!(log.contains("tls=\"TLSv1.3\""), "{log}");
    assert!(log.contains("status=\"sent\""), "{log}");
}

#[test]
fn required_tls_keeps_mail_queued_when_the_certificate_does_not_verify() {
    let setup = setup("required", Some(false));
    send(&setup.relay, "required-untrusted");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        setup.hop.accepted().is_empty(),
        "delivered despite an untrusted certificate"
    );
    assert_eq!(setup.relay.stored().len(), 1, "the message left the queue");
    let log = setup.relay.log();
    assert!(log.contains("status=\"deferred\""), "{log}");
    assert!(log.contains("nothing was sent in clear text"), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
}

#[test]
fn opportunistic_tls_encrypts_without_verifying() {
    let setup = setup("opportunistic", None);
    send(&setup.relay, "opportunistic");
    let accepted = setup.hop.wait_for(1, Duration::from_secs(20));
    assert_eq!(accepted.len(), 1, "not delivered:\n{}", setup.relay.log());
    assert_eq!(accepted[0].tls.as_deref(), Some("TLSv1.3"));
}
