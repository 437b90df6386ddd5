//! Scenario: mail from a client outside `allow_networks` is checked with SPF, DKIM and DMARC
//! against a real DNS server (dnsmasq on loopback, serving the `test.` zone of
//! `common::verification`), and the verdict is written into the message as
//! `Authentication-Results:`. Messages are signed by dkimpy, an implementation we did not
//! write. The stored messages are read with `postern spool export`, which renders exactly the
//! bytes delivery sends (the header prefix, then the stored content).
//!
//! Needs the Debian packages dnsmasq-base, python3-dkim and python3-nacl (`.ci/run` installs
//! them); without them these tests fail, they never skip.

mod common;

use common::dns_server::DnsServer;
use common::verification::{
    dkim_signed, message, our_results, result_of, results_fields, zone, AUTHSERV_ID,
};
use common::{Options, Relay};

/// Mail for `example.test` is taken from anyone; nobody may relay. 127.0.0.1 is untrusted.
const UNTRUSTED: &str = "allow_networks = []\nlocal_domains = [\"example.test\"]";

/// The same local domain, but 127.0.0.1 may relay: a trusted client.
const TRUSTED: &str = "allow_networks = [\"127.0.0.0/8\"]\nlocal_domains = [\"example.test\"]";

fn start(dns: &DnsServer, relay: &'static str, verification: &str) -> Relay {
    Relay::start(Options {
        relay: Some(relay),
        extra: format!(
            "[dns]\nservers = [\"{}\"]\n\n[verification]\n{verification}\n",
            dns.address
        ),
        ..Options::default()
    })
}

/// Sends one message and returns the stored form of the only message with `subject`.
fn send_and_read(relay: &Relay, mail_from: &str, body: &[u8], subject: &str) -> Vec<u8> {
    let reply = relay
        .connect()
        .send_message(mail_from, &["user@example.test"], body);
    assert_eq!(reply.code, 250, "{reply:?}");
    let stored: Vec<Vec<u8>> = relay
        .stored()
        .into_iter()
        .map(|stored| stored.message)
        .filter(|message| {
            String::from_utf8_lossy(message).contains(&format!("Subject: {subject}\r\n"))
        })
        .collect();
    assert_eq!(stored.len(), 1, "one stored message with subject {subject}");
    stored.into_iter().next().expect("one message")
}

#[test]
fn spf_pass_fail_and_softfail_are_recorded_with_dmarc() {
    let dns = DnsServer::start(zone());
    let relay = start(&dns, UNTRUSTED, "");

    let cases = [
        ("a@spf-pass.test", "spf-pass", "spf=pass", "dmarc=pass"),
        ("b@spf-fail.test", "spf-fail", "spf=fail", "dmarc=fail"),
        ("c@spf-soft.test", "spf-soft", "spf=softfail", "dmarc=fail"),
    ];
    for (mail_from, subject, spf, dmarc) in cases {
        let stored = send_and_read(&relay, mail_from, &message(mail_from, subject, ""), subject);
        let results = our_results(&stored).unwrap_or_else(|| {
            panic!(
                "no Authentication-Results of ours on top:\n{}",
                String::from_utf8_lossy(&stored)
            )
        });

        let mail_from_result = result_of(&results, "spf", "smtp.mailfrom=");
        assert!(mail_from_result.starts_with(spf), "{results:?}");
        assert!(mail_from_result.contains(mail_from), "{results:?}");
        let helo = result_of(&results, "spf", "smtp.helo=client.test");
        assert!(helo.starts_with("spf=none"), "{results:?}");
        assert!(result_of(&results, "dkim", "").starts_with("dkim=none"));
        let dmarc_result = result_of(&results, "dmarc", "header.from=");
        assert!(dmarc_result.starts_with(dmarc), "{results:?}");
        assert!(dmarc_result.contains("policy.dmarc=reject"), "{results:?}");
    }
}

