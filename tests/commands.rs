//! Scenario: the small commands and the error paths a client can walk into: VRFY without
//! disclosure, HELP, NOOP, RSET, unknown verbs, bad sequences, and the bad-command limit.

mod common;

use common::{Options, Relay};

#[test]
fn small_commands_answer_as_the_rfc_says() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(client.command("VRFY postmaster").code, 252);
    assert_eq!(client.command("VRFY nobody-here").code, 252);
    assert_eq!(client.command("HELP").code, 214);
    assert_eq!(client.command("NOOP").code, 250);
    assert_eq!(client.command("RSET").code, 250);
    assert_eq!(client.command("QUIT").code, 221);
}

#[test]
fn errors_get_the_right_codes() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    assert_eq!(
        client.command("MAIL FROM:<s@client.test>").code,
        503,
        "MAIL before EHLO"
    );
    assert_eq!(client.command("EHLO client.test").code, 250);
    assert_eq!(
        client.command("RCPT TO:<r@example.com>").code,
        503,
        "RCPT before MAIL"
    );
    assert_eq!(client.command("DATA").code, 503, "DATA before MAIL");
    assert_eq!(client.command("FROB").code, 500);
    assert_eq!(
        client.command("MAIL FROM:<s@client.test> BOGUS=1").code,
        555
    );
    assert_eq!(client.command("MAIL FROM:s@client.test").code, 501);
    assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
    assert_eq!(client.command("DATA").code, 554, "DATA without recipients");
}

#[test]
fn too_many_bad_commands_end_the_session() {
    let relay = Relay::start(Options {
        smtp: "bad_commands_max = 3",
        ..Options::default()
    });
    let mut client = relay.connect();
    client.send(b"FROB\r\nFROB\r\nFROB\r\n");
    let codes: Vec<u16> = (0..3).map(|_| client.reply().code).collect();
    assert_eq!(codes, [500, 500, 500]);
    // The third error reaches the limit: its reply is followed by the 421.
    let last = client.reply();
    assert_eq!(last.code, 421, "{last:?}");
    assert!(client.is_closed());
}
