//! Scenario: BDAT (RFC 3030 CHUNKING), with LAST, zero-length chunks, and chunk contents that
//! look like commands or a DATA terminator — which must stay body bytes.

mod common;

use common::{Options, Relay};

#[test]
fn chunks_are_counted_exactly_and_stored_verbatim() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
    assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);

    let first = b"Subject: chunked\r\n\r\nline one\r\n.\r\nMAIL FROM:<evil@x>\r\n";
    client.send(format!("BDAT {}\r\n", first.len()).as_bytes());
    client.send(first);
    let reply = client.reply();
    assert_eq!(reply.code, 250, "{reply:?}");

    assert_eq!(client.command("BDAT 0").code, 250);

    let last = b"..two dots stay two\r\n";
    client.send(format!("BDAT {} LAST\r\n", last.len()).as_bytes());
    client.send(last);
    let reply = client.reply();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(reply.enhanced(), "2.0.0");

    let stored = relay.stored();
    assert_eq!(stored.len(), 1);
    let mut expected = first.to_vec();
    expected.extend_from_slice(last);
    assert_eq!(stored[0].body_after_received(), expected);
}

#[test]
fn zero_length_last_chunk_ends_the_message() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command("MAIL FROM:<>").code, 250);
    assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);
    client.send(b"BDAT 6\r\nhello\n");
    assert_eq!(client.reply().code, 250);
    assert_eq!(client.command("BDAT 0 LAST").code, 250);

    let stored = relay.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body_after_received(), b"hello\n");
    assert_eq!(stored[0].envelope[0], "MAIL FROM:<>");
}

#[test]
fn rset_between_chunks_discards_the_message() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
    assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);
    client.send(b"BDAT 5\r\nabcde");
    assert_eq!(client.reply().code, 250);
    assert_eq!(client.command("RSET").code, 250);
    assert_eq!(client.command("QUIT").code, 221);
    assert!(relay.stored().is_empty());
}

#[test]
fn data_after_bdat_is_a_bad_sequence() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
    assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);
    client.send(b"BDAT 3\r\nabc");
    assert_eq!(client.reply().code, 250);
    assert_eq!(client.command("DATA").code, 503);
}
