//! `postern spool export`: copies every queued message out of a spool, offline.
//!
//! Each message becomes one file `<queue id>.msg` in the output directory: the envelope written
//! as the SMTP commands that carried it (`MAIL FROM`, one `RCPT TO` per recipient not yet
//! delivered, with their DSN parameters in xtext), then `DATA`, then the message exactly as it
//! will be relayed, starting with postern's `Received:` header. That is readable, greppable, and
//! replayable with any SMTP client. It reads the spool the way recovery does and never writes to
//! it, so it is safe on a copy, a stopped relay's spool, or (as a snapshot) a running one. An
//! encrypted spool needs its key directory (`--keys`); the output files are plaintext.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::config::spool_keys::load_key_directory;
use crate::fatal::{ExitReason, Fatal};
use crate::shard::spool::{recover, segment_file_name, MissingSpoolKey};
use crate::smtp::{BodyType, Envelope};
use crate::spool::{
    decode_record, open_payload, BodyLocation, BodyRecord, Extent, KeyRing, QueuedMessage,
    SegmentCipher, RECORD_HEADER_BYTES, SEAL_TAG_BYTES,
};

/// Exports every queued message of every shard under `spool` into `output`, opening sealed
/// segments with the keys in `keys`. Returns the count.
pub fn export(spool: &Path, output: &Path, keys: Option<&Path>) -> Result<usize, Fatal> {
    let ring = match keys {
        Some(directory) => load_ring(directory)?,
        None => KeyRing::default(),
    };
    let failure = |what: &str, path: &Path, error: io::Error| {
        Fatal::new(
            ExitReason::SpoolNotWritable,
            format!("{what} {}: {error}", path.display()),
            "check the path and its permissions",
        )
    };
    fs::create_dir_all(output).map_err(|error| failure("cannot create", output, error))?;

    let mut exported = 0;
    for shard_directory in shard_directories(spool).map_err(|e| failure("cannot read", spool, e))? {
        let recovered = recover(&shard_directory, &ring).map_err(|error| {
            match MissingSpoolKey::within(&error) {
                Some(missing) => Fatal::new(
                    ExitReason::SpoolKeyMissing,
                    missing.to_string(),
                    format!(
                        "pass the key directory holding `{}.key` with --keys",
                        missing.key_id
                    ),
                ),
                None => failure("cannot recover", &shard_directory, error),
            }
        })?;
        let ciphers: HashMap<(u64, u64), SegmentCipher> =
            recovered.segment_ciphers.iter().cloned().collect();
        for message in recovered.index.iter() {
            let bytes = render(&shard_directory, &ciphers, message)
                .map_err(|e| failure("cannot read a message body in", &shard_directory, e))?;
            let path = output.join(format!("{}.msg", message.commit.queue_id));
            fs::write(&path, bytes).map_err(|error| failure("cannot write", &path, error))?;
            exported += 1;
        }
    }
    Ok(exported)
}

fn load_ring(directory: &Path) -> Result<KeyRing, Fatal> {
    let keys = load_key_directory(directory).map_err(|problems| {
        let causes: Vec<String> = problems
            .iter()
            .map(|(path, reason)| format!("{}: {reason}", path.display()))
            .collect();
        Fatal::new(
            ExitReason::ConfigInvalid,
            causes.join("; "),
            "pass the directory of `server.spool_keys` and fix the files named",
        )
    })?;
    KeyRing::new(keys, None).map_err(Fatal::internal)
}

fn shard_directories(spool: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = fs::read_dir(spool)?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("shard-"))
        .map(|entry| entry.path())
        .collect();
    found.sort();
    Ok(found)
}

fn render(
    shard_directory: &Path,
    ciphers: &HashMap<(u64, u64), SegmentCipher>,
    message: &QueuedMessage,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let pending: Vec<usize> = message
        .pending
        .iter()
        .map(|&index| index as usize)
        .collect();
    write_envelope(&mut out, &message.commit.envelope, &pending);
    out.extend_from_slice(&message.commit.header_prefix);
    match &message.commit.body {
        BodyLocation::Inline(bytes) => out.extend_from_slice(bytes),
        BodyLocation::Extents(extents) => {
            for extent in extents {
                let path = shard_directory
                    .join(format!("gen-{:08}", extent.generation))
                    .join(segment_file_name(extent.segment));
                let cipher = ciphers.get(&(extent.generation, extent.segment));
                out.extend_from_slice(&read_body_chunk(&path, cipher, extent)?);
            }
        }
    }
    Ok(out)
}

/// Reads the BODY record an extent points at, checks its CRC, opens it if its segment is
/// sealed (`cipher`), and returns its chunk.
fn read_body_chunk(
    segment: &Path,
    cipher: Option<&SegmentCipher>,
    extent: &Extent,
) -> io::Result<Vec<u8>> {
    let file = fs::File::open(segment)?;
    let tag = if cipher.is_some() { SEAL_TAG_BYTES } else { 0 };
    let mut record = vec![0u8; RECORD_HEADER_BYTES + extent.length as usize + tag];
    file.read_exact_at(&mut record, extent.offset)?;
    let damaged = |reason: &dyn std::fmt::Display| {
        io::Error::other(format!(
            "the body record at offset {} of {} is damaged: {reason}",
            extent.offset,
            segment.display()
        ))
    };
    let scanned = decode_record(&record, extent.offset).map_err(|bad| damaged(&bad))?;
    let mut scratch = Vec::new();
    let payload = open_payload(cipher, &scanned, &mut scratch).map_err(|error| damaged(&error))?;
    let body = BodyRecord::decode(payload).map_err(io::Error::other)?;
    Ok(body.chunk.to_vec())
}

/// Writes the envelope as the SMTP commands that carried it, so the file reads like a replay.
fn write_envelope(out: &mut Vec<u8>, envelope: &Envelope, pending: &[usize]) {
    out.extend_from_slice(b"MAIL FROM:<");
    out.extend_from_slice(envelope.mail_from.as_bytes());
    out.push(b'>');
    match envelope.body {
        BodyType::EightBitMime => out.extend_from_slice(b" BODY=8BITMIME"),
        BodyType::SevenBit => {}
    }
    if envelope.smtputf8 {
        out.extend_from_slice(b" SMTPUTF8");
    }
    out.extend_from_slice(envelope.dsn_mail_parameters().as_bytes());
    out.extend_from_slice(envelope.auth_mail_parameter().as_bytes());
    out.extend_from_slice(b"\r\n");

    for (index, recipient) in envelope.rcpt_to.iter().enumerate() {
        if !pending.contains(&index) {
            continue;
        }
        out.extend_from_slice(b"RCPT TO:<");
        out.extend_from_slice(recipient.address.as_bytes());
        out.push(b'>');
        out.extend_from_slice(recipient.dsn_rcpt_parameters().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"DATA\r\n");
}
