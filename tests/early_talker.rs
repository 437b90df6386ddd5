//! Scenario: a client that talks before the greeting (RFC 5321 §3.1) is refused.

mod common;

use common::{Client, Options, Relay};

#[test]
fn client_that_talks_first_gets_554_and_is_disconnected() {
    let relay = Relay::start(Options {
        smtp: "greeting_delay = \"300ms\"",
        ..Options::default()
    });
    let mut client = Client::connect(relay.address);
    client.send(b"EHLO impatient.test\r\n");
    let reply = client.reply();
    assert_eq!(reply.code, 554, "{reply:?}");
    assert!(client.is_closed());

    // A patient client is greeted normally.
    let mut patient = relay.connect();
    assert_eq!(patient.command("EHLO patient.test").code, 250);
}