#[test]
fn a_dkimpy_signature_passes_and_a_tampered_message_fails() {
    let dns = DnsServer::start(zone());
    let relay = start(&dns, UNTRUSTED, "");
    let from = "author@signed.test";

    let signed = dkim_signed(&message(from, "signed", ""));
    let stored = send_and_read(&relay, "bounces@signed.test", &signed, "signed");
    let results = our_results(&stored).expect("our results");
    let dkim = result_of(&results, "dkim", "");
    assert!(dkim.starts_with("dkim=pass"), "{results:?}");
    assert!(dkim.contains("signed.test"), "{results:?}");
    assert!(result_of(&results, "spf", "smtp.mailfrom=").starts_with("spf=none"));
    assert!(result_of(&results, "dmarc", "").starts_with("dmarc=pass"));

    // A signed header field changes: the signature no longer verifies (RFC 6376 §6.1.3).
    let text = String::from_utf8(dkim_signed(&message(from, "tampered", ""))).expect("ASCII");
    let tampered = text.replace("To: <user@example.test>", "To: <other@example.test>");
    let stored = send_and_read(
        &relay,
        "bounces@signed.test",
        tampered.as_bytes(),
        "tampered",
    );
    let results = our_results(&stored).expect("our results");
    assert!(
        result_of(&results, "dkim", "").starts_with("dkim=fail"),
        "{results:?}"
    );
    assert!(
        result_of(&results, "dmarc", "").starts_with("dmarc=fail"),
        "{results:?}"
    );

    // The body changes: its hash no longer matches, which mail-auth reports as `neutral`
    // (RFC 6376 §3.7 leaves the wording to the verifier); DMARC fails all the same.
    let text = String::from_utf8(dkim_signed(&message(from, "new-body", ""))).expect("ASCII");
    let tampered = text.replace("A second line.", "A second line, changed.");
    let stored = send_and_read(
        &relay,
        "bounces@signed.test",
        tampered.as_bytes(),
        "new-body",
    );
    let results = our_results(&stored).expect("our results");
    let dkim = result_of(&results, "dkim", "");
    assert!(
        dkim.starts_with("dkim=neutral") && dkim.contains("body hash"),
        "{results:?}"
    );
    assert!(
        result_of(&results, "dmarc", "").starts_with("dmarc=fail"),
        "{results:?}"
    );
}

#[test]
fn with_dmarc_reject_a_reject_policy_failure_gets_550_and_is_never_stored() {
    let dns = DnsServer::start(zone());
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let relay = start(
        &dns,
        UNTRUSTED,
        &format!("dmarc_reject = true\n\n[admin]\naddress = \"{admin}\""),
    );
    let from = "author@signed.test";

    let mut client = relay.connect();
    let text = String::from_utf8(dkim_signed(&message(from, "refused", ""))).expect("ASCII");
    let tampered = text.replace("Hello", "Goodbye");
    let reply = client.send_message(
        "bounces@signed.test",
        &["user@example.test"],
        tampered.as_bytes(),
    );
    assert_eq!(reply.code, 550, "{reply:?}");
    assert_eq!(reply.enhanced(), "5.7.1");

    // The session goes on, and mail that passes DMARC is still taken.
    let signed = dkim_signed(&message(from, "accepted", ""));
    assert_eq!(client.command("RSET").code, 250);
    let reply = client.send_message("bounces@signed.test", &["user@example.test"], &signed);
    assert_eq!(reply.code, 250, "{reply:?}");

    let stored = relay.stored();
    assert_eq!(stored.len(), 1, "only the passing message is stored");
    assert!(stored[0].message_text().contains("Subject: accepted\r\n"));
    assert_eq!(
        common::metric_total(admin, "postern_messages_verified_total"),
        2
    );
    assert_eq!(
        common::metric_total(admin, "postern_messages_refused_dmarc_total"),
        1
    );
}

#[test]
fn a_forged_result_with_our_id_is_removed_and_a_foreign_one_stays() {
    let dns = DnsServer::start(zone());
    let relay = start(&dns, UNTRUSTED, "");
    let forged = format!(
        "Authentication-Results: {}; spf=pass smtp.mailfrom=b@spf-fail.test;\r\n\
         \tdmarc=pass header.from=spf-fail.test\r\n\
         Authentication-Results: elsewhere.test; spf=pass smtp.mailfrom=b@spf-fail.test\r\n\
         authentication-results: (folded\r\n (and commented)) \"RELAY.TEST\"; dkim=pass\r\n",
        AUTHSERV_ID.to_ascii_uppercase()
    );
    let body = message("b@spf-fail.test", "forged", &forged);
    let stored = send_and_read(&relay, "b@spf-fail.test", &body, "forged");

    let fields = results_fields(&stored);
    assert_eq!(fields.len(), 2, "{fields:?}");
    assert!(fields[0].starts_with(&format!("Authentication-Results: {AUTHSERV_ID};")));
    assert_eq!(
        fields[1],
        "Authentication-Results: elsewhere.test; spf=pass smtp.mailfrom=b@spf-fail.test"
    );
    let results = our_results(&stored).expect("our results");
    assert!(result_of(&results, "spf", "smtp.mailfrom=").starts_with("spf=fail"));
    assert!(String::from_utf8_lossy(&stored).contains("Subject: forged\r\n"));
}

#[test]
fn a_trusted_client_is_not_verified_and_keeps_its_results() {
    let dns = DnsServer::start(zone());
    let relay = start(&dns, TRUSTED, "");
    let own = format!("Authentication-Results: {AUTHSERV_ID}; spf=pass\r\n");
    let body = message("b@spf-fail.test", "trusted", &own);
    let stored = send_and_read(&relay, "b@spf-fail.test", &body, "trusted");

    assert!(
        stored.starts_with(b"Received: "),
        "nothing is added before our Received"
    );
    let fields = results_fields(&stored);
    assert_eq!(
        fields,
        [format!("Authentication-Results: {AUTHSERV_ID}; spf=pass")]
    );
}
