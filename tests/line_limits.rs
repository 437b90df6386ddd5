//! Scenario: line-length limits (RFC 5321 §4.5.3.1.4 and §4.5.3.1.6) and NUL bytes.

mod common;

use common::{Options, Relay};

#[test]
fn overlong_command_line_is_refused_and_the_session_continues() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    let long = format!("EHLO {}", "a".repeat(600));
    let reply = client.command(&long);
    assert_eq!(reply.code, 500, "{reply:?}");
    assert_eq!(client.command("EHLO client.test").code, 250);
}

#[test]
fn overlong_text_line_refuses_the_message() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    let body = format!("Subject: long\r\n\r\n{}\r\n", "b".repeat(1200));
    let reply = client.send_message("s@client.test", &["r@example.com"], body.as_bytes());
    assert_eq!(reply.code, 550, "{reply:?}");
    assert!(relay.stored().is_empty());
}

#[test]
fn nul_in_a_command_is_a_syntax_error() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    client.send(b"EHLO cli\0ent\r\n");
    assert_eq!(client.reply().code, 500);
    assert_eq!(client.command("NOOP").code, 250);
}

#[test]
fn nul_in_the_body_refuses_the_message() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    let reply = client.send_message("s@client.test", &["r@example.com"], b"a\0b\r\n");
    assert_eq!(reply.code, 550, "{reply:?}");
    assert!(relay.stored().is_empty());
}
