//! Scenario: a route demands TLS and its next hop offers none. The message stays deferred in
//! the queue and is never sent in clear text.

mod common;

use std::time::Duration;

use common::next_hop::FaultyHop;
use common::{Options, Relay};

#[test]
fn required_tls_never_falls_back_to_clear_text() {
    let hop = FaultyHop::start(&[]);
    let routes = format!(
        "[[route]]\ndomains = [\"*\"]\nsmarthost = \"{}\"\ntls = \"required\"\n",
        hop.address
    );
    let relay = Relay::start(Options {
        routes: Some(routes),
        delivery: "retry_schedule = [\"1s\"]".into(),
        ..Options::default()
    });

    let mut client = relay.connect();
    let body = b"X-Test-Id: tls-1\r\n\r\nsecret\r\n";
    assert_eq!(
        client
            .send_message("s@client.test", &["r@example.com"], body)
            .code,
        250
    );

    std::thread::sleep(Duration::from_secs(4));
    assert!(
        hop.accepted().is_empty(),
        "sent in clear text despite tls = required"
    );
    assert_eq!(relay.stored().len(), 1, "the message left the queue");
    let log = relay.log();
    assert!(log.contains("status=\"deferred\""), "{log}");
    assert!(log.contains("nothing was sent in clear text"), "{log}");
}
