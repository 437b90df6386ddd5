//! Helpers for the inbound verification scenarios: the test zone with its SPF, DKIM and DMARC
//! records, DKIM signing with an independent implementation (dkimpy, Debian package
//! `python3-dkim`, with `python3-nacl` for Ed25519), and reading our `Authentication-Results:`
//! field back out of a stored message.

use std::io::Write;
use std::process::{Command, Stdio};

use super::dns_server::{authoritative_zone, txt_record};

/// Debian's Python, which carries python3-dkim (a pyenv `python3` on PATH may not).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// The authserv-id the relay uses in these tests: the harness's `server.hostname`.
pub const AUTHSERV_ID: &str = "relay.test";

/// The DKIM selector and domain of the test key.
pub const DKIM_SELECTOR: &str = "sel";
pub const DKIM_DOMAIN: &str = "signed.test";

/// A test-only Ed25519 key pair (the 32-byte seed and the public key, base64), generated for
/// these tests and published nowhere but in the dnsmasq zone below.
const DKIM_PRIVATE_KEY: &str = "2pyEWwx8r6act9t8fJATayTD2X70hxzzfkOinhBKjI4=";
const DKIM_PUBLIC_KEY: &str = "gfdoS0qNtFzr/HQYub28in2qKnxKt4Hb25CvKcUj9gU=";

/// The whole `test.` zone as dnsmasq options: authoritative for every name below `test`, so
/// that a DMARC tree walk up to `_dmarc.test` gets a real NXDOMAIN rather than a refusal.
///
/// - `spf-pass.test` lets 127.0.0.1 send, `spf-fail.test` does not (`-all`), `spf-soft.test`
///   soft-fails everyone (`~all`); all three publish DMARC `p=reject`.
/// - `signed.test` publishes the DKIM key and DMARC `p=reject`, and no SPF record.
pub fn zone() -> Vec<String> {
    let mut options = authoritative_zone("test");
    options.extend([
        txt_record("spf-pass.test", "v=spf1 ip4:127.0.0.1 -all"),
        txt_record("spf-fail.test", "v=spf1 ip4:192.0.2.1 -all"),
        txt_record("spf-soft.test", "v=spf1 ~all"),
        txt_record("_dmarc.spf-pass.test", "v=DMARC1; p=reject"),
        txt_record("_dmarc.spf-fail.test", "v=DMARC1; p=reject"),
        txt_record("_dmarc.spf-soft.test", "v=DMARC1; p=reject"),
        txt_record(
            &format!("{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}"),
            &format!("v=DKIM1; k=ed25519; p={DKIM_PUBLIC_KEY}"),
        ),
        txt_record(&format!("_dmarc.{DKIM_DOMAIN}"), "v=DMARC1; p=reject"),
    ]);
    options
}

/// A small message with CRLF line endings.
pub fn message(from: &str, subject: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "{extra_headers}From: <{from}>\r\nTo: <user@example.test>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@client.test>\r\n\r\nHello from the verification tests.\r\n\
         A second line.\r\n"
    )
    .into_bytes()
}

/// `message` with a DKIM-Signature made by dkimpy with the test key.
pub fn dkim_signed(message: &[u8]) -> Vec<u8> {
    let script = format!(
        "import sys, dkim\n\
         message = sys.stdin.buffer.read()\n\
         signature = dkim.sign(message, b'{DKIM_SELECTOR}', b'{DKIM_DOMAIN}', \
         b'{DKIM_PRIVATE_KEY}', signature_algorithm=b'ed25519-sha256', \
         include_headers=[b'from', b'to', b'subject', b'message-id'])\n\
         sys.stdout.buffer.write(signature)\n"
    );
    let mut child = Command::new(SYSTEM_PYTHON)
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {SYSTEM_PYTHON}: {error}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(message)
        .expect("write the message to dkimpy");
    let output = child.wait_with_output().expect("dkimpy output");
    assert!(
        output.status.success(),
        "dkimpy failed (install the Debian packages python3-dkim and python3-nacl): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut signed = output.stdout;
    assert!(signed.starts_with(b"DKIM-Signature: "), "no signature");
    signed.extend_from_slice(message);
    signed
}

/// Every `Authentication-Results:` field of a message's header section, unfolded.
pub fn results_fields(message: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let header = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut fields: Vec<String> = Vec::new();
    for line in header.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            fields.push(line.to_owned());
        }
    }
    fields
        .into_iter()
        .filter(|field| {
            field
                .to_ascii_lowercase()
                .starts_with("authentication-results:")
        })
        .collect()
}

/// The results (`spf=pass ...`, `dkim=fail ...`) of our own field, which must come first in
/// the message; `None` when the message has no field of ours on top.
pub fn our_results(message: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(message);
    if !text.starts_with(&format!("Authentication-Results: {AUTHSERV_ID};")) {
        return None;
    }
    let first = results_fields(message).into_iter().next()?;
    Some(
        first
            .split(';')
            .skip(1)
            .map(|result| result.trim().to_owned())
            .collect(),
    )
}

/// The one result of `results` for `method` whose text contains `property`, e.g.
/// `("spf", "smtp.mailfrom=")`.
pub fn result_of(results: &[String], method: &str, property: &str) -> String {
    let prefix = format!("{method}=");
    let found: Vec<&String> = results
        .iter()
        .filter(|result| result.starts_with(&prefix) && result.contains(property))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {method} result with {property:?} in {results:?}"
    );
    found[0].clone()
}
