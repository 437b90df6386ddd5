//! Scenario: the per-shard session limit. Over it, a new connection hears `421 4.3.2` at once
//! and is closed; the sessions already open are not disturbed.

mod common;

use common::{Client, Options, Relay};

#[test]
fn connection_over_the_limit_hears_421() {
    let relay = Relay::start(Options {
        server: "sessions_per_shard_max = 2",
        ..Options::default()
    });
    let mut first = relay.connect();
    let mut second = relay.connect();

    let mut third = Client::connect(relay.address);
    let reply = third.reply();
    assert_eq!(reply.code, 421, "{reply:?}");
    assert_eq!(reply.enhanced(), "4.3.2");
    assert!(third.is_closed());

    assert_eq!(first.command("NOOP").code, 250);
    assert_eq!(second.command("NOOP").code, 250);
    drop(first);
    assert!(common::eventually(
        std::time::Duration::from_secs(5),
        || {
            let mut again = Client::connect(relay.address);
            again.reply().code == 220
        }
    ));
}
