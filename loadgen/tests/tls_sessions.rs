//! Scenario: TLS between `send` and `sink`. STARTTLS with a certificate verified against its
//! CA file, implicit TLS with the sink's self-signed certificate and --insecure, and the two
//! refusals that must not silently fall back to clear text: a certificate that does not verify,
//! and a server that does not offer STARTTLS. Accounting stays exact under TLS.

mod common;

use common::{id_log, number, send, Sink};

/// Writes a self-signed certificate for `localhost` and its key; returns their paths.
fn make_certificate(dir: &std::path::Path, name: &str) -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&certificate, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    (
        certificate.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[test]
fn starttls_with_a_verified_certificate_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (certificate, key) = make_certificate(dir.path(), "sink");
    let mut sink = Sink::start(
        dir.path(),
        "s",
        &["--starttls", "--tls-cert", &certificate, "--tls-key", &key],
    );
    let (_, sent) = send(
        dir.path(),
        "s",
        &sink.address,
        &[
            "--messages",
            "150",
            "--concurrency",
            "4",
            "--per-connection",
            "5",
            "--starttls",
            "--ca",
            &certificate,
            "--tls-name",
            "localhost",
        ],
    );
    let received = sink.stop();
    assert_eq!(number(&sent, "accepted"), 150, "{sent}");
    assert_eq!(number(&received, "intact"), 150);
    assert_eq!(number(&received, "tls_failures"), 0);
    assert_eq!(id_log(&dir.path().join("s.sent")), id_log(&sink.ids));
}

#[test]
fn implicit_tls_with_a_self_signed_sink_and_insecure_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::start(dir.path(), "i", &["--implicit-tls"]);
    let (_, sent) = send(
        dir.path(),
        "i",
        &sink.address,
        &[
            "--messages",
            "100",
            "--concurrency",
            "3",
            "--per-connection",
            "1",
            "--implicit-tls",
            "--insecure",
        ],
    );
    let received = sink.stop();
    assert_eq!(number(&sent, "accepted"), 100, "{sent}");
    assert_eq!(number(&sent, "connections"), 100);
    assert_eq!(number(&received, "intact"), 100);
    assert_eq!(id_log(&dir.path().join("i.sent")), id_log(&sink.ids));
}

#[test]
fn a_certificate_that_does_not_verify_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (certificate, key) = make_certificate(dir.path(), "sink");
    let (other_ca, _) = make_certificate(dir.path(), "other");
    let mut sink = Sink::start(
        dir.path(),
        "v",
        &["--starttls", "--tls-cert", &certificate, "--tls-key", &key],
    );
    let (_, sent) = send(
        dir.path(),
        "v",
        &sink.address,
        &[
            "--messages",
            "5",
            "--concurrency",
            "1",
            "--starttls",
            "--ca",
            &other_ca,
        ],
    );
    let received = sink.stop();
    assert_eq!(number(&sent, "accepted"), 0);
    assert_eq!(number(&sent["connection_error_kinds"], "protocol"), 5);
    assert!(
        sent["first_error"].as_str().unwrap().contains("TLS"),
        "{sent}"
    );
    assert_eq!(number(&received, "accepted"), 0);
}

#[test]
fn starttls_is_never_skipped_when_the_server_does_not_offer_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::start(dir.path(), "n", &[]);
    let (_, sent) = send(
        dir.path(),
        "n",
        &sink.address,
        &[
            "--messages",
            "3",
            "--concurrency",
            "1",
            "--starttls",
            "--insecure",
        ],
    );
    let received = sink.stop();
    assert_eq!(number(&sent, "accepted"), 0);
    assert_eq!(number(&sent["connection_error_kinds"], "protocol"), 3);
    assert_eq!(number(&received, "accepted"), 0);
}
