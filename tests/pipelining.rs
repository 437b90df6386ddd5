//! Scenario: a whole transaction pipelined in one write (RFC 2920), then a plain one.
//!
//! Every reply must come back in order, the message must be stored exactly once with our
//! `Received:` header on top, and the envelope must hold both recipients.

mod common;

use common::{Options, Relay};

#[test]
fn pipelined_transaction_is_answered_in_order_and_stored_once() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();

    let ehlo = client.command("EHLO client.test");
    assert_eq!(ehlo.code, 250);
    for extension in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(
            ehlo.lines.iter().any(|l| l == extension),
            "{extension} in {ehlo:?}"
        );
    }
    assert!(
        ehlo.lines.iter().any(|l| l == "CHUNKING"),
        "CHUNKING in {ehlo:?}"
    );
    assert!(ehlo.lines.iter().any(|l| l == "DSN"), "DSN in {ehlo:?}");

    client.send(
        b"MAIL FROM:<sender@client.test>\r\n\
          RCPT TO:<one@example.com>\r\n\
          RCPT TO:<two@elsewhere.test> NOTIFY=FAILURE,DELAY\r\n\
          DATA\r\n\
          Subject: pipelined\r\n\r\nfirst line\r\n..leading dot\r\n.\r\n\
          NOOP\r\n",
    );
    let codes: Vec<u16> = (0..6).map(|_| client.reply().code).collect();
    assert_eq!(codes, [250, 250, 250, 354, 250, 250]);

    assert_eq!(client.command("QUIT").code, 221);
    assert!(client.is_closed());

    let stored = relay.stored();
    assert_eq!(stored.len(), 1, "exactly one message stored");
    let message = &stored[0];
    assert_eq!(message.envelope[0], "MAIL FROM:<sender@client.test>");
    assert_eq!(message.envelope[1], "RCPT TO:<one@example.com>");
    assert_eq!(
        message.envelope[2],
        "RCPT TO:<two@elsewhere.test> NOTIFY=FAILURE,DELAY"
    );
    assert!(message
        .message_text()
        .starts_with("Received: from client.test"));
    assert_eq!(
        message.body_after_received(),
        b"Subject: pipelined\r\n\r\nfirst line\r\n.leading dot\r\n"
    );
}

#[test]
fn two_pipelined_transactions_in_one_write_store_two_messages() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    client.send(
        b"EHLO client.test\r\n\
          MAIL FROM:<a@client.test>\r\nRCPT TO:<x@example.com>\r\nDATA\r\nfirst\r\n.\r\n\
          MAIL FROM:<b@client.test>\r\nRCPT TO:<y@example.com>\r\nDATA\r\nsecond\r\n.\r\n\
          QUIT\r\n",
    );
    let codes: Vec<u16> = (0..10).map(|_| client.reply().code).collect();
    assert_eq!(codes, [250, 250, 250, 354, 250, 250, 250, 354, 250, 221]);

    let mut bodies: Vec<Vec<u8>> = relay
        .stored()
        .iter()
        .map(|m| m.body_after_received())
        .collect();
    bodies.sort();
    assert_eq!(bodies, [b"first\r\n".to_vec(), b"second\r\n".to_vec()]);
}
