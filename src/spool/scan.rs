//! Reading records back: `decode_record` checks one frame, `scan_segment` walks a whole segment
//! the way recovery does. It owns the padding rule and the distinction between a clean end and a
//! bad record; it never decides what a bad record means (torn tail or damage), because only the
//! caller knows whether the segment was sealed. It never panics on any input and never copies a
//! payload: records borrow from the bytes given.

use thiserror::Error;

use super::record::{
    record_crc, RecordType, BLOCK_BYTES, CRC_RANGE, FLAGS_AT, FLAG_SEALED, LENGTH_RANGE,
    MAGIC_RANGE, RECORD_HEADER_BYTES, RECORD_MAGIC, RECORD_PAYLOAD_MAX_BYTES, RESERVED_RANGE,
    SEQUENCE_RANGE, TYPE_AT,
};

/// One record found in a segment, borrowing its payload from the scanned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scanned<'a> {
    Record {
        record_type: RecordType,
        sequence: u64,
        /// The stored payload: for a sealed record, ciphertext and tag (see `seal`).
        payload: &'a [u8],
        /// `FLAG_SEALED` was set: the payload must be opened before it is decoded.
        sealed: bool,
        /// Offset of the header from the start of the segment.
        offset: u64,
        /// Header plus payload bytes.
        length: usize,
    },
}

/// Why bytes that are not padding failed to form a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum BadRecord {
    /// Non-zero bytes that do not start with the record magic, or zero padding that turns
    /// non-zero before the next block boundary (reported where the padding starts).
    #[error("record magic is wrong")]
    Magic,
    /// The length field is over `RECORD_PAYLOAD_MAX_BYTES`, or the record runs past the end of
    /// the bytes (a write cut short).
    #[error("record length is out of range or the record is cut short")]
    Length,
    /// The CRC32C over header and payload does not match.
    #[error("record checksum does not match")]
    Checksum,
    /// The checksum matches but the type byte, flags or reserved field hold values this version
    /// does not know: the record was written by a newer format, not damaged.
    #[error("record type, flags or reserved field unknown to this version")]
    UnknownType,
}

/// How a segment scan ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Clean end: zero bytes at a block start (never-written space) or the end of the bytes.
    Clean,
    /// A record whose magic, length or CRC is wrong, at `offset`. In the newest (active) segment
    /// of a crashed generation this is a torn tail: everything before it is valid and nothing
    /// after it was acknowledged. In a sealed segment it is damage: the caller quarantines it.
    Bad { offset: u64, reason: BadRecord },
}

/// The result of scanning one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan<'a> {
    /// Every valid record before the end, in offset order.
    pub records: Vec<Scanned<'a>>,
    pub end: ScanEnd,
    /// Bytes from the start of the segment that are valid records or valid padding: the clean
    /// end position, or the `Bad` offset (which is where the last valid record ends).
    pub valid_bytes: u64,
    /// When the scan ended `Clean` at a zero block, the offset of the first non-zero byte after
    /// that block start, if any. In a sealed segment this means writes were lost and the caller
    /// should quarantine it; in the active segment of a crashed generation it is a batch whose
    /// blocks reached the disk out of order and whose sync never completed, so it was never
    /// acknowledged.
    pub data_after_clean_end: Option<u64>,
}

/// Checks the record framed at the start of `bytes`, which sits at `offset` in its segment.
/// Bytes after the record are ignored.
pub fn decode_record(bytes: &[u8], offset: u64) -> Result<Scanned<'_>, BadRecord> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let Some(header) = bytes.first_chunk::<RECORD_HEADER_BYTES>() else {
        // A short tail that still agrees with the magic is a cut-short write, anything else is
        // not a record at all.
        let seen = bytes.len().min(magic.len());
        return Err(if bytes[..seen] == magic[..seen] {
            BadRecord::Length
        } else {
            BadRecord::Magic
        });
    };

    if header[MAGIC_RANGE] != magic {
        return Err(BadRecord::Magic);
    }

    let payload_len = u32::from_le_bytes(field(header, LENGTH_RANGE)) as usize;
    if payload_len > RECORD_PAYLOAD_MAX_BYTES || bytes.len() - RECORD_HEADER_BYTES < payload_len {
        return Err(BadRecord::Length);
    }
    let length = RECORD_HEADER_BYTES + payload_len;
    let payload = &bytes[RECORD_HEADER_BYTES..length];

    let stored_crc = u32::from_le_bytes(field(header, CRC_RANGE));
    if record_crc(header, payload) != stored_crc {
        return Err(BadRecord::Checksum);
    }

    // Checked only after the CRC, so that an unknown value means "newer writer", not "damage".
    let record_type = RecordType::from_byte(header[TYPE_AT]).ok_or(BadRecord::UnknownType)?;
    let flags = header[FLAGS_AT];
    if (flags != 0 && flags != FLAG_SEALED) || header[RESERVED_RANGE] != [0, 0] {
        return Err(BadRecord::UnknownType);
    }

    Ok(Scanned::Record {
        record_type,
        sequence: u64::from_le_bytes(field(header, SEQUENCE_RANGE)),
        payload,
        sealed: flags == FLAG_SEALED,
        offset,
        length,
    })
}

