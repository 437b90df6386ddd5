//! Recovery at start-up: reads every generation's segments of one shard, in order, checks
//! every record's CRC, opens sealed records with the key their segment names, and rebuilds the
//! queue index. It tells a torn tail (the newest segment of a crashed generation) from damage
//! (anywhere else, or any record that fails authentication), quarantines damaged segments and
//! resumes after the damage. It never writes to the spool, never skips a bad record without an
//! error line, and refuses (`MissingSpoolKey`) rather than start without a key a segment names.

use std::io;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::spool::{
    decode_record, open_payload, KeyRing, RecordLocation, RecordType, Scanned, SegmentCipher,
    SegmentKeyRecord, BLOCK_BYTES,
};

/// A segment names a key that is not in the key directory: nothing in it can be read, and
/// starting without it would lose its messages. Carried inside an `io::Error` from `recover`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "spool segment {} is sealed with key `{key_id}`, which is not in the key directory",
    .path.display()
)]
pub struct MissingSpoolKey {
    pub key_id: String,
    pub path: PathBuf,
}

impl MissingSpoolKey {
    /// The `MissingSpoolKey` inside an error from `recover`, if that is what it is.
    pub fn within(error: &io::Error) -> Option<&MissingSpoolKey> {
        error.get_ref()?.downcast_ref::<MissingSpoolKey>()
    }
}

/// What recovery found in one shard's spool directory.
pub struct Recovered {
    pub index: crate::spool::QueueIndex,
    pub next_generation: u64,
    pub segments: usize,
    /// Every segment file found, as `(generation, segment)`, in log order.
    pub segment_files: Vec<(u64, u64)>,
    pub bytes: u64,
    pub torn_tails: usize,
    pub quarantined: usize,
    /// Sealed segments with a damaged record, as `(generation, segment)`. They are never
    /// reclaimed automatically: records after the damage may belong to messages that can no
    /// longer be read, and an operator must decide.
    pub quarantined_segments: Vec<(u64, u64)>,
    /// The key of every encrypted segment found, for reading message bodies back later.
    pub segment_ciphers: Vec<((u64, u64), SegmentCipher)>,
}

/// Scans every generation of one shard, in order, and rebuilds the queue index, opening sealed
/// records with the keys in `keys`. Runs once at start-up, before the shard serves, so plain
/// blocking reads are acceptable here. A segment sealed with a key `keys` lacks fails the whole
/// recovery with a `MissingSpoolKey` inside the error.
pub fn recover(shard_directory: &Path, keys: &KeyRing) -> io::Result<Recovered> {
    let mut recovered = Recovered {
        index: crate::spool::QueueIndex::new(),
        next_generation: 1,
        segments: 0,
        segment_files: Vec::new(),
        bytes: 0,
        torn_tails: 0,
        quarantined: 0,
        quarantined_segments: Vec::new(),
        segment_ciphers: Vec::new(),
    };
    for (generation, directory) in numbered_entries(shard_directory, "gen-", "")? {
        recovered.next_generation = recovered.next_generation.max(generation + 1);
        let segments = numbered_entries(&directory, "seg-", ".log")?;
        let newest = segments.last().map(|(number, _)| *number);
        for (segment, path) in &segments {
            let place = SegmentPlace {
                generation,
                segment: *segment,
                path,
                newest_in_generation: Some(*segment) == newest,
            };
            recover_segment(&mut recovered, keys, &place)?;
        }
    }
    Ok(recovered)
}

/// Which segment recovery is reading.
struct SegmentPlace<'p> {
    generation: u64,
    segment: u64,
    path: &'p Path,
    newest_in_generation: bool,
}

