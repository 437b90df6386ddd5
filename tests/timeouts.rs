//! Scenario: one timeout per session phase (RFC 5321 §4.5.3.2): waiting for a command, and
//! waiting for the next block of message data. Both end the session with `421 4.4.2`, and a
//! message cut off by a timeout is not stored.

mod common;

use common::{Options, Relay};

fn short_timeouts() -> Options {
    Options {
        smtp: "command_timeout = \"1s\"\ndata_timeout = \"1s\"",
        ..Options::default()
    }
}

#[test]
fn idle_client_is_told_421_after_the_command_timeout() {
    let relay = Relay::start(short_timeouts());
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    let reply = client.reply(); // Nothing sent: the next thing to arrive is the timeout.
    assert_eq!(reply.code, 421, "{reply:?}");
    assert_eq!(reply.enhanced(), "4.4.2");
    assert!(client.is_closed());
}

#[test]
fn stalled_data_is_told_421_and_nothing_is_stored() {
    let relay = Relay::start(short_timeouts());
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
    assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);
    assert_eq!(client.command("DATA").code, 354);
    client.send(b"Subject: half\r\n\r\nand then nothing");
    let reply = client.reply();
    assert_eq!(reply.code, 421, "{reply:?}");
    assert!(client.is_closed());
    assert!(relay.stored().is_empty());
}
