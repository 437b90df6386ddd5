//! Scenario: the next hop answers 4xx at first (to RCPT, then at the end of data); the relay
//! defers, retries on its schedule, and the message arrives exactly once.

mod common;

use std::time::Duration;

use common::next_hop::FaultyHop;
use common::{eventually, smarthost_route, Options, Relay};

#[test]
fn temporary_refusals_are_retried_until_delivered() {
    let hop = FaultyHop::start(&["--rcpt", "451:1", "--data", "452:1"]);
    let relay = Relay::start(Options {
        routes: Some(smarthost_route(hop.address)),
        delivery: "retry_schedule = [\"1s\"]".into(),
        ..Options::default()
    });

    let mut client = relay.connect();
    let body = b"X-Test-Id: retry-1\r\nSubject: retry\r\n\r\nbody\r\n";
    assert_eq!(
        client
            .send_message("s@client.test", &["r@example.com"], body)
            .code,
        250
    );

    let accepted = hop.wait_for(1, Duration::from_secs(30));
    assert_eq!(accepted.len(), 1, "not delivered:\n{}", relay.log());
    assert_eq!(accepted[0].id.as_deref(), Some("retry-1"));
    assert_eq!(accepted[0].rcpt_tos, ["r@example.com"]);

    // First attempt: RCPT 451; second: end of data 452; third: delivered.
    let log = relay.log();
    assert_eq!(log.matches("status=\"deferred\"").count(), 2, "{log}");
    assert!(
        log.contains("attempt=3") && log.contains("status=\"sent\""),
        "{log}"
    );
    assert!(eventually(Duration::from_secs(5), || relay
        .stored()
        .is_empty()));

    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hop.accepted().len(), 1, "delivered more than once");
}
