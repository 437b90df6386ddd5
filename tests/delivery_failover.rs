//! Scenario: the first smart host of a route does not answer; the relay fails over to the next
//! one in the list and delivers there.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::next_hop::FaultyHop;
use common::{free_port, Options, Relay};

#[test]
fn a_dead_first_smarthost_fails_over_to_the_second() {
    let hop = FaultyHop::start(&[]);
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let routes = format!(
        "[[route]]\ndomains = [\"*\"]\nsmarthost = [\"{dead}\", \"{}\"]\ntls = \"none\"\n",
        hop.address
    );
    let relay = Relay::start(Options {
        routes: Some(routes),
        ..Options::default()
    });

    let mut client = relay.connect();
    let body = b"X-Test-Id: failover-1\r\n\r\nbody\r\n";
    assert_eq!(
        client
            .send_message("s@client.test", &["r@example.com"], body)
            .code,
        250
    );

    let accepted = hop.wait_for(1, Duration::from_secs(20));
    assert_eq!(accepted.len(), 1, "not delivered:\n{}", relay.log());
    assert_eq!(accepted[0].id.as_deref(), Some("failover-1"));
    let log = relay.log();
    assert!(log.contains(&format!("relay=\"{}\"", hop.address)), "{log}");
    assert!(!log.contains("status=\"deferred\""), "{log}");
}
