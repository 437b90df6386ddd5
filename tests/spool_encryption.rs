//! Scenario: the spool is encrypted at rest. With a key from `postern spool keygen`, no
//! message text or envelope address reaches a segment file in clear, yet every message (small
//! inline ones and large ones in BODY records) comes back after a restart. Rotating to a second
//! key keeps old segments readable; removing a key that a segment still names stops the relay
//! with exit code 15 and names the key; a sealed record altered on disk (with its CRC fixed up,
//! so only the AEAD can tell) is logged as damage and its segment quarantined; turning
//! encryption off again writes new segments in clear and still reads the sealed ones.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{generation_segments, postern_binary, Client, Options, Relay};
use postern::spool::{scan_segment, RecordType, Scanned, RECORD_HEADER_BYTES};

const SMALL: usize = 10;
const LARGE: usize = 24;

#[test]
fn encrypted_spool_survives_restart_rotation_and_detects_tampering() {
    let keys_home = tempfile::tempdir().expect("key directory");
    let keys = keys_home.path().join("keys");
    keygen(&keys, "k1");
    let server: &'static str = Box::leak(
        format!(
            "spool_segment_size = \"2MiB\"\nspool_keys = \"{}\"\nspool_key = \"k1\"",
            keys.display()
        )
        .into_boxed_str(),
    );
    let mut relay = Relay::start(Options {
        server,
        ..Options::default()
    });

    // Small messages stay inline in their COMMIT; large ones (over 64 KiB) go out as BODY
    // records and fill more than one 2 MiB segment.
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    for n in 0..SMALL {
        send(&mut client, &format!("small-{n}"), 20);
    }
    for n in 0..LARGE {
        send(&mut client, &format!("large-{n}"), 1_000);
    }
    drop(client);
    assert!(relay.terminate(Duration::from_secs(10)).success());

    let first_generation = segments(&relay.spool, 1);
    assert!(first_generation.len() >= 2, "{first_generation:?}");
    for segment in &first_generation {
        let bytes = fs::read(segment).expect("segment");
        for clear in [&b"SECRET-"[..], b"sender@client.test", b"rcpt@example.com"] {
            assert!(
                !contains(&bytes, clear),
                "{} holds text in clear",
                segment.display()
            );
        }
        assert!(contains(&bytes[..RECORD_HEADER_BYTES + 64], b"k1"));
    }
    assert_eq!(exported(&relay.spool, &keys).len(), SMALL + LARGE);
    let without_keys = export_status(&relay.spool, None);
    assert_eq!(without_keys.0, Some(15), "{}", without_keys.1);

    relay.restart();
    assert!(
        relay.log().contains(&format!("messages={}", SMALL + LARGE)),
        "{}",
        relay.log()
    );

    // Rotation: a new key seals the new generation; the old one still opens the old segments.
    keygen(&keys, "k2");
    let config = fs::read_to_string(&relay.config_path).expect("config");
    fs::write(
        &relay.config_path,
        config.replace("spool_key = \"k1\"", "spool_key = \"k2\""),
    )
    .expect("rewrite config");
    assert!(relay.terminate(Duration::from_secs(10)).success());
    relay.restart();
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    send(&mut client, "after-rotation-small", 20);
    send(&mut client, "after-rotation-large", 1_000);
    drop(client);
    assert!(relay.terminate(Duration::from_secs(10)).success());

    let newest = segments(&relay.spool, 3);
    let head = fs::read(&newest[0]).expect("segment");
    assert!(contains(&head[..RECORD_HEADER_BYTES + 64], b"k2"));
    assert!(!contains(&head, b"SECRET-"));
    let messages = exported(&relay.spool, &keys);
    assert_eq!(messages.len(), SMALL + LARGE + 2);
    for id in [
        "small-3",
        "large-7",
        "after-rotation-small",
        "after-rotation-large",
    ] {
        let marker = format!("X-Test-Id: {id}\r\n");
        let found = messages.iter().find(|m| contains(m, marker.as_bytes()));
        let found = found.unwrap_or_else(|| panic!("{id} was not recovered"));
        let body_line = format!("SECRET-{id} line 19 ");
        assert!(
            contains(found, body_line.as_bytes()),
            "{id} body is incomplete"
        );
    }

    // Removing a key that segments still name is a dead end the operator must fix.
    let parked = keys_home.path().join("k1.key.parked");
    fs::rename(keys.join("k1.key"), &parked).expect("park the old key");
    let (code, log) = serve_once(&relay.config_path);
    assert_eq!(code, Some(15), "{log}");
    assert!(log.contains("`k1`") && log.contains("k1.key"), "{log}");
    fs::rename(&parked, keys.join("k1.key")).expect("restore the old key");

    // Alter one sealed COMMIT in an older (not the newest) segment of the first generation,
    // fixing its CRC so that the scanner accepts the frame and only authentication fails.
    tamper_with_a_commit(&first_generation[0]);
    relay.restart();
    let log = relay.log();
    assert!(log.contains("damaged spool record"), "{log}");
    assert!(log.contains("failed authentication"), "{log}");
    assert!(log.contains("quarantined=1"), "{log}");
    assert!(relay.terminate(Duration::from_secs(10)).success());
    assert_eq!(exported(&relay.spool, &keys).len(), SMALL + LARGE + 1);

    // Turning encryption off (keys kept, no active key): new segments are plaintext, the
    // sealed ones stay readable.
    let config = fs::read_to_string(&relay.config_path).expect("config");
    fs::write(&relay.config_path, config.replace("spool_key = \"k2\"", ""))
        .expect("rewrite config");
    relay.restart();
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    send(&mut client, "in-clear", 20);
    drop(client);
    assert!(relay.terminate(Duration::from_secs(10)).success());
    let plain = fs::read(&segments(&relay.spool, 5)[0]).expect("segment");
    assert!(contains(&plain, b"SECRET-in-clear"));
    assert_eq!(exported(&relay.spool, &keys).len(), SMALL + LARGE + 2);
}