fn recover_segment(
    recovered: &mut Recovered,
    keys: &KeyRing,
    place: &SegmentPlace<'_>,
) -> io::Result<()> {
    let (generation, segment, path) = (place.generation, place.segment, place.path);
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        // Only `postern spool export` reads a spool that a running relay may be reclaiming;
        // a segment deleted between the listing and the read held finished messages only.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    recovered.segments += 1;
    recovered.segment_files.push((generation, segment));
    recovered.bytes += bytes.len() as u64;
    let cipher = segment_cipher(recovered, keys, place, &bytes)?;
    let mut scratch = Vec::new();
    let mut unopened = 0usize;

    // Every batch starts on a block boundary, so after a damaged record in a sealed segment the
    // scan resumes at the next block that starts with a valid record: one bad block costs its
    // own records, not the rest of the segment.
    let mut base = 0usize;
    loop {
        let scan = crate::spool::scan_segment(&bytes[base..]);
        for record in &scan.records {
            let mut record = record.clone();
            let Scanned::Record {
                record_type,
                offset,
                ..
            } = &mut record;
            *offset += base as u64;
            let (record_type, offset) = (*record_type, *offset);
            if record_type == RecordType::SegmentKey {
                if offset != 0 {
                    quarantine(
                        recovered,
                        place,
                        offset,
                        &"SEGMENT_KEY record inside a segment",
                    );
                }
                continue;
            }
            let payload = match open_payload(cipher.as_ref(), &record, &mut scratch) {
                Ok(payload) => payload,
                Err(error) => {
                    // The frame is intact (its CRC matched), so the records after it are still
                    // where their headers say: only this one is lost. One line per segment
                    // (a lost key record makes every record fail), and a count at the end.
                    if unopened == 0 {
                        quarantine(recovered, place, offset, &error);
                    }
                    unopened += 1;
                    continue;
                }
            };
            let location = RecordLocation {
                generation,
                segment,
                offset,
            };
            if let Err(error) = recovered.index.apply(location, record_type, payload) {
                warn!(
                    path = %path.display(),
                    offset = location.offset,
                    %error,
                    "undecodable record payload skipped"
                );
            }
        }
        let crate::spool::ScanEnd::Bad { offset, reason } = scan.end else {
            break;
        };
        let damaged_at = base + offset as usize;
        if place.newest_in_generation {
            // A crash during the last batch: nothing at or after it was acknowledged. Blocks
            // of that batch may have reached the disk out of order, so nothing after the
            // damage is trusted here.
            recovered.torn_tails += 1;
            info!(
                path = %path.display(),
                offset = damaged_at,
                ?reason,
                "torn tail after a crash; ignored"
            );
            break;
        }

        // A sealed segment ended cleanly when it was written: this is damage on the medium.
        let resume = next_valid_block(&bytes, damaged_at);
        mark_quarantined(recovered, generation, segment);
        error!(
            path = %path.display(),
            offset = damaged_at,
            resumed_at = resume,
            ?reason,
            "damaged spool record: the messages it held may be lost; the segment and every \
             later one of this shard are kept for inspection (see docs/spool.md)"
        );
        match resume {
            Some(next) => base = next,
            None => break,
        }
    }
    if let Some(cipher) = cipher {
        recovered
            .segment_ciphers
            .push(((generation, segment), cipher));
    }
    Ok(())
}

/// The key of a segment that starts with a SEGMENT_KEY record, `None` for a plaintext one.
/// A key id missing from `keys` is an error (`MissingSpoolKey`); a SEGMENT_KEY record that does
/// not decode quarantines the segment, whose sealed records then cannot be opened.
fn segment_cipher(
    recovered: &mut Recovered,
    keys: &KeyRing,
    place: &SegmentPlace<'_>,
    bytes: &[u8],
) -> io::Result<Option<SegmentCipher>> {
    let Ok(Scanned::Record {
        record_type: RecordType::SegmentKey,
        payload,
        sealed: false,
        ..
    }) = decode_record(bytes, 0)
    else {
        return Ok(None);
    };
    let record = match SegmentKeyRecord::decode(payload) {
        Ok(record) => record,
        Err(error) => {
            quarantine(recovered, place, 0, &error);
            return Ok(None);
        }
    };
    let Some(key) = keys.get(&record.key_id) else {
        return Err(io::Error::other(MissingSpoolKey {
            key_id: record.key_id,
            path: place.path.to_path_buf(),
        }));
    };
    Ok(Some(SegmentCipher::derive(
        key,
        &record.salt,
        place.generation,
        place.segment,
    )))
}

