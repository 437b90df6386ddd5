//! Scenario: mail relayed to Postfix's smtp-sink (a next hop we did not write) is delivered,
//! every message once, over a few reused connections, and the queue ends empty.

mod common;

use std::time::Duration;

use common::next_hop::SmtpSink;
use common::{eventually, smarthost_route, Options, Relay};

const MESSAGES: u64 = 120;
const CLIENTS: usize = 4;

#[test]
fn relayed_mail_reaches_smtp_sink_over_reused_connections() {
    let sink = SmtpSink::start();
    let mut routes = smarthost_route(sink.address);
    routes.push_str("connections_max = 2\nmessages_per_connection_max = 1000\n");
    let relay = Relay::start(Options {
        shards: Some(2),
        routes: Some(routes),
        delivery: "idle_timeout = \"30s\"".into(),
        ..Options::default()
    });

    let per_client = MESSAGES as usize / CLIENTS;
    let senders: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let address = relay.address;
            std::thread::spawn(move || {
                let mut connection = common::Client::connect(address);
                assert_eq!(connection.reply().code, 220);
                for message in 0..per_client {
                    let body = format!("Subject: m{client}-{message}\r\n\r\nbody\r\n");
                    let reply = connection.send_message(
                        "s@client.test",
                        &["r@example.com"],
                        body.as_bytes(),
                    );
                    assert_eq!(reply.code, 250, "{reply:?}");
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("sender");
    }

    let (sessions, messages) = sink.wait_for_messages(MESSAGES, Duration::from_secs(30));
    assert_eq!(
        messages,
        MESSAGES,
        "smtp-sink counted {messages} messages:\n{}",
        relay.log()
    );

    // One probe connection from the harness, then at most two per shard.
    assert!(
        sessions <= 1 + 2 * 2,
        "{sessions} sessions for {MESSAGES} messages: connections were not reused"
    );
    assert!(
        eventually(Duration::from_secs(10), || relay.stored().is_empty()),
        "the queue still holds delivered messages"
    );
    assert_eq!(
        relay.log().matches("status=\"sent\"").count() as u64,
        MESSAGES
    );
}
