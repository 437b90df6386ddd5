//! Scenario: a recipient refused with 5xx is bounced. The delivery status notification comes
//! back through the relay, from the null reverse-path, to the sender's own next hop, as an
//! RFC 3464 `multipart/report`; a bounce is never sent for a message that was itself a bounce.

mod common;

use std::time::Duration;

use common::next_hop::FaultyHop;
use common::{eventually, Options, Relay};

fn two_routes(recipients: &FaultyHop, senders: &FaultyHop) -> String {
    format!(
        "[[route]]\ndomains = [\"example.com\"]\nsmarthost = \"{}\"\ntls = \"none\"\n\n\
         [[route]]\ndomains = [\"*\"]\nsmarthost = \"{}\"\ntls = \"none\"\n",
        recipients.address, senders.address
    )
}

#[test]
fn a_refused_recipient_is_reported_to_the_sender() {
    let recipients_hop = FaultyHop::start(&["--rcpt", "550:1"]);
    let senders_hop = FaultyHop::start(&[]);
    let relay = Relay::start(Options {
        routes: Some(two_routes(&recipients_hop, &senders_hop)),
        ..Options::default()
    });

    let mut client = relay.connect();
    let body = b"X-Test-Id: bounce-1\r\nSubject: will bounce\r\n\r\nbody\r\n";
    let reply = client.send_message("sender@client.test", &["nobody@example.com"], body);
    assert_eq!(reply.code, 250);

    let bounces = senders_hop.wait_for(1, Duration::from_secs(20));
    assert_eq!(bounces.len(), 1, "no bounce arrived:\n{}", relay.log());
    let bounce = &bounces[0];
    assert_eq!(
        bounce.mail_from, "<>",
        "a bounce goes out from the null reverse-path"
    );
    assert_eq!(bounce.rcpt_tos, ["sender@client.test"]);
    assert_eq!(bounce.content_type, "multipart/report");
    assert_eq!(bounce.report_type.as_deref(), Some("delivery-status"));
    assert!(recipients_hop.accepted().is_empty());

    assert!(eventually(Duration::from_secs(5), || relay
        .stored()
        .is_empty()));
    let log = relay.log();
    assert!(log.contains("delivery status notification queued"), "{log}");
}

#[test]
fn a_bounce_that_fails_is_not_bounced_again() {
    // Every recipient, the bounce's included, is refused.
    let hop = FaultyHop::start(&["--rcpt", "550:10"]);
    let routes = format!(
        "[[route]]\ndomains = [\"*\"]\nsmarthost = \"{}\"\ntls = \"none\"\n",
        hop.address
    );
    let relay = Relay::start(Options {
        routes: Some(routes),
        ..Options::default()
    });

    let mut client = relay.connect();
    let body = b"Subject: double bounce\r\n\r\nbody\r\n";
    let reply = client.send_message("sender@client.test", &["nobody@example.com"], body);
    assert_eq!(reply.code, 250);

    assert!(
        eventually(Duration::from_secs(20), || {
            relay.log().matches("status=\"bounced\"").count() == 2 && relay.stored().is_empty()
        }),
        "{}",
        relay.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let log = relay.log();
    assert_eq!(
        log.matches("delivery status notification queued").count(),
        1,
        "{log}"
    );
}
