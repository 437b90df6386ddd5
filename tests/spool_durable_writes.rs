//! Scenario: the relay writes spool segments only through descriptors opened with `O_DSYNC`.
//! A batch is one write with no fdatasync after it, so that flag is the whole of the promise
//! that an acknowledged message is on stable storage. The `kill -9` tests cannot see it go
//! missing: the page cache and the drive's cache outlive the process, only a power cut would
//! lose the mail. So this test accepts a message and then reads, from `/proc/<pid>/fdinfo`, the
//! flags of every descriptor the relay holds on a segment file. A second test checks that a
//! batch write never has to extend its file: every segment has its full size from creation
//! (ext4 before Linux 6.7 could finish an extending O_DSYNC direct write before the new size
//! was durable).

mod common;

use std::fs;

use common::{generation_segments, open_flags, Options, Relay};

#[test]
fn every_segment_descriptor_that_writes_is_o_dsync() {
    let relay = Relay::start(Options::default());
    let mut client = relay.connect();
    let reply = client.send_message(
        "sender@client.test",
        &["rcpt@example.com"],
        b"Subject: durable\r\n\r\nbody\r\n",
    );
    assert_eq!(reply.code, 250, "{}", relay.log());

    let pid = relay.pid();
    let mut writers = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).expect("the relay's descriptors") {
        let entry = entry.expect("a descriptor entry");
        // A descriptor closed since the listing has no link and no fdinfo any more.
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let is_segment = target
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("seg-") && name.ends_with(".log"));
        if !is_segment || !target.starts_with(&relay.spool) {
            continue;
        }
        let fd = entry.file_name().to_string_lossy().into_owned();
        let Some(flags) = open_flags(pid, &fd) else {
            continue;
        };
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            continue; // Body reads for delivery; they never write.
        }
        writers.push((target.display().to_string(), flags));
    }

    assert!(
        !writers.is_empty(),
        "the relay holds its current segment open for writing"
    );
    for (path, flags) in writers {
        assert_ne!(
            flags & libc::O_DSYNC,
            0,
            "{path} is open for writing without O_DSYNC (flags {flags:o}): its batches would \
             not be durable when acknowledged"
        );
    }
}

#[test]
fn every_segment_file_has_its_full_size_from_creation() {
    let relay = Relay::start(Options {
        server: "spool_segment_size = \"2MiB\"",
        ..Options::default()
    });
    let mut client = relay.connect();
    // About 100 KiB each: fifty messages fill two segments and start a third. Here the spares
    // keep up, so this checks the spare path; a segment made on the spot (no spare ready) is
    // checked by the unit test `a_segment_made_on_the_spot_has_its_full_size`.
    let body = ("z".repeat(98) + "\r\n").repeat(1000);
    for n in 0..50 {
        let reply = client.send_message(
            "sender@client.test",
            &["rcpt@example.com"],
            format!("X-Test-Id: size-{n}\r\n\r\n{body}").as_bytes(),
        );
        assert_eq!(reply.code, 250, "{}", relay.log());
    }

    let generation = relay.spool.join("shard-0").join("gen-00000001");
    let segments = generation_segments(&generation);
    assert!(segments.len() >= 3, "the mail spans segments: {segments:?}");
    for segment in segments {
        let size = fs::metadata(&segment).expect("a segment's metadata").len();
        assert_eq!(size, 2 << 20, "{} is not its full size", segment.display());
    }
}
