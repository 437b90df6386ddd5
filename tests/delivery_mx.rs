//! Scenario: delivery by MX lookup against a real DNS server on loopback (dnsmasq,
//! authoritative for `example.test`): mail goes to the domain's exchanger; a null MX (RFC 7505)
//! and a domain that does not exist fail at once, and their sender hears of it.

mod common;

use std::time::Duration;

use common::dns_server::DnsServer;
use common::next_hop::FaultyHop;
use common::{eventually, Options, Relay};

#[test]
fn mail_follows_mx_records_and_dns_verdicts() {
    let hop = FaultyHop::start(&[]);
    let dns = DnsServer::start(vec![
        "--auth-zone=example.test".into(),
        "--auth-server=ns.example.test,127.0.0.1".into(),
        "--auth-soa=1,hostmaster.example.test,1200,180,1209600".into(),
        "--mx-host=example.test,mx1.example.test,10".into(),
        "--host-record=mx1.example.test,127.0.0.1".into(),
        "--dns-rr=nullmx.example.test,15,000000".into(),
    ]);
    let routes = format!(
        "[[route]]\ndomains = [\"*\"]\nmx = true\nmx_port = {}\ntls = \"none\"\n",
        hop.address.port()
    );
    let relay = Relay::start(Options {
        routes: Some(routes),
        extra: format!("[dns]\nservers = [\"{}\"]\n", dns.address),
        ..Options::default()
    });

    let mut client = relay.connect();
    let body = b"X-Test-Id: mx-1\r\nSubject: by mx\r\n\r\nbody\r\n";
    let recipients = [
        "a@example.test",
        "b@nullmx.example.test",
        "c@nothere.example.test",
    ];
    assert_eq!(
        client
            .send_message("s@example.test", &recipients, body)
            .code,
        250
    );

    // The message for a@, then one failure report for b@ and c@ to s@, by the same MX.
    let accepted = hop.wait_for(2, Duration::from_secs(20));
    assert_eq!(accepted.len(), 2, "{accepted:?}\n{}", relay.log());
    let delivered = accepted
        .iter()
        .find(|m| m.id.as_deref() == Some("mx-1"))
        .expect("delivered");
    assert_eq!(delivered.rcpt_tos, ["a@example.test"]);
    let bounce = accepted
        .iter()
        .find(|m| m.mail_from == "<>")
        .expect("a bounce");
    assert_eq!(bounce.rcpt_tos, ["s@example.test"]);
    assert_eq!(bounce.content_type, "multipart/report");

    let log = relay.log();
    assert!(
        log.contains("to=b@nullmx.example.test") && log.contains("dsn=5.1.10"),
        "{log}"
    );
    assert!(
        log.contains("to=c@nothere.example.test") && log.contains("dsn=5.1.2"),
        "{log}"
    );
    assert!(eventually(Duration::from_secs(5), || relay
        .stored()
        .is_empty()));
}
