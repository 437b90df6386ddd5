//! Scenario: DKIM signing at ingest. A trusted client's messages whose From domain has keys get
//! one signature per key (rsa-sha256 and ed25519-sha256 here), and dkimpy verifies both, whatever
//! the shape of the message: lines near the 998-octet limit, 8-bit text, trailing whitespace and
//! blank lines, an empty body, a body without a final CRLF, several messages pipelined in one
//! write, BDAT chunks cut inside the header and inside the CRLF that ends it. A message from
//! another domain, and every message of an untrusted client, is stored unsigned. Tampering with
//! a signed message (an added From, a changed body) makes verification fail, which shows the
//! check can fail. Last, the signatures survive delivery to the next hop.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::dkim::{signature_fields, verify, Keys};
use common::{eventually, smarthost_route, Client, Options, Relay};

fn both_keys() -> Keys {
    Keys::generate(
        "example.com",
        &[("rsa2026", "rsa-sha256"), ("ed2026", "ed25519-sha256")],
    )
}

fn signing_relay(keys: &Keys) -> Relay {
    Relay::start(Options {
        extra: keys.config.clone(),
        ..Options::default()
    })
}

/// The stored messages by their X-Test-Id.
fn stored_by_id(relay: &Relay) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    for stored in relay.stored() {
        let text = stored.message_text();
        let id = text
            .lines()
            .find_map(|line| line.strip_prefix("X-Test-Id: "))
            .expect("every test message has an X-Test-Id")
            .to_owned();
        found.insert(id, stored.message);
    }
    found
}

/// Asserts that `message` carries exactly one valid signature of each algorithm, From
/// oversigned.
fn assert_signed_twice(keys: &Keys, id: &str, message: &[u8]) {
    let verdicts = &verify(keys, &[message])[0];
    let mut algorithms: Vec<&str> = verdicts
        .iter()
        .map(|verdict| verdict.algorithm.as_deref().unwrap_or("?"))
        .collect();
    algorithms.sort_unstable();
    assert_eq!(
        algorithms,
        ["ed25519-sha256", "rsa-sha256"],
        "{id}: {verdicts:?}"
    );
    for verdict in verdicts {
        assert!(
            verdict.verified && verdict.domain.as_deref() == Some("example.com"),
            "{id}: {verdict:?}\n{}",
            String::from_utf8_lossy(message)
        );
    }
    for field in signature_fields(message) {
        let compact = field.replace(' ', "");
        assert!(
            compact.contains("h=from:from:"),
            "{id}: From not oversigned: {field}"
        );
        assert!(
            compact.contains("c=relaxed/relaxed") && compact.contains(";t="),
            "{field}"
        );
    }
}

fn message(id: &str, extra_header: &str, body: &str) -> String {
    format!(
        "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: test {id}\r\n\
         Date: Fri, 04 Dec 2026 02:00:00 +0000\r\nMessage-ID: <{id}@example.com>\r\n\
         X-Test-Id: {id}\r\n{extra_header}\r\n{body}"
    )
}

fn send_data(client: &mut Client, mail_from: &str, content: &str) {
    let stuffed = content.replace("\r\n.", "\r\n..");
    let reply = client.send_message(mail_from, &["bob@example.com"], stuffed.as_bytes());
    assert_eq!(reply.code, 250, "{reply:?}");
}

#[test]
fn trusted_mail_is_signed_with_both_algorithms_whatever_its_shape() {
    let keys = both_keys();
    let relay = signing_relay(&keys);
    let mut client = relay.connect();

    let long_line = "x".repeat(990) + " \t end";
    assert_eq!(long_line.len(), 996);
    let long_subject = format!("Subject-Extra: {}\r\n", "word ".repeat(190).trim_end());
    send_data(
        &mut client,
        "alice@example.com",
        &message(
            "long",
            &long_subject,
            &format!("{long_line}\r\n{long_line}\r\n"),
        ),
    );
    send_data(
        &mut client,
        "alice@example.com",
        &message(
            "trailing",
            "Cc: carol@example.com,\r\n  dave@example.com\r\nReply-To: <r@example.com>\r\n\
             In-Reply-To: <a@b>\r\nReferences: <a@b>\r\n  <c@d>\r\n",
            "trailing spaces   \r\n\tindented \t\ttabs\t\r\n.dot line\r\n\r\n  \r\n\r\n\r\n",
        ),
    );
    send_data(&mut client, "alice@example.com", &message("empty", "", ""));

    // 8-bit text, declared with BODY=8BITMIME (RFC 6152).
    assert_eq!(
        client
            .command("MAIL FROM:<alice@example.com> BODY=8BITMIME")
            .code,
        250
    );
    assert_eq!(client.command("RCPT TO:<bob@example.com>").code, 250);
    assert_eq!(client.command("DATA").code, 354);
    let eight_bit = message(
        "8bit",
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n",
        "Gr\u{fc}\u{df}e aus K\u{f6}ln \u{2014} caf\u{e9}  na\u{ef}ve\r\n\u{1f600}\r\n",
    );
    client.send(eight_bit.as_bytes());
    client.send(b".\r\n");
    assert_eq!(client.reply().code, 250);

    // Three transactions in one write (RFC 2920).
    let mut pipelined = String::new();
    for index in 0..3 {
        pipelined.push_str(&format!(
            "MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n{}.\r\n",
            message(
                &format!("pipelined-{index}"),
                "",
                &format!("message {index}\r\n")
            )
        ));
    }
    client.send(pipelined.as_bytes());
    let codes: Vec<u16> = (0..12).map(|_| client.reply().code).collect();
    assert_eq!(codes, [250, 250, 354, 250].repeat(3));

    // BDAT (RFC 3030): chunks cut inside a header field and between the CR and LF that end the
    // header section; the last chunk has no final CRLF.
    let content = message("bdat", "", "chunked body\r\nno final line break");
    let header_end = content.find("\r\n\r\n").unwrap() + 3;
    let cuts = [0, 7, header_end, header_end + 5, content.len()];
    assert_eq!(client.command("MAIL FROM:<alice@example.com>").code, 250);
    assert_eq!(client.command("RCPT TO:<bob@example.com>").code, 250);
    for pair in cuts.windows(2) {
        let chunk = &content[pair[0]..pair[1]];
        let last = if pair[1] == content.len() {
            " LAST"
        } else {
            ""
        };
        client.send(format!("BDAT {}{last}\r\n{chunk}", chunk.len()).as_bytes());
        assert_eq!(client.reply().code, 250);
    }

    // A From domain without keys: stored, not signed.
    let other = message("other", "", "hello\r\n").replace("alice@example.com>", "a@other.test>");
    send_data(&mut client, "a@other.test", &other);
    assert_eq!(client.command("QUIT").code, 221);

    let stored = stored_by_id(&relay);
    let signed = [
        "long",
        "trailing",
        "empty",
        "8bit",
        "pipelined-0",
        "pipelined-1",
        "pipelined-2",
        "bdat",
    ];
    assert_eq!(stored.len(), signed.len() + 1, "{:?}", stored.keys());
    for id in signed {
        assert_signed_twice(&keys, id, &stored[id]);
    }
    assert!(
        signature_fields(&stored["other"]).is_empty(),
        "a domain without keys was signed"
    );
    assert!(stored["other"].starts_with(b"Received: "));
}

