//! Scenario: the next hop cuts the connection after the data, before its reply, or never
//! replies at all. Neither is a delivery: the relay defers and delivers on the next attempt.

mod common;

use std::time::Duration;

use common::next_hop::FaultyHop;
use common::{smarthost_route, Options, Relay};

fn deliver_through(flags: &[&str], id: &str) -> (Relay, FaultyHop) {
    let hop = FaultyHop::start(flags);
    let relay = Relay::start(Options {
        routes: Some(smarthost_route(hop.address)),
        delivery: "retry_schedule = [\"1s\"]\ndata_done_timeout = \"2s\"".into(),
        ..Options::default()
    });
    let mut client = relay.connect();
    let body = format!("X-Test-Id: {id}\r\n\r\nbody\r\n");
    let reply = client.send_message("s@client.test", &["r@example.com"], body.as_bytes());
    assert_eq!(reply.code, 250);
    (relay, hop)
}

#[test]
fn a_connection_dropped_before_the_final_reply_is_retried() {
    let (relay, hop) = deliver_through(&["--drop-in-data", "1"], "drop-1");
    let accepted = hop.wait_for(1, Duration::from_secs(20));
    assert_eq!(accepted.len(), 1, "not delivered:\n{}", relay.log());
    let log = relay.log();
    assert!(
        log.contains("closed by the next hop during the end of data"),
        "{log}"
    );
    assert!(
        log.contains("attempt=2") && log.contains("status=\"sent\""),
        "{log}"
    );
}

#[test]
fn a_next_hop_that_never_replies_times_out_and_is_retried() {
    let (relay, hop) = deliver_through(&["--hang-in-data", "1"], "hang-1");
    let accepted = hop.wait_for(1, Duration::from_secs(30));
    assert_eq!(accepted.len(), 1, "not delivered:\n{}", relay.log());
    let log = relay.log();
    assert!(
        log.contains("timed out waiting during the end of data"),
        "{log}"
    );
    assert!(log.contains("status=\"sent\""), "{log}");
}
