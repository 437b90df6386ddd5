//! Scenario: the sink verifies DKIM signatures against keys given on the command line. Four
//! messages go in over a plain SMTP session: one correctly signed (Ed25519, as postern signs),
//! one whose signed Subject was altered after signing, one signed with a selector whose key
//! the sink was not given, and one unsigned. The report must say pass 1, fail 2, unsigned 1,
//! and all four must still be accepted and verified intact by their own checksums.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use common::{number, Sink};
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(octets: &[u8]) -> String {
    let mut out = String::new();
    for chunk in octets.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A message in loadgen's format (id and body checksum), CRLF line endings.
fn message(id: &str, subject: &str) -> Vec<u8> {
    let body = b"Hello from the DKIM test.\r\nSecond line.\r\n";
    format!(
        "From: <sender@example.com>\r\nTo: <sink@localhost>\r\nSubject: {subject}\r\n\
         X-Loadgen-Id: {id}\r\nX-Loadgen-Checksum: crc32c={:08x}; bytes={}\r\n\r\n",
        crc32c::crc32c(body),
        body.len()
    )
    .into_bytes()
    .into_iter()
    .chain(body.iter().copied())
    .collect()
}

fn sign(selector: &str, message: &[u8]) -> Vec<u8> {
    let key = Ed25519Key::from_pkcs8_der(&key_der()).expect("ring's own PKCS#8 loads");
    let signature = DkimSigner::from_key(key)
        .domain("example.com")
        .selector(selector)
        .headers(["From", "To", "Subject"])
        .sign(message)
        .expect("signing works");
    let mut signed = signature.to_header().into_bytes();
    signed.extend_from_slice(message);
    signed
}

/// One fixed Ed25519 key for the whole test, made once with ring.
fn key_der() -> Vec<u8> {
    use std::sync::OnceLock;
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| {
        let random = ring::rand::SystemRandom::new();
        ring::signature::Ed25519KeyPair::generate_pkcs8(&random)
            .expect("ring makes a key")
            .as_ref()
            .to_vec()
    })
    .clone()
}

/// Sends the messages over one SMTP session (no dot at line start in them, so no stuffing).
fn deliver(address: &str, messages: &[Vec<u8>]) {
    let mut stream = TcpStream::connect(address).unwrap();
    let mut replies = BufReader::new(stream.try_clone().unwrap());
    let mut expect = |code: &str| loop {
        let mut line = String::new();
        replies.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "got {line:?}, expected {code}");
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    };
    expect("220");
    stream.write_all(b"EHLO test\r\n").unwrap();
    expect("250");
    for message in messages {
        stream
            .write_all(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<sink@localhost>\r\nDATA\r\n")
            .unwrap();
        expect("250");
        expect("250");
        expect("354");
        stream.write_all(message).unwrap();
        stream.write_all(b".\r\n").unwrap();
        expect("250");
    }
    stream.write_all(b"QUIT\r\n").unwrap();
    expect("221");
}

#[test]
fn signatures_are_verified_against_the_given_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&key_der()).unwrap();
    let record = dir.path().join("s1.txt");
    std::fs::write(
        &record,
        format!("v=DKIM1; k=ed25519; p={}\n", base64(&key.public_key())),
    )
    .unwrap();
    let argument = format!("s1._domainkey.example.com={}", record.display());
    let mut sink = Sink::start(dir.path(), "k", &["--dkim-key", &argument]);

    let good = sign("s1", &message("t-0", "signed"));
    let mut altered = sign("s1", &message("t-1", "original"));
    let at = altered.windows(8).position(|w| w == b"original").unwrap();
    altered[at..at + 8].copy_from_slice(b"ORIGINAL");
    let unknown_selector = sign("s2", &message("t-2", "signed"));
    let unsigned = message("t-3", "plain");
    deliver(&sink.address, &[good, altered, unknown_selector, unsigned]);

    let report = sink.stop();
    assert_eq!(number(&report, "accepted"), 4);
    assert_eq!(number(&report, "intact"), 4);
    assert_eq!(number(&report, "dkim_pass"), 1, "{report}");
    assert_eq!(number(&report, "dkim_fail"), 2, "{report}");
    assert_eq!(number(&report, "dkim_none"), 1, "{report}");
}