/// Logs a record that is intact as a frame but cannot be trusted (it fails authentication, or
/// breaks the encryption rules of its segment), and quarantines its segment.
fn quarantine(
    recovered: &mut Recovered,
    place: &SegmentPlace<'_>,
    offset: u64,
    reason: &dyn std::fmt::Display,
) {
    mark_quarantined(recovered, place.generation, place.segment);
    error!(
        path = %place.path.display(),
        offset,
        %reason,
        "damaged spool record: it cannot be trusted and was skipped; the messages it held may \
         be lost; the segment is kept for inspection (see docs/spool.md)"
    );
}

fn mark_quarantined(recovered: &mut Recovered, generation: u64, segment: u64) {
    if !recovered
        .quarantined_segments
        .contains(&(generation, segment))
    {
        recovered.quarantined += 1;
        recovered.quarantined_segments.push((generation, segment));
    }
}

/// The first block boundary after `damaged_at` where a record with a valid checksum starts.
fn next_valid_block(bytes: &[u8], damaged_at: usize) -> Option<usize> {
    let first = (damaged_at / BLOCK_BYTES + 1) * BLOCK_BYTES;
    (first..bytes.len())
        .step_by(BLOCK_BYTES)
        .find(|&start| decode_record(&bytes[start..], start as u64).is_ok())
}

