//! Scenario: relay access. A client in `allow_networks` may send anywhere; any other client
//! only to `local_domains`; everything else is `554 5.7.1`.

mod common;

use common::{Options, Relay};

#[test]
fn outsider_may_send_to_local_domains_only() {
    let relay = Relay::start(Options {
        relay: Some("allow_networks = []\nlocal_domains = [\"example.com\", \"*.example.org\"]"),
        // An outsider's mail would be verified through the system's DNS, which tests never
        // use; verification has its own scenarios (inbound_verification*.rs).
        extra: "[verification]\nenabled = false\n".to_owned(),
        ..Options::default()
    });
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);

    let denied = client.command("RCPT TO:<victim@elsewhere.test>");
    assert_eq!(denied.code, 554, "{denied:?}");
    assert_eq!(denied.enhanced(), "5.7.1");

    assert_eq!(client.command("RCPT TO:<user@EXAMPLE.com>").code, 250);
    assert_eq!(client.command("RCPT TO:<user@mx.example.org>").code, 250);
    assert_eq!(client.command("RCPT TO:<user@example.org>").code, 554);
    assert_eq!(client.command("RCPT TO:<postmaster>").code, 250);

    assert_eq!(client.command("DATA").code, 354);
    client.send(b"hi\r\n.\r\n");
    assert_eq!(client.reply().code, 250);
    let stored = relay.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].envelope.len(), 4, "{:?}", stored[0].envelope);
}

#[test]
fn client_in_allow_networks_may_relay_anywhere() {
    let relay = Relay::start(Options {
        relay: Some("allow_networks = [\"127.0.0.0/8\"]"),
        ..Options::default()
    });
    let mut client = relay.connect();
    let reply = client.send_message("s@client.test", &["someone@anywhere.test"], b"x\r\n");
    assert_eq!(reply.code, 250, "{reply:?}");
}
