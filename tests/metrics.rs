//! Scenario: `/metrics` on the admin address reports, per shard, in Prometheus text format,
//! what the relay did: sessions, messages accepted, spool syncs, recipients delivered, and how
//! long commits waited for the spool.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::next_hop::SmtpSink;
use common::{eventually, free_port, smarthost_route, Options, Relay};

fn scrape(admin: SocketAddr) -> String {
    let mut stream = TcpStream::connect(admin).expect("connect to the admin API");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// The sum over shards of one metric.
fn total(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn metrics_count_what_the_relay_did() {
    let sink = SmtpSink::start();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let relay = Relay::start(Options {
        shards: Some(2),
        routes: Some(smarthost_route(sink.address)),
        extra: format!("[admin]\naddress = \"{admin}\"\n"),
        ..Options::default()
    });

    for n in 0..5 {
        let mut client = relay.connect();
        let body = format!("Subject: m{n}\r\n\r\nbody\r\n");
        let reply = client.send_message("s@client.test", &["r@example.com"], body.as_bytes());
        assert_eq!(reply.code, 250);
    }
    assert!(eventually(Duration::from_secs(10), || {
        total(&scrape(admin), "postern_recipients_delivered_total") == 5
    }));

    let text = scrape(admin);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4"));
    assert!(
        text.contains("# TYPE postern_messages_accepted_total counter"),
        "{text}"
    );
    assert!(
        text.contains("postern_sessions_accepted_total{shard=\"1\"}"),
        "{text}"
    );
    assert_eq!(total(&text, "postern_messages_accepted_total"), 5, "{text}");
    assert_eq!(total(&text, "postern_sessions_accepted_total"), 5, "{text}");
    assert_eq!(total(&text, "postern_recipients_failed_total"), 0, "{text}");
    assert_eq!(total(&text, "postern_queue_messages"), 0, "{text}");
    let syncs = total(&text, "postern_spool_syncs_total");
    assert!(
        (1..=20).contains(&syncs),
        "{syncs} syncs for 5 messages:\n{text}"
    );

    // Every acknowledged message waited once for the spool, and every sync was timed.
    assert!(
        text.contains("# TYPE postern_spool_commit_wait_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        total(&text, "postern_spool_commit_wait_seconds_count"),
        5,
        "{text}"
    );
    assert_eq!(
        total(&text, "postern_spool_batch_write_seconds_count"),
        syncs,
        "{text}"
    );
    for shard in ["0", "1"] {
        let buckets = bucket_counts(&text, "postern_spool_commit_wait_seconds", shard);
        assert!(buckets.windows(2).all(|pair| pair[0] <= pair[1]), "{text}");
        let count = series(
            &text,
            &format!("postern_spool_commit_wait_seconds_count{{shard=\"{shard}\"}}"),
        );
        assert_eq!(buckets.last(), Some(&count), "{text}");
    }
}

/// The value of one series, named with its labels.
fn series(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// The cumulative bucket counts of one shard's histogram, in the order rendered (`+Inf` last).
fn bucket_counts(text: &str, name: &str, shard: &str) -> Vec<u64> {
    let prefix = format!("{name}_bucket{{shard=\"{shard}\",le=");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .collect()
}
