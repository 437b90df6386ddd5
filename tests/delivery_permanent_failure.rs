//! Scenario: the next hop refuses one recipient with 5xx and takes the other; the refused one
//! fails at once (no retry), the other is delivered, and the queue ends empty.

mod common;

use std::time::Duration;

use common::next_hop::FaultyHop;
use common::{eventually, smarthost_route, Options, Relay};

#[test]
fn a_5xx_fails_that_recipient_only() {
    let hop = FaultyHop::start(&["--rcpt", "550:1"]);
    let relay = Relay::start(Options {
        routes: Some(smarthost_route(hop.address)),
        delivery: "retry_schedule = [\"1s\"]".into(),
        ..Options::default()
    });

    let mut client = relay.connect();
    let body = b"X-Test-Id: partial-1\r\n\r\nbody\r\n";
    let recipients = ["refused@example.com", "taken@example.com"];
    assert_eq!(
        client.send_message("s@client.test", &recipients, body).code,
        250
    );

    let accepted = hop.wait_for(1, Duration::from_secs(20));
    assert_eq!(accepted.len(), 1, "not delivered:\n{}", relay.log());
    assert_eq!(accepted[0].rcpt_tos, ["taken@example.com"]);

    assert!(eventually(Duration::from_secs(5), || relay
        .stored()
        .is_empty()));
    let log = relay.log();
    assert_eq!(log.matches("status=\"bounced\"").count(), 1, "{log}");
    assert!(
        log.contains("to=refused@example.com") && log.contains("dsn=5.0.0"),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hop.accepted().len(), 1, "the refused recipient was retried");
}
