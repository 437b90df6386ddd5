//! Scenario: a next hop with no ESMTP at all (Postfix's smtp-sink with `-e`). The relay falls
//! back to HELO and delivers 7-bit mail without PIPELINING; an 8-bit message fails with 5.6.3
//! (RFC 6152) and an SMTPUTF8 message with 5.6.7 (RFC 6531) instead of being sent as they are.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::next_hop::SmtpSink;
use common::{eventually, free_port, Options, Relay};

#[test]
fn a_hop_without_esmtp_gets_only_what_it_can_take() {
    let sink = SmtpSink::start_with(&["-e"]);
    // Failure reports to the sender's domain wait at a dead port, out of the way.
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let routes = format!(
        "[[route]]\ndomains = [\"client.test\"]\nsmarthost = \"{dead}\"\ntls = \"none\"\n\n\
         [[route]]\ndomains = [\"*\"]\nsmarthost = \"{}\"\ntls = \"none\"\n",
        sink.address
    );
    let relay = Relay::start(Options {
        routes: Some(routes),
        ..Options::default()
    });

    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    for (mail, body) in [
        (
            "MAIL FROM:<s@client.test>",
            "Subject: plain\r\n\r\nascii\r\n",
        ),
        (
            "MAIL FROM:<s@client.test> BODY=8BITMIME",
            "Subject: eight\r\n\r\nGr\u{fc}\u{df}e\r\n",
        ),
        (
            "MAIL FROM:<s@client.test> SMTPUTF8",
            "Subject: utf8\r\n\r\nbody\r\n",
        ),
    ] {
        assert_eq!(client.command(mail).code, 250, "{mail}");
        assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);
        assert_eq!(client.command("DATA").code, 354);
        client.send(format!("{body}.\r\n").as_bytes());
        assert_eq!(client.reply().code, 250);
    }

    let (_, messages) = sink.wait_for_messages(1, Duration::from_secs(20));
    assert_eq!(messages, 1, "{}", relay.log());
    assert!(
        eventually(Duration::from_secs(10), || {
            let log = relay.log();
            log.contains("dsn=5.6.3") && log.contains("dsn=5.6.7")
        }),
        "{}",
        relay.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sink.counts().1,
        1,
        "an 8-bit or SMTPUTF8 message reached the hop"
    );
}
