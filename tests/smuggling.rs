//! Scenario: SMTP smuggling (the CVE-2023-51764 class). Only `<CRLF>.<CRLF>` ends DATA.
//!
//! For each published variant of a fake terminator, the client smuggles a second transaction
//! behind it and ends with a real terminator. By default the relay refuses the whole message
//! (bare CR or LF) with one reply; with `bare_line_endings = "accept"` it stores one message that
//! contains the smuggled text. Either way there are never two messages, and no reply is ever
//! produced for the smuggled commands.

mod common;

use common::{Client, Options, Relay};

const FAKE_TERMINATORS: [&[u8]; 6] = [
    b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\r", b"\r\n.\n", b"\r.\r\n",
];

const SMUGGLED: &[u8] = b"MAIL FROM:<smuggled@attacker.test>\r\n\
    RCPT TO:<victim@example.com>\r\n\
    DATA\r\n\
    Subject: smuggled\r\n\r\nforged\r\n";

fn smuggle(client: &mut Client, fake_terminator: &[u8]) -> u16 {
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command("MAIL FROM:<honest@client.test>").code, 250);
    assert_eq!(client.command("RCPT TO:<someone@example.com>").code, 250);
    assert_eq!(client.command("DATA").code, 354);
    client.send(b"Subject: honest\r\n\r\nhello");
    client.send(fake_terminator);
    client.send(SMUGGLED);
    client.send(b"\r\n.\r\n");
    let end_of_data = client.reply().code;

    // The very next reply must belong to this NOOP: the smuggled commands got none.
    let noop = client.command("NOOP");
    assert_eq!(noop.code, 250, "a smuggled command was answered: {noop:?}");
    end_of_data
}

fn assert_nothing_smuggled(relay: &Relay) {
    for message in relay.stored() {
        assert!(
            !message
                .envelope
                .iter()
                .any(|line| line.contains("smuggled@attacker.test")),
            "a smuggled envelope was stored: {:?}",
            message.envelope
        );
    }
}

#[test]
fn every_fake_terminator_is_refused_by_default() {
    let relay = Relay::start(Options::default());
    for fake in FAKE_TERMINATORS {
        let mut client = relay.connect();
        let code = smuggle(&mut client, fake);
        assert_eq!(code, 550, "fake terminator {fake:?} should be refused");

        let reply = client.send_message("next@client.test", &["r@example.com"], b"ok\r\n");
        assert_eq!(
            reply.code, 250,
            "second transaction after {fake:?}: {reply:?}"
        );
    }
    let stored = relay.stored();
    assert_eq!(
        stored.len(),
        FAKE_TERMINATORS.len(),
        "only the honest second transactions"
    );
    assert_nothing_smuggled(&relay);
}

#[test]
fn accepted_bare_line_endings_still_make_one_message() {
    let relay = Relay::start(Options {
        smtp: "bare_line_endings = \"accept\"",
        ..Options::default()
    });
    for fake in FAKE_TERMINATORS {
        let mut client = relay.connect();
        let code = smuggle(&mut client, fake);
        assert_eq!(code, 250, "fake terminator {fake:?} in accept mode");
    }
    let stored = relay.stored();
    assert_eq!(
        stored.len(),
        FAKE_TERMINATORS.len(),
        "one message per attempt, never two"
    );
    for message in &stored {
        assert!(message.message_text().contains("smuggled@attacker.test"));
    }
    assert_nothing_smuggled(&relay);
}
