//! Scenario: `send` straight into `sink` over loopback. Every figure must agree exactly: what
//! send counts as accepted, what the sink counts as intact, and the two id logs, for pipelined
//! and unpipelined sessions, reused and fresh connections, several recipients, a spread of
//! sizes, and an open-loop run.

mod common;

use common::{check, id_log, number, send, Sink};

#[test]
fn closed_loop_with_pipelining_and_a_size_spread_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::start(dir.path(), "a", &[]);
    let (_, sent) = send(
        dir.path(),
        "a",
        &sink.address,
        &[
            "--messages",
            "600",
            "--concurrency",
            "8",
            "--per-connection",
            "7",
            "--recipients",
            "3",
            "--size",
            "uniform:0-20k",
        ],
    );
    let received = sink.stop();

    assert_eq!(number(&sent, "attempted"), 600);
    assert_eq!(number(&sent, "accepted"), 600);
    assert_eq!(number(&sent, "connection_errors"), 0);
    // 600 messages at 7 per connection need 86 connections; each of the 8 sessions may end on
    // a connection that is not full.
    let connections = number(&sent, "connections");
    assert!(
        (86..=86 + 8).contains(&connections),
        "{connections} connections"
    );
    assert_eq!(number(&received, "accepted"), 600);
    assert_eq!(number(&received, "intact"), 600);
    assert_eq!(number(&received, "corrupted"), 0);
    assert_eq!(number(&received, "duplicates"), 0);
    assert_eq!(number(&received, "aborted_transactions"), 0);

    let sent_ids = id_log(&dir.path().join("a.sent"));
    let received_ids = id_log(&sink.ids);
    assert_eq!(sent_ids.len(), 600);
    assert_eq!(sent_ids, received_ids);

    let (code, report) = check(dir.path(), &dir.path().join("a.sent"), &sink.ids, true);
    assert_eq!(code, 0, "{report}");
    assert_eq!(number(&report, "delivered"), 600);
}

#[test]
fn one_connection_per_message_without_pipelining_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::start(dir.path(), "b", &[]);
    let (_, sent) = send(
        dir.path(),
        "b",
        &sink.address,
        &[
            "--messages",
            "300",
            "--concurrency",
            "5",
            "--per-connection",
            "1",
            "--no-pipelining",
            "--size",
            "1k",
        ],
    );
    let received = sink.stop();

    assert_eq!(number(&sent, "accepted"), 300);
    assert_eq!(number(&sent, "connections"), 300);
    assert_eq!(number(&received, "sessions"), 300);
    assert_eq!(number(&received, "intact"), 300);
    // The sink counts whole messages (headers too); each body alone is 1 KiB.
    assert!(number(&received, "bytes") > 300 * 1024);
    assert_eq!(id_log(&dir.path().join("b.sent")), id_log(&sink.ids));
}

#[test]
fn open_loop_sends_the_count_and_records_latency() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::start(dir.path(), "c", &[]);
    let (_, sent) = send(
        dir.path(),
        "c",
        &sink.address,
        &["--messages", "200", "--concurrency", "4", "--rate", "1000"],
    );
    let received = sink.stop();

    assert_eq!(sent["mode"], "open");
    assert_eq!(number(&sent, "accepted"), 200);
    assert_eq!(number(&sent["latency_transaction"], "count"), 200);
    assert_eq!(number(&sent["latency_data_reply"], "count"), 200);
    assert_eq!(number(&received, "intact"), 200);
    assert_eq!(id_log(&dir.path().join("c.sent")), id_log(&sink.ids));
}

#[test]
fn several_targets_share_the_connections_and_the_union_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Sink::start(dir.path(), "t1", &[]);
    let mut second = Sink::start(dir.path(), "t2", &[]);
    let targets = format!("{},{}", first.address, second.address);
    let (_, sent) = send(
        dir.path(),
        "t",
        &targets,
        &[
            "--messages",
            "200",
            "--concurrency",
            "4",
            "--per-connection",
            "1",
        ],
    );
    let one = first.stop();
    let two = second.stop();

    assert_eq!(number(&sent, "accepted"), 200);
    // New connections take the targets in turn, so both get a fair share.
    assert!(number(&one, "intact") >= 80, "{one}");
    assert!(number(&two, "intact") >= 80, "{two}");
    assert_eq!(number(&one, "intact") + number(&two, "intact"), 200);
    let mut union = id_log(&first.ids);
    union.extend(id_log(&second.ids));
    assert_eq!(id_log(&dir.path().join("t.sent")), union);
}
