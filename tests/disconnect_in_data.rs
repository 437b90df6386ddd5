//! Scenario: the client disappears in the middle of DATA. Nothing is stored (its body
//! records are garbage that recovery ignores), and the relay carries on serving others.

mod common;

use common::{Options, Relay};

#[test]
fn abrupt_disconnect_inside_data_stores_nothing() {
    let relay = Relay::start(Options::default());
    {
        let mut client = relay.connect();
        assert_eq!(client.command("EHLO client.test").code, 250);
        assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
        assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);
        assert_eq!(client.command("DATA").code, 354);
        // More than one write batch, so the store has really started a file.
        let chunk = "y".repeat(998) + "\r\n";
        client.send(chunk.repeat(400).as_bytes());
    } // dropped: the connection is reset mid-body

    let mut next = relay.connect();
    let reply = next.send_message("s@client.test", &["r@example.com"], b"after\r\n");
    assert_eq!(reply.code, 250);

    let stored = relay.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body_after_received(), b"after\r\n");
}
