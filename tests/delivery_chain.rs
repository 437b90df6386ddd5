//! Scenario: one postern relays to another. The second offers CHUNKING, so the first sends with
//! BDAT; a message large enough to be stored as BODY records (1 MiB) and a small inline one
//! arrive byte for byte, with one more Received header each, and dots intact.

mod common;

use std::time::Duration;

use common::{eventually, smarthost_route, Options, Relay};

#[test]
fn a_relay_chain_preserves_every_byte() {
    let last = Relay::start(Options::default());
    let first = Relay::start(Options {
        routes: Some(smarthost_route(last.address)),
        ..Options::default()
    });

    let small =
        b"X-Test-Id: small\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\nend\r\n".to_vec();
    let mut large = b"X-Test-Id: large\r\nSubject: big\r\n\r\n".to_vec();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    while large.len() < 1 << 20 {
        large.extend_from_slice(line);
    }
    let stuffed = |body: &[u8]| {
        // The test client sends raw DATA, so it stuffs leading dots itself.
        String::from_utf8_lossy(body)
            .replace("\r\n.", "\r\n..")
            .into_bytes()
    };
    let mut client = first.connect();
    for body in [&small, &large] {
        let reply = client.send_message("s@client.test", &["r@example.com"], &stuffed(body));
        assert_eq!(reply.code, 250, "{reply:?}");
    }

    assert!(
        eventually(Duration::from_secs(20), || last.stored().len() == 2),
        "first relay:\n{}\nlast relay:\n{}",
        first.log(),
        last.log()
    );
    assert!(eventually(Duration::from_secs(5), || first
        .stored()
        .is_empty()));

    for stored in last.stored() {
        let arrived = stored.body_after_received();
        // The first relay's Received header sits between ours and the original message.
        let needle = b"X-Test-Id: ";
        let start = arrived
            .windows(needle.len())
            .position(|window| window == needle)
            .expect("the test id header arrived");
        let original = &arrived[start..];
        let expected = if original.starts_with(b"X-Test-Id: small") {
            &small
        } else {
            &large
        };
        assert!(
            arrived.starts_with(b"Received: from client.test"),
            "no Received from the first relay"
        );
        assert!(
            original == expected.as_slice(),
            "content changed on the way: {} bytes arrived, {} sent",
            original.len(),
            expected.len()
        );
    }
}

#[test]
fn dsn_parameters_travel_to_a_hop_that_offers_dsn() {
    let last = Relay::start(Options::default());
    let first = Relay::start(Options {
        routes: Some(smarthost_route(last.address)),
        ..Options::default()
    });

    let mut client = first.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    let mail = client.command("MAIL FROM:<s@client.test> RET=HDRS ENVID=env+2B1");
    assert_eq!(mail.code, 250, "{mail:?}");
    let rcpt =
        client.command("RCPT TO:<r@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;r@example.com");
    assert_eq!(rcpt.code, 250, "{rcpt:?}");
    assert_eq!(client.command("DATA").code, 354);
    client.send(b"Subject: dsn\r\n\r\nbody\r\n.\r\n");
    assert_eq!(client.reply().code, 250);

    assert!(
        eventually(Duration::from_secs(20), || last.stored().len() == 1),
        "{}",
        first.log()
    );
    let envelope = last.stored()[0].envelope.join("\n");
    assert!(
        envelope.contains("RET=HDRS") && envelope.contains("ENVID=env+2B1"),
        "{envelope}"
    );
    assert!(
        envelope.contains("NOTIFY=SUCCESS,DELAY")
            && envelope.contains("ORCPT=rfc822;r@example.com"),
        "{envelope}"
    );
}