fn send(client: &mut Client, id: &str, lines: usize) {
    assert_eq!(client.command("MAIL FROM:<sender@client.test>").code, 250);
    assert_eq!(client.command("RCPT TO:<rcpt@example.com>").code, 250);
    assert_eq!(client.command("DATA").code, 354);
    let mut message = format!("X-Test-Id: {id}\r\nSubject: SECRET-subject-{id}\r\n\r\n");
    for line in 0..lines {
        message.push_str(&format!("SECRET-{id} line {line} {}\r\n", "y".repeat(70)));
    }
    message.push_str(".\r\n");
    client.send(message.as_bytes());
    assert_eq!(client.reply().code, 250);
}

fn keygen(directory: &Path, id: &str) {
    let status = Command::new(postern_binary())
        .args(["spool", "keygen", "--directory"])
        .arg(directory)
        .args(["--id", id])
        .stdout(Stdio::null())
        .status()
        .expect("run postern spool keygen");
    assert!(status.success(), "keygen failed: {status}");
}

/// The segment files of generation `generation` of shard 0, in log order.
fn segments(spool: &Path, generation: u64) -> Vec<PathBuf> {
    generation_segments(&spool.join("shard-0").join(format!("gen-{generation:08}")))
}

/// Every exported message's bytes, read with `postern spool export --keys`.
fn exported(spool: &Path, keys: &Path) -> Vec<Vec<u8>> {
    let output = tempfile::tempdir().expect("export directory");
    let (code, log) = export_into(spool, Some(keys), output.path());
    assert_eq!(code, Some(0), "{log}");
    fs::read_dir(output.path())
        .expect("export directory")
        .map(|entry| fs::read(entry.expect("entry").path()).expect("exported message"))
        .collect()
}

fn export_status(spool: &Path, keys: Option<&Path>) -> (Option<i32>, String) {
    let output = tempfile::tempdir().expect("export directory");
    export_into(spool, keys, output.path())
}

fn export_into(spool: &Path, keys: Option<&Path>, output: &Path) -> (Option<i32>, String) {
    let mut command = Command::new(postern_binary());
    command
        .args(["spool", "export", "--spool"])
        .arg(spool)
        .arg("--output")
        .arg(output);
    if let Some(keys) = keys {
        command.arg("--keys").arg(keys);
    }
    let result = command.output().expect("run postern spool export");
    let text = String::from_utf8_lossy(&result.stderr).into_owned()
        + &String::from_utf8_lossy(&result.stdout);
    (result.status.code(), text)
}

/// Runs `postern serve` expecting it to stop on its own; returns its exit code and log.
fn serve_once(config: &Path) -> (Option<i32>, String) {
    let result = Command::new(postern_binary())
        .args(["serve", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .expect("run postern serve");
    (
        result.status.code(),
        String::from_utf8_lossy(&result.stderr).into_owned(),
    )
}

fn tamper_with_a_commit(segment: &Path) {
    let mut bytes = fs::read(segment).expect("segment");
    let scan = scan_segment(&bytes);
    let (offset, length) = scan
        .records
        .iter()
        .find_map(|record| {
            let Scanned::Record {
                record_type,
                sealed,
                offset,
                length,
                ..
            } = record;
            (*record_type == RecordType::Commit && *sealed).then_some((*offset, *length))
        })
        .expect("a sealed COMMIT in the first segment");
    let start = offset as usize;
    let end = start + length;
    bytes[start + RECORD_HEADER_BYTES + 3] ^= 0x01;

    let mut header = bytes[start..start + RECORD_HEADER_BYTES].to_vec();
    header[20..24].fill(0);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&header),
        &bytes[start + RECORD_HEADER_BYTES..end],
    );
    bytes[start + 20..start + 24].copy_from_slice(&crc.to_le_bytes());
    fs::write(segment, bytes).expect("write the altered segment");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
