//! Scenario: the message size limit (RFC 1870), declared and streamed.
//!
//! A declared SIZE over the limit is refused at MAIL; a body that grows over the limit while it
//! streams is read to its end, refused with `552 5.3.4`, and nothing of it is stored; the session
//! stays usable for the next transaction.

mod common;

use common::{Options, Relay};

fn small_limit() -> Options {
    Options {
        smtp: "message_size_max = \"64KiB\"",
        ..Options::default()
    }
}

#[test]
fn declared_size_over_the_limit_is_refused_at_mail() {
    let relay = Relay::start(small_limit());
    let mut client = relay.connect();
    let ehlo = client.command("EHLO client.test");
    assert!(ehlo.lines.iter().any(|l| l == "SIZE 65536"), "{ehlo:?}");
    let reply = client.command("MAIL FROM:<s@client.test> SIZE=65537");
    assert_eq!(reply.code, 552, "{reply:?}");
    assert_eq!(reply.enhanced(), "5.3.4");
    assert_eq!(
        client.command("MAIL FROM:<s@client.test> SIZE=65536").code,
        250
    );
}

#[test]
fn oversize_body_is_refused_after_the_end_and_not_stored() {
    let relay = Relay::start(small_limit());
    let mut client = relay.connect();
    let line = "x".repeat(78) + "\r\n";
    let body = line.repeat(2000); // 160,000 bytes
    let reply = client.send_message("s@client.test", &["r@example.com"], body.as_bytes());
    assert_eq!(reply.code, 552, "{reply:?}");
    assert_eq!(reply.enhanced(), "5.3.4");
    assert!(relay.stored().is_empty());

    let reply = client.send_message("s@client.test", &["r@example.com"], b"small\r\n");
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(relay.stored().len(), 1);
}

#[test]
fn oversize_bdat_chunk_is_consumed_and_refused() {
    let relay = Relay::start(small_limit());
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
    assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);
    let chunk = vec![b'a'; 70_000];
    client.send(format!("BDAT {} LAST\r\n", chunk.len()).as_bytes());
    client.send(&chunk);
    let reply = client.reply();
    assert_eq!(reply.code, 552, "{reply:?}");
    // The chunk's bytes were not taken for commands: the next command is answered normally.
    assert_eq!(client.command("RSET").code, 250);
    assert!(relay.stored().is_empty());
}
