//! Scenario: a route binds its connections to a source address. The next hop (aiosmtpd) sees
//! the connection come from that address; an address this host does not have defers the mail
//! with the reason instead of sending it from another one.

mod common;

use std::time::Duration;

use common::next_hop::FaultyHop;
use common::{Options, Relay};

fn relay_with_source(hop: &FaultyHop, source: &str) -> Relay {
    let routes = format!(
        "[[route]]\ndomains = [\"*\"]\nsmarthost = \"{}\"\ntls = \"none\"\n\
         source_address = \"{source}\"\n",
        hop.address
    );
    Relay::start(Options {
        routes: Some(routes),
        delivery: "retry_schedule = [\"1s\"]".into(),
        ..Options::default()
    })
}

fn send(relay: &Relay, id: &str) {
    let mut client = relay.connect();
    let body = format!("X-Test-Id: {id}\r\n\r\nbody\r\n");
    let reply = client.send_message("s@client.test", &["r@example.com"], body.as_bytes());
    assert_eq!(reply.code, 250, "{reply:?}");
}

#[test]
fn connections_leave_from_the_source_address() {
    let hop = FaultyHop::start(&[]);
    let relay = relay_with_source(&hop, "127.0.0.2");
    send(&relay, "source-1");
    send(&relay, "source-2");

    let accepted = hop.wait_for(2, Duration::from_secs(20));
    assert_eq!(accepted.len(), 2, "not delivered:\n{}", relay.log());
    for message in &accepted {
        assert!(
            message.peer.starts_with("127.0.0.2:"),
            "came from {}",
            message.peer
        );
    }
}

#[test]
fn a_source_address_the_host_lacks_defers_with_the_reason() {
    let hop = FaultyHop::start(&[]);
    // TEST-NET-1 (RFC 5737): never configured on a test machine.
    let relay = relay_with_source(&hop, "192.0.2.1");
    send(&relay, "no-source");
    std::thread::sleep(Duration::from_secs(3));

    assert!(hop.accepted().is_empty(), "sent from another address");
    assert_eq!(relay.stored().len(), 1, "the message left the queue");
    let log = relay.log();
    assert!(
        log.contains("cannot bind to source address 192.0.2.1"),
        "{log}"
    );
    assert!(log.contains("status=\"deferred\""), "{log}");
}
