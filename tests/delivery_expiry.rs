//! Scenario: a next hop that keeps answering 4xx. The sender is warned once that delivery is
//! delayed; when the message reaches `max_age` it fails and a failure report follows.

mod common;

use std::time::Duration;

use common::next_hop::FaultyHop;
use common::{Options, Relay};

#[test]
fn a_message_deferred_past_its_maximum_age_is_bounced_after_one_delay_warning() {
    let recipients_hop = FaultyHop::start(&["--rcpt", "451:1000"]);
    let senders_hop = FaultyHop::start(&[]);
    let routes = format!(
        "[[route]]\ndomains = [\"example.com\"]\nsmarthost = \"{}\"\ntls = \"none\"\n\n\
         [[route]]\ndomains = [\"*\"]\nsmarthost = \"{}\"\ntls = \"none\"\n",
        recipients_hop.address, senders_hop.address
    );
    let relay = Relay::start(Options {
        routes: Some(routes),
        delivery: "retry_schedule = [\"1s\"]\nmax_age = \"4s\"\ndelay_warning = \"1s\"".into(),
        ..Options::default()
    });

    let mut client = relay.connect();
    let body = b"X-Test-Id: expiry-1\r\nSubject: slow\r\n\r\nbody\r\n";
    let reply = client.send_message("sender@client.test", &["slow@example.com"], body);
    assert_eq!(reply.code, 250);

    let reports = senders_hop.wait_for(2, Duration::from_secs(30));
    assert_eq!(
        reports.len(),
        2,
        "expected a delay warning and a failure:\n{}",
        relay.log()
    );
    let subjects: Vec<&str> = reports
        .iter()
        .filter_map(|r| r.subject.as_deref())
        .collect();
    assert!(subjects[0].contains("Delayed"), "{subjects:?}");
    assert!(subjects[1].contains("Undelivered"), "{subjects:?}");
    let log = relay.log();
    assert!(log.contains("message expired in the queue"), "{log}");
    assert!(log.contains("dsn=4.4.7"), "{log}");
    assert!(recipients_hop.accepted().is_empty());
}
