//! Scenario: long-deferred mail pins the oldest segments while newer mail flows through.
//! Compaction copies it forward so the old segments are reclaimed. One straggler keeps exactly
//! the recipient still pending across a restart; a backlog of 200 messages for a dead next hop
//! keeps the segment count bounded, its attempt counts, next attempts and holds across a
//! restart, and arrives exactly once when the next hop comes up.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::next_hop::{FaultyHop, SmtpSink};
use common::{eventually, free_port, postern_binary, shard_0_segment_count, Options, Relay};

#[test]
fn a_long_deferred_message_is_copied_forward_and_old_segments_go() {
    let sink = SmtpSink::start();
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let routes = format!(
        "[[route]]\ndomains = [\"stuck.example\"]\nsmarthost = \"{dead}\"\ntls = \"none\"\n\n\
         [[route]]\ndomains = [\"*\"]\nsmarthost = \"{}\"\ntls = \"none\"\n",
        sink.address
    );
    let mut relay = Relay::start(Options {
        server: "spool_segment_size = \"2MiB\"",
        routes: Some(routes),
        delivery: "retry_schedule = [\"1d\"]".into(),
        ..Options::default()
    });

    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    let stuck = client.send_message(
        "s@client.test",
        &["gone@ok.example", "waits@stuck.example"],
        b"X-Test-Id: pinned\r\n\r\nbody\r\n",
    );
    assert_eq!(stuck.code, 250);
    let filler = format!(
        "Subject: filler\r\n\r\n{}",
        ("y".repeat(98) + "\r\n").repeat(20)
    );
    for _ in 0..1600 {
        assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
        assert_eq!(client.command("RCPT TO:<r@ok.example>").code, 250);
        assert_eq!(client.command("DATA").code, 354);
        client.send(format!("{filler}.\r\n").as_bytes());
        assert_eq!(client.reply().code, 250);
    }
    drop(client);

    // 1,600 one-block batches fill several 2 MiB segments; once the filler is delivered, only
    // the pinned message holds the first one, and compaction frees it.
    assert!(
        eventually(Duration::from_secs(60), || {
            relay.stored().len() == 1 && shard_0_segment_count(&relay.spool) <= 2
        }),
        "segments left: {}\n{}",
        shard_0_segment_count(&relay.spool),
        relay.log()
    );
    assert!(relay.log().contains("copied forward"), "{}", relay.log());

    relay.kill_hard();
    relay.restart();
    let stored = relay.stored();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let envelope = stored[0].envelope.join("\n");
    assert!(
        envelope.contains("RCPT TO:<waits@stuck.example>"),
        "{envelope}"
    );
    assert!(
        !envelope.contains("gone@ok.example"),
        "a finished recipient came back: {envelope}"
    );
    assert!(stored[0].message_text().contains("X-Test-Id: pinned"));
}

/// `postern queue <args> --json` against the relay's admin API.
fn queue_json(admin: SocketAddr, args: &[&str]) -> serde_json::Value {
    let output = Command::new(postern_binary())
        .arg("queue")
        .args(args)
        .args(["--admin", &admin.to_string(), "--json"])
        .env("USER", "tester")
        .output()
        .expect("run postern queue");
    assert!(
        output.status.success(),
        "postern queue {args:?}: {output:?}"
    );
    serde_json::from_slice(&output.stdout).expect("JSON from postern queue --json")
}

/// What the queue says of one message: `(attempts, next attempt, held)`.
type RetryState = (u64, u64, bool);

/// Every queued message with its retry state, by queue id.
fn queued(admin: SocketAddr) -> BTreeMap<String, RetryState> {
    queue_json(admin, &["list"])["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let state = (
                m["attempts"].as_u64().expect("attempts"),
                m["next_attempt_unix_ms"].as_u64().expect("next attempt"),
                m["held"].as_bool().expect("held"),
            );
            (m["queue_id"].as_str().expect("queue id").to_owned(), state)
        })
        .collect()
}

/// Messages for the dead next hop.
const BACKLOG: usize = 200;

/// Segment files the shard may hold, once newer mail is delivered, while the backlog waits: the
/// lag of four segments before compaction starts, and one being written. Without compaction
/// the count grows with the traffic (to more than 20 here).
const SEGMENTS_BOUND: usize = 5;

