//! Scenario: one long-deferred message pins the oldest segment while newer mail flows through.
//! Compaction copies it forward so the old segments are reclaimed; after a restart the message
//! is still queued with exactly the recipient that was still pending.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::next_hop::SmtpSink;
use common::{eventually, free_port, Options, Relay};

fn segment_files(spool: &Path) -> usize {
    let shard = spool.join("shard-0");
    std::fs::read_dir(&shard)
        .map(|generations| {
            generations
                .flatten()
                .filter(|entry| entry.path().is_dir())
                .map(|generation| std::fs::read_dir(generation.path()).map_or(0, |s| s.count()))
                .sum()
        })
        .unwrap_or(0)
}

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
            relay.stored().len() == 1 && segment_files(&relay.spool) <= 2
        }),
        "segments left: {}\n{}",
        segment_files(&relay.spool),
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