/// Entries of `directory` named `<prefix><number><suffix>`, sorted by number.
fn numbered_entries(
    directory: &Path,
    prefix: &str,
    suffix: &str,
) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(number) = number {
            found.push((number, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(number, _)| *number);
    Ok(found)
}

#[cfg(test)]
mod tests {
    //! Recovery of encrypted segments, over real files built with the pure encoders (recovery
    //! itself uses plain blocking reads, so no executor is needed).

    use super::*;
    use crate::shard::spool::segment_path;
    use crate::smtp::{BodyType, Envelope, Recipient};
    use crate::spool::{
        encode_record, pad_to_block, BodyLocation, CommitRecord, SpoolKey, SALT_BYTES,
    };

    const SALT: [u8; SALT_BYTES] = [9; SALT_BYTES];

    fn commit(queue_id: &str) -> Vec<u8> {
        let record = CommitRecord {
            queue_id: queue_id.to_owned(),
            received_at_unix_ms: 1,
            envelope: Envelope {
                helo: "client.test".into(),
                mail_from: "s@client.test".into(),
                rcpt_to: vec![Recipient {
                    address: "r@example.com".into(),
                    notify: None,
                    orcpt: None,
                }],
                body: BodyType::SevenBit,
                smtputf8: false,
                declared_size: None,
                ret: None,
                envid: None,
                auth: None,
            },
            header_prefix: Vec::new(),
            body: BodyLocation::Inline(b"Subject: hi\r\n\r\nhello\r\n".to_vec()),
            copied: None,
        };
        let mut payload = Vec::new();
        record.encode(&mut payload);
        payload
    }

    /// A segment 1 of generation 1 sealed under `key`: its key record, then one COMMIT per
    /// queue id, each in its own block. `plain_at` writes that COMMIT in clear instead.
    fn sealed_segment(key: &SpoolKey, queue_ids: &[&str], plain_at: Option<usize>) -> Vec<u8> {
        let cipher = SegmentCipher::derive(key, &SALT, 1, 1);
        let mut bytes = Vec::new();
        let mut key_record = Vec::new();
        SegmentKeyRecord {
            key_id: key.id().to_owned(),
            salt: SALT,
        }
        .encode(&mut key_record);
        encode_record(&mut bytes, RecordType::SegmentKey, 1, &key_record);
        for (index, queue_id) in queue_ids.iter().enumerate() {
            let sequence = index as u64 + 2;
            let offset = bytes.len() as u64;
            if plain_at == Some(index) {
                encode_record(&mut bytes, RecordType::Commit, sequence, &commit(queue_id));
            } else {
                cipher.encode_record(
                    &mut bytes,
                    RecordType::Commit,
                    sequence,
                    offset,
                    &commit(queue_id),
                );
            }
            pad_to_block(&mut bytes, 0);
        }
        bytes
    }

    /// A shard directory holding `segment` as generation 1 segment 1, and an empty newer
    /// segment so that the first one is not the newest of its generation.
    fn shard_with(segment: &[u8]) -> tempfile::TempDir {
        let shard = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(shard.path().join("gen-00000001")).unwrap();
        std::fs::write(segment_path(shard.path(), 1, 1), segment).unwrap();
        std::fs::write(segment_path(shard.path(), 1, 2), b"").unwrap();
        shard
    }

    fn ring(keys: &[SpoolKey]) -> KeyRing {
        KeyRing::new(keys.to_vec(), None).unwrap()
    }

    #[test]
    fn sealed_segments_recover_with_their_key_and_stop_without_it() {
        let key = SpoolKey::new("k1", [1; 32]);
        let shard = shard_with(&sealed_segment(&key, &["A1", "A2"], None));

        let recovered = recover(shard.path(), &ring(&[key])).unwrap();
        assert_eq!(recovered.index.len(), 2);
        assert_eq!(recovered.quarantined, 0);
        assert_eq!(recovered.segment_ciphers.len(), 1);

        let error = recover(shard.path(), &KeyRing::default()).err().unwrap();
        let missing = MissingSpoolKey::within(&error).expect("a missing key");
        assert_eq!(missing.key_id, "k1");
        assert_eq!(missing.path, segment_path(shard.path(), 1, 1));

        // The right id with the wrong bytes opens nothing: every record is damage.
        let impostor = SpoolKey::new("k1", [2; 32]);
        let recovered = recover(shard.path(), &ring(&[impostor])).unwrap();
        assert_eq!(recovered.index.len(), 0);
        assert_eq!(recovered.quarantined_segments, [(1, 1)]);
    }

    #[test]
    fn a_plaintext_record_in_a_sealed_segment_is_refused() {
        let key = SpoolKey::new("k1", [1; 32]);
        let shard = shard_with(&sealed_segment(&key, &["A1", "FORGED", "A3"], Some(1)));
        let recovered = recover(shard.path(), &ring(&[key])).unwrap();
        assert!(recovered.index.get("FORGED").is_none());
        assert!(recovered.index.get("A1").is_some() && recovered.index.get("A3").is_some());
        assert_eq!(recovered.quarantined_segments, [(1, 1)]);
    }

    #[test]
    fn a_segment_whose_key_record_is_lost_is_quarantined() {
        let key = SpoolKey::new("k1", [1; 32]);
        let mut segment = sealed_segment(&key, &["A1", "A2"], None);
        segment[..BLOCK_BYTES].fill(0xEE);
        let shard = shard_with(&segment);
        let recovered = recover(shard.path(), &ring(&[key])).unwrap();
        assert_eq!(recovered.index.len(), 0);
        assert_eq!(recovered.quarantined_segments, [(1, 1)]);
        assert!(recovered.segment_ciphers.is_empty());
    }

    #[test]
    fn plaintext_segments_still_recover_with_keys_configured() {
        let mut segment = Vec::new();
        encode_record(&mut segment, RecordType::Commit, 1, &commit("P1"));
        pad_to_block(&mut segment, 0);
        let shard = shard_with(&segment);
        let keys = ring(&[SpoolKey::new("k1", [1; 32])]);
        let recovered = recover(shard.path(), &keys).unwrap();
        assert!(recovered.index.get("P1").is_some());
        assert_eq!(recovered.quarantined, 0);
    }
}
