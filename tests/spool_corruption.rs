//! Scenario: bytes on disk go bad. A damaged record in a sealed segment is reported as an
//! error and the segment is quarantined, while every intact record before and after it is
//! recovered; garbage after the last batch of the newest segment is a torn tail, ignored
//! quietly, as a crash during a write leaves it.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use common::{generation_segments, Options, Relay};

const MESSAGES: usize = 700;

#[test]
fn damage_is_quarantined_and_torn_tails_are_ignored() {
    let mut relay = Relay::start(Options {
        server: "spool_segment_size = \"2MiB\"",
        ..Options::default()
    });
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    for n in 0..MESSAGES {
        assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
        assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);
        assert_eq!(client.command("DATA").code, 354);
        let body = ("x".repeat(98) + "\r\n").repeat(20);
        client.send(format!("X-Test-Id: c-{n}\r\n\r\n{body}.\r\n").as_bytes());
        assert_eq!(client.reply().code, 250);
    }
    drop(client);
    assert!(relay.terminate(Duration::from_secs(10)).success());

    // Each message was its own batch, so block starts hold records. The first segment is
    // sealed (the writer moved on); the last one is the newest of the generation.
    let generation = relay.spool.join("shard-0").join("gen-00000001");
    let segments = generation_segments(&generation);
    assert!(
        segments.len() >= 2,
        "the test needs two segments in one generation"
    );
    flip_byte(&segments[0], 10 * 4096 + 60);
    append_garbage(segments.last().expect("a segment"));

    relay.restart();
    let log = relay.log();
    assert!(log.contains("damaged spool record"), "{log}");
    assert!(
        log.contains("quarantined=1") && log.contains("torn_tails=1"),
        "{log}"
    );

    let ids: Vec<usize> = relay
        .stored()
        .iter()
        .filter_map(|m| {
            let text = m.message_text();
            let id = text.lines().find_map(|l| l.strip_prefix("X-Test-Id: c-"))?;
            id.trim().parse().ok()
        })
        .collect();
    // The damaged block held one message (two if a record crossed into it); everything
    // else, before and after it, is back.
    let missing: Vec<usize> = (0..MESSAGES).filter(|n| !ids.contains(n)).collect();
    assert!(
        (1..=2).contains(&missing.len()),
        "expected the damaged block's message only to be missing: {missing:?}"
    );
    assert!(
        ids.contains(&0) && ids.contains(&(MESSAGES - 1)),
        "{missing:?}"
    );
    assert!(
        ids.iter().any(|&id| id > missing[0] && id < 100),
        "no resync after the damage"
    );
}

fn flip_byte(path: &PathBuf, offset: u64) {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open segment");
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(offset)).expect("seek");
    std::io::Read::read_exact(&mut file, &mut byte).expect("read");
    byte[0] ^= 0x40;
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(&byte).expect("write");
    file.sync_all().expect("sync");
}

/// Writes garbage where the next batch would have gone, as a write cut short by a crash leaves
/// it: at the first never-written (all-zero) block after the records, which is the end of the
/// file when the segment was not prepared full of zeros.
fn append_garbage(path: &PathBuf) {
    let contents = std::fs::read(path).expect("read segment");
    let next_batch = contents
        .chunks(4096)
        .position(|block| block.iter().all(|&byte| byte == 0))
        .map_or(contents.len(), |block| block * 4096);
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open segment");
    file.seek(SeekFrom::Start(next_batch as u64)).expect("seek");
    file.write_all(&[0xAB; 300]).expect("write");
    file.sync_all().expect("sync");
}