/// Scans one segment's bytes (the whole file content as read from disk) from offset 0.
///
/// A batch starts on a block boundary and ends with zero padding up to the next one, so: a zero
/// byte where a record could start begins padding, which must stay zero up to the next block
/// boundary (if it does not, the run is `Bad` where it starts); a zero byte at a block start is the
/// clean end of the written log; any other bytes that do not form a valid record end the scan
/// as `Bad` at the record's offset.
pub fn scan_segment(bytes: &[u8]) -> SegmentScan<'_> {
    let mut records = Vec::new();
    let mut position = 0usize;

    // Each iteration consumes at least one byte, so the loop is bounded by `bytes.len()`.
    let end = loop {
        let Some(rest) = bytes.get(position..).filter(|rest| !rest.is_empty()) else {
            break ScanEnd::Clean;
        };

        // A record's first byte is the magic's, never zero, so a zero byte here can only be
        // padding. Deciding on this one byte (rather than the whole magic) keeps the test
        // inside the block when a batch ends one to three bytes before a boundary.
        if rest[0] == 0 {
            if position.is_multiple_of(BLOCK_BYTES) {
                break ScanEnd::Clean;
            }
            let boundary = next_block_boundary(position).min(bytes.len());
            // The whole run is reported bad, not just the byte: a record whose first byte was
            // zeroed must not have its offset moved, and `valid_bytes` then always ends at the
            // last good record.
            if first_nonzero(&bytes[position..boundary]).is_some() {
                break ScanEnd::Bad {
                    offset: position as u64,
                    reason: BadRecord::Magic,
                };
            }
            position = boundary;
            continue;
        }

        match decode_record(rest, position as u64) {
            Ok(record) => {
                let Scanned::Record { length, .. } = record;
                debug_assert!(length >= RECORD_HEADER_BYTES && length <= rest.len());
                position += length;
                records.push(record);
            }
            Err(reason) => {
                break ScanEnd::Bad {
                    offset: position as u64,
                    reason,
                }
            }
        }
    };

    let data_after_clean_end = match end {
        ScanEnd::Clean if position < bytes.len() => {
            first_nonzero(&bytes[position..]).map(|nonzero| (position + nonzero) as u64)
        }
        _ => None,
    };
    debug_assert!(position <= bytes.len());
    SegmentScan {
        records,
        end,
        valid_bytes: position as u64,
        data_after_clean_end,
    }
}

fn field<const N: usize>(
    header: &[u8; RECORD_HEADER_BYTES],
    range: std::ops::Range<usize>,
) -> [u8; N] {
    let mut value = [0u8; N];
    value.copy_from_slice(&header[range]);
    value
}

fn next_block_boundary(position: usize) -> usize {
    (position / BLOCK_BYTES + 1) * BLOCK_BYTES
}