#[test]
fn a_large_backlog_for_a_dead_next_hop_is_copied_forward_with_its_retry_state() {
    let sink = SmtpSink::start();
    let dead_port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let routes = format!(
        "[[route]]\ndomains = [\"stuck.example\"]\nsmarthost = \"127.0.0.1:{dead_port}\"\n\
         tls = \"none\"\n\n\
         [[route]]\ndomains = [\"*\"]\nsmarthost = \"{}\"\ntls = \"none\"\n",
        sink.address
    );
    let mut relay = Relay::start(Options {
        server: "spool_segment_size = \"2MiB\"",
        routes: Some(routes),
        delivery: "retry_schedule = [\"1d\"]".into(),
        extra: format!("[admin]\naddress = \"{admin}\"\n"),
        ..Options::default()
    });

    // The backlog: every tenth message is 100 KiB, so it is stored as BODY records.
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    for n in 0..BACKLOG {
        let padding = if n % 10 == 0 { 1_000 } else { 10 };
        let body = format!(
            "X-Test-Id: backlog-{n}\r\n\r\n{}",
            ("b".repeat(98) + "\r\n").repeat(padding)
        );
        let to = format!("r{n}@stuck.example");
        let reply = client.send_message("s@client.test", &[&to], body.as_bytes());
        assert_eq!(reply.code, 250, "{}", reply.text());
    }
    assert!(
        eventually(Duration::from_secs(60), || {
            let queue = queued(admin);
            queue.len() == BACKLOG && queue.values().all(|state| state.0 == 1)
        }),
        "the backlog was not deferred once: {:?}\n{}",
        queued(admin),
        relay.log()
    );
    let held: Vec<String> = queued(admin).into_keys().take(10).collect();
    for queue_id in &held {
        assert_eq!(queue_json(admin, &["hold", queue_id])["affected"], 1);
    }
    let before = queued(admin);

    // Newer mail to a live next hop, in rounds of about 5 MiB (two and a half segments), 40 MiB
    // in all. After each round has been delivered, the segment count is back under the bound.
    let filler = format!(
        "Subject: filler\r\n\r\n{}",
        ("y".repeat(98) + "\r\n").repeat(480)
    );
    let mut segments_after_rounds = Vec::new();
    for round in 1..=8 {
        for _ in 0..100 {
            assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
            assert_eq!(client.command("RCPT TO:<r@ok.example>").code, 250);
            assert_eq!(client.command("DATA").code, 354);
            client.send(format!("{filler}.\r\n").as_bytes());
            assert_eq!(client.reply().code, 250);
        }
        assert_eq!(
            sink.wait_for_messages(100 * round, Duration::from_secs(30))
                .1,
            100 * round
        );
        let bounded = eventually(Duration::from_secs(10), || {
            shard_0_segment_count(&relay.spool) <= SEGMENTS_BOUND
        });
        segments_after_rounds.push(shard_0_segment_count(&relay.spool));
        assert!(
            bounded,
            "segments after each round: {segments_after_rounds:?}\n{}",
            relay.log()
        );
    }
    drop(client);
    assert!(relay.log().contains("copied forward"), "{}", relay.log());
    assert_eq!(queued(admin), before, "compaction changed the queue");

    // The copies carry the retry state. After a restart every message not held is due at once
    // and fails again: its count goes on from one, not from zero.
    relay.kill_hard();
    relay.restart();
    let after = queued(admin);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for queue_id in &held {
        assert_eq!(
            after[queue_id], before[queue_id],
            "{queue_id} after the restart"
        );
    }
    assert!(
        eventually(Duration::from_secs(60), || {
            queued(admin)
                .values()
                .all(|&(attempts, _, held)| held || attempts == 2)
        }),
        "attempt counts after the restart: {:?}",
        queued(admin)
    );

    // The next hop comes up: every backlog message arrives, once.
    let hop = FaultyHop::start_on(dead_port, &[]);
    for queue_id in &held {
        assert_eq!(queue_json(admin, &["release", queue_id])["affected"], 1);
    }
    let mut requeued = Instant::now() - Duration::from_secs(1);
    assert!(
        eventually(Duration::from_secs(120), || {
            // Requeue lifts the pause the failed connections put on the destination; again
            // now and then, for messages an attempt was running for the first time.
            if requeued.elapsed() >= Duration::from_secs(1) {
                queue_json(admin, &["requeue"]);
                requeued = Instant::now();
            }
            queued(admin).is_empty()
        }),
        "still queued: {}\n{}",
        queued(admin).len(),
        relay.log()
    );
    let accepted = hop.accepted();
    let ids: Vec<String> = accepted.iter().filter_map(|m| m.id.clone()).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), BACKLOG, "deliveries: {ids:?}");
    assert_eq!(unique.len(), BACKLOG, "a message arrived twice: {ids:?}");
    assert!((0..BACKLOG).all(|n| unique.contains(&format!("backlog-{n}"))));
}