#[test]
fn tampering_with_a_signed_message_breaks_both_signatures() {
    let keys = both_keys();
    let relay = signing_relay(&keys);
    let mut client = relay.connect();
    send_data(
        &mut client,
        "alice@example.com",
        &message("tamper", "", "pay 10 euros\r\n"),
    );
    let stored = stored_by_id(&relay);
    let original = &stored["tamper"];
    assert_signed_twice(&keys, "tamper", original);

    let text = String::from_utf8_lossy(original).into_owned();
    let received = text.find("Received: ").expect("our Received header");
    let added_from = format!(
        "{}From: Mallory <ceo@example.com>\r\n{}",
        &text[..received],
        &text[received..]
    );
    let changed_body = text.replace("pay 10 euros", "pay 99 euros");
    let changed_subject = text.replace("Subject: test tamper", "Subject: test tampered");
    let verdicts = verify(
        &keys,
        &[
            added_from.as_bytes(),
            changed_body.as_bytes(),
            changed_subject.as_bytes(),
        ],
    );
    for (case, verdicts) in ["added From", "changed body", "changed Subject"]
        .iter()
        .zip(&verdicts)
    {
        assert_eq!(verdicts.len(), 2, "{case}: {verdicts:?}");
        assert!(
            verdicts.iter().all(|verdict| !verdict.verified),
            "{case} still verifies: {verdicts:?}"
        );
    }
}

#[test]
fn untrusted_clients_are_never_signed() {
    let keys = both_keys();
    let relay = Relay::start(Options {
        relay: Some("allow_networks = []\nlocal_domains = [\"example.com\"]"),
        // Inbound verification would ask the system's DNS about this untrusted client's mail;
        // it has its own scenarios, and signing is what is checked here.
        extra: format!("[verification]\nenabled = false\n\n{}", keys.config),
        ..Options::default()
    });
    let mut client = relay.connect();
    // A client outside allow_networks may still deliver to a local domain, even with our own
    // domain in From (a forgery, as far as we can tell): it must not come out signed.
    send_data(
        &mut client,
        "alice@example.com",
        &message("untrusted", "", "hello\r\n"),
    );
    let stored = stored_by_id(&relay);
    let message = &stored["untrusted"];
    assert!(
        signature_fields(message).is_empty(),
        "an untrusted client's message was signed:\n{}",
        String::from_utf8_lossy(message)
    );
    assert!(message.starts_with(b"Received: "));
}

#[test]
fn signatures_survive_delivery_to_the_next_hop() {
    let keys = both_keys();
    let next_hop = Relay::start(Options::default());
    let signing = Relay::start(Options {
        routes: Some(smarthost_route(next_hop.address)),
        extra: keys.config.clone(),
        ..Options::default()
    });

    // Large enough to be stored as BODY records rather than inside the COMMIT, with dots at
    // line starts that delivery must stuff again.
    let mut body = String::new();
    while body.len() < 300 * 1024 {
        body.push_str(".starts with a dot, ends with spaces  \r\n");
        body.push_str("0123456789 abcdefghijklmnopqrstuvwxyz \t 0123456789\r\n");
    }
    let mut client = signing.connect();
    send_data(
        &mut client,
        "alice@example.com",
        &message("large", "", &body),
    );
    send_data(
        &mut client,
        "alice@example.com",
        &message("small", "", "short\r\n"),
    );
    assert_eq!(client.command("QUIT").code, 221);

    assert!(
        eventually(Duration::from_secs(30), || next_hop.stored().len() == 2),
        "signing relay:\n{}\nnext hop:\n{}",
        signing.log(),
        next_hop.log()
    );
    let delivered = stored_by_id(&next_hop);
    for id in ["large", "small"] {
        let message = &delivered[id];
        assert!(
            message.starts_with(b"Received: "),
            "the next hop's Received first"
        );
        assert_signed_twice(&keys, id, message);
    }
}
