//! Scenario: 10,000 sessions opened and closed must not grow the relay's memory.
//!
//! The relay's resident set is read after a warm-up (allocator pools and buffers in place) and
//! again after 10,000 more sessions, each greeted, EHLO'd and QUIT. A leak of even a few hundred
//! bytes per session would show as megabytes here. This checks memory, never time.

mod common;

use std::thread;

use common::{Client, Options, Relay};

const WARM_UP_SESSIONS: usize = 1_000;
const MEASURED_SESSIONS: usize = 10_000;
const CLIENT_THREADS: usize = 8;

/// Growth allowed between the two readings: allocator noise, not per-session cost.
const GROWTH_ALLOWED_KIB: u64 = 4 * 1024;

fn churn(relay: &Relay, sessions: usize) {
    let address = relay.address;
    let workers: Vec<_> = (0..CLIENT_THREADS)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..sessions / CLIENT_THREADS {
                    let mut client = Client::connect(address);
                    assert_eq!(client.reply().code, 220);
                    assert_eq!(client.command("EHLO churn.test").code, 250);
                    assert_eq!(client.command("QUIT").code, 221);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("client thread");
    }
}

#[test]
fn ten_thousand_sessions_do_not_grow_memory() {
    let relay = Relay::start(Options {
        shards: Some(2),
        ..Options::default()
    });
    churn(&relay, WARM_UP_SESSIONS);
    let before = relay.rss_kib();
    churn(&relay, MEASURED_SESSIONS);
    let after = relay.rss_kib();
    assert!(
        after <= before + GROWTH_ALLOWED_KIB,
        "resident memory grew from {before} KiB to {after} KiB over {MEASURED_SESSIONS} sessions"
    );
}
