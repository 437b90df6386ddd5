//! Scenario: inbound verification while the DNS cannot answer. A resolver that never replies,
//! or a port where no server listens, must give `temperror` results and an accepted message,
//! never a `5xx`, even with `dmarc_reject` on and a message whose domain would be refused.
//!
//! Needs the Debian packages python3-dkim and python3-nacl for the signed message.

mod common;

use std::net::SocketAddr;

use common::dns_server::SilentDnsServer;
use common::verification::{dkim_signed, message, our_results, result_of};
use common::{free_port, Options, Relay};

const UNTRUSTED: &str = "allow_networks = []\nlocal_domains = [\"example.test\"]";

fn start(dns: SocketAddr) -> Relay {
    Relay::start(Options {
        relay: Some(UNTRUSTED),
        extra: format!(
            "[dns]\nservers = [\"{dns}\"]\n\n\
             [verification]\ndmarc_reject = true\ntimeout = \"2s\"\n"
        ),
        ..Options::default()
    })
}

fn assert_temperror_everywhere(relay: &Relay) {
    let signed = dkim_signed(&message("author@signed.test", "no-dns", ""));
    let reply =
        relay
            .connect()
            .send_message("bounces@signed.test", &["user@example.test"], &signed);
    assert_eq!(
        reply.code, 250,
        "a DNS failure is never a refusal: {reply:?}"
    );

    let stored = relay.stored();
    assert_eq!(stored.len(), 1);
    let results = our_results(&stored[0].message)
        .unwrap_or_else(|| panic!("no results of ours:\n{}", stored[0].message_text()));
    for (method, property) in [("spf", "smtp.mailfrom="), ("dkim", ""), ("dmarc", "")] {
        let result = result_of(&results, method, property);
        assert!(
            result.starts_with(&format!("{method}=temperror")),
            "{results:?}"
        );
    }
}

#[test]
fn a_dns_server_that_never_answers_gives_temperror_and_250() {
    let silent = SilentDnsServer::start();
    let relay = start(silent.address);
    assert_temperror_everywhere(&relay);
}

#[test]
fn no_dns_server_at_all_gives_temperror_and_250() {
    let nothing = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let relay = start(nothing);
    assert_temperror_everywhere(&relay);
}
