//! Scenario: a message that has already passed more relays than `received_max` allows is a mail
//! loop (RFC 5321 §6.3): it fails instead of being passed on.

mod common;

use std::time::Duration;

use common::next_hop::FaultyHop;
use common::{eventually, smarthost_route, Options, Relay};

#[test]
fn too_many_received_headers_fail_the_message() {
    let hop = FaultyHop::start(&[]);
    let relay = Relay::start(Options {
        routes: Some(smarthost_route(hop.address)),
        delivery: "received_max = 10".into(),
        ..Options::default()
    });

    // Ours makes eleven.
    let mut looped = String::new();
    for hop in 0..10 {
        looped.push_str(&format!(
            "Received: from hop{hop}.example by relay; Thu, 3 Dec 2026\r\n"
        ));
    }
    looped.push_str("X-Test-Id: loop-1\r\n\r\nbody\r\n");
    let mut client = relay.connect();
    assert_eq!(
        client
            .send_message("s@client.test", &["r@example.com"], looped.as_bytes())
            .code,
        250
    );

    assert!(
        eventually(Duration::from_secs(10), || relay
            .log()
            .contains("mail loop")),
        "{}",
        relay.log()
    );
    assert!(relay.log().contains("dsn=5.4.6"));

    let mut fine = relay.connect();
    let body = b"Received: from one.example\r\nX-Test-Id: fine-1\r\n\r\nbody\r\n";
    assert_eq!(
        fine.send_message("s@client.test", &["r@example.com"], body)
            .code,
        250
    );
    // The hop sees the fine message and the sender's failure report, never the looped one.
    let accepted = hop.wait_for(2, Duration::from_secs(10));
    let ids: Vec<Option<&str>> = accepted.iter().map(|m| m.id.as_deref()).collect();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert!(
        ids.contains(&Some("fine-1")) && !ids.contains(&Some("loop-1")),
        "{ids:?}"
    );
    assert!(
        accepted.iter().any(|m| m.mail_from == "<>"),
        "no failure report"
    );
}
