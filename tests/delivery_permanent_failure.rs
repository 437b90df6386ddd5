//! Scenario: the next hop refuses one recipient with 5xx and takes the other; the refused one
//! fails at once (no retry) and is reported to the sender, the other is delivered, and the
//! queue ends empty.

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

    // The message for the taken recipient, and the failure report to the sender.
    let accepted = hop.wait_for(2, Duration::from_secs(20));
    assert_eq!(accepted.len(), 2, "{accepted:?}\n{}", relay.log());
    let delivered = accepted
        .iter()
        .find(|m| m.id.as_deref() == Some("partial-1"))
        .expect("the message arrived");
    assert_eq!(delivered.rcpt_tos, ["taken@example.com"]);
    let report = accepted
        .iter()
        .find(|m| m.mail_from == "<>")
        .expect("a report");
    assert_eq!(report.rcpt_tos, ["s@client.test"]);

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
    assert_eq!(hop.accepted().len(), 2, "the refused recipient was retried");
}