/// Index of the first non-zero byte. Segments are mostly preallocated zeros, so whole words
/// are compared first and only the word that holds the hit is searched byte by byte.
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    let tail_start = bytes.len() - words.remainder().len();
    let start = words
        .position(|word| *word != [0u8; 8])
        .map_or(tail_start, |index| index * 8);
    bytes[start..]
        .iter()
        .position(|byte| *byte != 0)
        .map(|index| start + index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::record::{encode_record, pad_to_block};
    use proptest::prelude::*;

    type Plain = (RecordType, u64, Vec<u8>);

    /// Encodes batches the way a group commit writes them: each starts on a block boundary and
    /// is padded to the next. Returns the bytes and the expected (offset, length) per record.
    fn write_batches(batches: &[Vec<Plain>]) -> (Vec<u8>, Vec<(u64, usize)>) {
        let mut segment = Vec::new();
        let mut placed = Vec::new();
        for batch in batches {
            let mut buffer = Vec::new();
            let base = segment.len() as u64;
            for (record_type, sequence, payload) in batch {
                placed.push((
                    base + buffer.len() as u64,
                    RECORD_HEADER_BYTES + payload.len(),
                ));
                encode_record(&mut buffer, *record_type, *sequence, payload);
            }
            pad_to_block(&mut buffer, base);
            segment.extend_from_slice(&buffer);
        }
        (segment, placed)
    }

    fn plain(scan: &SegmentScan<'_>) -> Vec<Plain> {
        scan.records
            .iter()
            .map(
                |Scanned::Record {
                     record_type,
                     sequence,
                     payload,
                     ..
                 }| { (*record_type, *sequence, payload.to_vec()) },
            )
            .collect()
    }

    fn offsets(scan: &SegmentScan<'_>) -> Vec<(u64, usize)> {
        scan.records
            .iter()
            .map(|Scanned::Record { offset, length, .. }| (*offset, *length))
            .collect()
    }

    fn three_batches() -> Vec<Vec<Plain>> {
        vec![
            vec![
                (RecordType::Body, 1, vec![b'a'; 5000]),
                (RecordType::Commit, 2, b"commit one".to_vec()),
            ],
            vec![(RecordType::Delivered, 3, b"delivered".to_vec())],
            vec![
                (RecordType::Commit, 4, b"commit two".to_vec()),
                (RecordType::Deferred, 5, Vec::new()),
                (RecordType::Held, 6, b"held".to_vec()),
            ],
        ]
    }

    fn all_records(batches: &[Vec<Plain>]) -> Vec<Plain> {
        batches.iter().flatten().cloned().collect()
    }

    #[test]
    fn padded_batches_scan_back_in_order() {
        let batches = three_batches();
        let (segment, placed) = write_batches(&batches);
        assert_eq!(segment.len(), 4 * BLOCK_BYTES);

        let scan = scan_segment(&segment);
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.valid_bytes, segment.len() as u64);
        assert_eq!(scan.data_after_clean_end, None);
        assert_eq!(plain(&scan), all_records(&batches));
        assert_eq!(offsets(&scan), placed);

        // The second and third batches start on fresh blocks.
        assert_eq!(placed[2].0, 2 * BLOCK_BYTES as u64);
        assert_eq!(placed[3].0, 3 * BLOCK_BYTES as u64);
    }

    #[test]
    fn batch_ending_just_short_of_a_boundary_is_followed_by_the_next_batch() {
        // Padding of one to three bytes is shorter than the magic, so the zero test must stop
        // at the block's end rather than read into the next batch's magic.
        for gap in 0..=2 * RECORD_HEADER_BYTES {
            let payload = vec![0u8; BLOCK_BYTES - RECORD_HEADER_BYTES - gap];
            let batches = vec![
                vec![(RecordType::Body, 1, payload)],
                vec![(RecordType::Commit, 2, b"next".to_vec())],
            ];
            let (segment, placed) = write_batches(&batches);
            assert_eq!(placed[1].0, BLOCK_BYTES as u64);
            let scan = scan_segment(&segment);
            assert_eq!(scan.end, ScanEnd::Clean, "gap of {gap} bytes");
            assert_eq!(plain(&scan), all_records(&batches));
        }
    }

    #[test]
    fn zero_filled_tail_is_a_clean_end() {
        let batches = three_batches();
        let (mut segment, _) = write_batches(&batches);
        let written = segment.len() as u64;
        segment.resize(segment.len() + 16 * BLOCK_BYTES, 0);

        let scan = scan_segment(&segment);
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.valid_bytes, written);
        assert_eq!(scan.data_after_clean_end, None);
        assert_eq!(plain(&scan), all_records(&batches));
    }

    #[test]
    fn empty_and_all_zero_segments_are_clean_and_empty() {
        for segment in [Vec::new(), vec![0u8; 3], vec![0u8; 3 * BLOCK_BYTES]] {
            let scan = scan_segment(&segment);
            assert_eq!(scan.end, ScanEnd::Clean);
            assert_eq!(scan.valid_bytes, 0);
            assert!(scan.records.is_empty());
        }
    }

    #[test]
    fn truncated_last_record_is_a_torn_tail_at_its_offset() {
        let batches = three_batches();
        let (segment, placed) = write_batches(&batches);
        let (last_offset, last_length) = *placed.last().unwrap();
        let expected_before = all_records(&batches)[..placed.len() - 1].to_vec();

        for cut in [
            1,
            3,
            4,
            RECORD_HEADER_BYTES - 1,
            RECORD_HEADER_BYTES,
            last_length - 1,
        ] {
            let scan = scan_segment(&segment[..last_offset as usize + cut]);
            assert_eq!(
                scan.end,
                ScanEnd::Bad {
                    offset: last_offset,
                    reason: BadRecord::Length
                },
                "cut {cut} bytes into the last record"
            );
            assert_eq!(scan.valid_bytes, last_offset);
            assert_eq!(plain(&scan), expected_before);
        }
    }

    #[test]
    fn flipped_byte_in_the_last_record_is_a_torn_tail() {
        let batches = three_batches();
        let (segment, placed) = write_batches(&batches);
        let (last_offset, last_length) = *placed.last().unwrap();
        let expected_before = all_records(&batches)[..placed.len() - 1].to_vec();

        for (within, reason) in [
            (0, BadRecord::Magic),
            (LENGTH_RANGE.start + 2, BadRecord::Length),
            (TYPE_AT, BadRecord::Checksum),
            (SEQUENCE_RANGE.start, BadRecord::Checksum),
            (CRC_RANGE.start, BadRecord::Checksum),
            (last_length - 1, BadRecord::Checksum),
        ] {
            let mut damaged = segment.clone();
            damaged[last_offset as usize + within] ^= 0x40;
            let scan = scan_segment(&damaged);
            assert_eq!(
                scan.end,
                ScanEnd::Bad {
                    offset: last_offset,
                    reason
                },
                "byte {within} of the last record flipped"
            );
            assert_eq!(plain(&scan), expected_before);
        }
    }

    #[test]
    fn flipped_byte_in_the_middle_stops_the_scan_there() {
        let batches = three_batches();
        let (mut segment, placed) = write_batches(&batches);
        let (middle_offset, middle_length) = placed[2];
        segment[middle_offset as usize + middle_length - 1] ^= 1;

        let scan = scan_segment(&segment);
        assert_eq!(
            scan.end,
            ScanEnd::Bad {
                offset: middle_offset,
                reason: BadRecord::Checksum
            }
        );
        assert_eq!(plain(&scan), all_records(&batches)[..2].to_vec());
    }

    #[test]
    fn non_zero_byte_in_padding_is_bad_where_the_padding_starts() {
        let batches = three_batches();
        let (mut segment, placed) = write_batches(&batches);
        let (offset, length) = placed[2];
        let in_padding = offset as usize + length + 100;
        assert!(in_padding < 3 * BLOCK_BYTES);
        segment[in_padding] = 0x01;

        let scan = scan_segment(&segment);
        assert_eq!(
            scan.end,
            ScanEnd::Bad {
                offset: offset + length as u64,
                reason: BadRecord::Magic
            }
        );
        assert_eq!(scan.records.len(), 3);
    }

    #[test]
    fn zeroed_first_byte_of_a_record() {
        let batches = three_batches();
        let (segment, placed) = write_batches(&batches);

        // Inside a batch: the record is bad at its own offset, not one byte later.
        let mut damaged = segment.clone();
        damaged[placed[1].0 as usize] = 0;
        let scan = scan_segment(&damaged);
        assert_eq!(
            scan.end,
            ScanEnd::Bad {
                offset: placed[1].0,
                reason: BadRecord::Magic
            }
        );
        assert_eq!(scan.valid_bytes, placed[1].0);

        // At a batch's start: indistinguishable from never-written space, so the scan ends
        // clean and reports what follows for the caller to judge.
        let mut damaged = segment.clone();
        damaged[placed[2].0 as usize] = 0;
        let scan = scan_segment(&damaged);
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.data_after_clean_end, Some(placed[2].0 + 1));
    }

    #[test]
    fn data_after_a_zero_block_is_reported_beside_the_clean_end() {
        let batches = three_batches();
        let (first, _) = write_batches(&batches[..1]);
        let (later, _) = write_batches(&batches[1..2]);
        let mut segment = first.clone();
        segment.resize(segment.len() + BLOCK_BYTES, 0);
        segment.extend_from_slice(&later);

        let scan = scan_segment(&segment);
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.valid_bytes, first.len() as u64);
        assert_eq!(
            scan.data_after_clean_end,
            Some((first.len() + BLOCK_BYTES) as u64)
        );
        assert_eq!(plain(&scan), batches[0]);
    }

    #[test]
    fn checksummed_record_of_unknown_type_or_flags_is_refused() {
        for (at, value) in [
            (TYPE_AT, 0u8),
            (TYPE_AT, 42),
            (FLAGS_AT, 2),
            (RESERVED_RANGE.start, 1),
        ] {
            let mut segment = Vec::new();
            encode_record(&mut segment, RecordType::Seal, 9, b"");
            segment[at] = value;
            let header: [u8; RECORD_HEADER_BYTES] =
                segment[..RECORD_HEADER_BYTES].try_into().unwrap();
            let crc = record_crc(&header, b"");
            segment[CRC_RANGE].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(decode_record(&segment, 0), Err(BadRecord::UnknownType));
        }
    }

    #[test]
    fn oversized_length_field_is_refused_before_reading_further() {
        let mut segment = Vec::new();
        encode_record(&mut segment, RecordType::Body, 1, b"x");
        let oversized = (RECORD_PAYLOAD_MAX_BYTES as u32 + 1).to_le_bytes();
        segment[LENGTH_RANGE].copy_from_slice(&oversized);
        segment.resize(RECORD_PAYLOAD_MAX_BYTES * 2, 0);
        assert_eq!(decode_record(&segment, 0), Err(BadRecord::Length));
    }

    fn record_strategy() -> impl Strategy<Value = Plain> {
        (
            prop::sample::select(RecordType::ALL.to_vec()),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..600),
        )
    }

    fn batches_strategy() -> impl Strategy<Value = Vec<Vec<Plain>>> {
        prop::collection::vec(prop::collection::vec(record_strategy(), 1..12), 1..5)
    }

    proptest! {
        #[test]
        fn random_batches_scan_back_identically(batches in batches_strategy()) {
            let (segment, placed) = write_batches(&batches);
            let scan = scan_segment(&segment);
            prop_assert_eq!(scan.end, ScanEnd::Clean);
            prop_assert_eq!(scan.valid_bytes, segment.len() as u64);
            prop_assert_eq!(plain(&scan), all_records(&batches));
            prop_assert_eq!(offsets(&scan), placed);
        }

        #[test]
        fn truncation_anywhere_yields_a_prefix(
            batches in batches_strategy(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 16),
        ) {
            let (segment, placed) = write_batches(&batches);
            let expected = all_records(&batches);
            for cut in cuts.iter().map(|cut| cut.index(segment.len() + 1)) {
                let scan = scan_segment(&segment[..cut]);
                let kept = placed.iter().filter(|(o, l)| *o as usize + l <= cut).count();
                prop_assert_eq!(plain(&scan), expected[..kept].to_vec());
                match placed.get(kept) {
                    Some((offset, _)) if (*offset as usize) < cut => prop_assert_eq!(
                        scan.end,
                        ScanEnd::Bad { offset: *offset, reason: BadRecord::Length }
                    ),
                    _ => prop_assert_eq!(scan.end, ScanEnd::Clean),
                }
            }
        }

        #[test]
        fn any_flipped_byte_is_caught_where_it_lies(
            batches in batches_strategy(),
            at in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let (mut segment, placed) = write_batches(&batches);
            let at = at.index(segment.len());
            segment[at] ^= mask;
            let scan = scan_segment(&segment);

            let kept = placed.iter().filter(|(o, l)| *o as usize + l <= at).count();
            prop_assert_eq!(plain(&scan), all_records(&batches)[..kept].to_vec());
            let offset = match placed.get(kept) {
                Some((offset, _)) if *offset as usize <= at => *offset,
                // In padding, which starts where the last record before it ends (the segment
                // starts with a record, so there is one).
                _ => placed[kept - 1].0 + placed[kept - 1].1 as u64,
            };
            if offset as usize == at && at % BLOCK_BYTES == 0 && segment[at] == 0 {
                // Zeroing a batch's first byte makes it look never written: a clean end, with
                // the rest reported beside it for the caller to judge.
                prop_assert_eq!(scan.end, ScanEnd::Clean);
                prop_assert_eq!(scan.data_after_clean_end, Some(at as u64 + 1));
                return Ok(());
            }
            prop_assert!(
                matches!(scan.end, ScanEnd::Bad { offset: bad, .. } if bad == offset),
                "flip at {} gave {:?}, expected {} {:?}", at, scan.end, offset, placed
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..9000)) {
            let scan = scan_segment(&bytes);
            prop_assert!(scan.valid_bytes as usize <= bytes.len());
            let mut previous_end = 0;
            for Scanned::Record { offset, length, .. } in &scan.records {
                prop_assert!(*offset >= previous_end);
                previous_end = offset + *length as u64;
            }
            prop_assert!(previous_end <= scan.valid_bytes);
        }
    }
}
