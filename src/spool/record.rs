//! The record frame: the 24-byte header, the record types, and the block padding that ends
//! every group-commit batch. It owns the exact byte layout and the checksum rule; it never
//! interprets payloads (see `payload`) and never performs I/O.
//!
//! Header layout, all integers little-endian:
//!
//! ```text
//! 0..4   magic      b"PSTR"
//! 4      type       RecordType
//! 5      flags      0, or FLAG_SEALED when the payload is AEAD-sealed (see `seal`)
//! 6..8   reserved   0
//! 8..12  length     payload bytes, at most RECORD_PAYLOAD_MAX_BYTES
//! 12..20 sequence   assigned by the writer
//! 20..24 crc32c     over the header with this field zeroed, then the payload
//! ```

/// Group commits write whole blocks of this size, so a batch never shares a block with the
/// acknowledged batch before it. 4 KiB is the logical block size of the NVMe drives we target
/// and the unit O_DIRECT writes must be aligned to.
pub const BLOCK_BYTES: usize = 4096;

/// Size of the fixed record header.
pub const RECORD_HEADER_BYTES: usize = 24;

/// Largest payload of any record. A BODY chunk is at most this, and a scanner that meets a
/// larger length knows the header is damaged without reading further.
pub const RECORD_PAYLOAD_MAX_BYTES: usize = 1 << 20;

/// The first four bytes of every record. Its first byte is non-zero, which is what lets the
/// scanner tell a record from zero padding by its first byte alone.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"PSTR");

/// The flags bit of a record whose payload is sealed: the stored payload is the ciphertext
/// followed by a `SEAL_TAG_BYTES` authentication tag, and the CRC covers those stored bytes.
pub const FLAG_SEALED: u8 = 1;

/// Bytes sealing adds to a payload (the AEAD tag).
pub const SEAL_TAG_BYTES: usize = 16;

/// Largest payload a writer may hand to the spool: a sealed record must still fit
/// `RECORD_PAYLOAD_MAX_BYTES` once its tag is added, whether or not this spool encrypts.
pub const PLAIN_PAYLOAD_MAX_BYTES: usize = RECORD_PAYLOAD_MAX_BYTES - SEAL_TAG_BYTES;

pub(crate) const MAGIC_RANGE: std::ops::Range<usize> = 0..4;
pub(crate) const TYPE_AT: usize = 4;
pub(crate) const FLAGS_AT: usize = 5;
pub(crate) const RESERVED_RANGE: std::ops::Range<usize> = 6..8;
pub(crate) const LENGTH_RANGE: std::ops::Range<usize> = 8..12;
pub(crate) const SEQUENCE_RANGE: std::ops::Range<usize> = 12..20;
pub(crate) const CRC_RANGE: std::ops::Range<usize> = 20..24;

/// The kind of a record. The discriminants are the on-disk type byte and must never change.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// A chunk of a large message body, written before its COMMIT.
    Body = 1,
    /// The message is accepted: envelope, recipients and where its body lies.
    Commit = 2,
    Delivered = 3,
    Deferred = 4,
    Failed = 5,
    Held = 6,
    Released = 7,
    Deleted = 8,
    /// The generation was closed cleanly; nothing follows it in that generation.
    Seal = 9,
    /// The first record of an encrypted segment: which key seals every later record in it.
    /// Always in clear (flags 0) and always at offset 0; a segment without one is plaintext.
    SegmentKey = 10,
}

impl RecordType {
    /// Every type, in discriminant order; useful for tests and generators.
    pub const ALL: [RecordType; 10] = [
        RecordType::Body,
        RecordType::Commit,
        RecordType::Delivered,
        RecordType::Deferred,
        RecordType::Failed,
        RecordType::Held,
        RecordType::Released,
        RecordType::Deleted,
        RecordType::Seal,
        RecordType::SegmentKey,
    ];

    /// The type for an on-disk type byte, or `None` for a byte this version does not know.
    pub fn from_byte(byte: u8) -> Option<RecordType> {
        RecordType::ALL.into_iter().find(|t| *t as u8 == byte)
    }
}

/// Bytes a record with `payload_len` payload bytes occupies in a segment.
pub fn record_length(payload_len: usize) -> usize {
    RECORD_HEADER_BYTES + payload_len
}

/// Appends one framed record to `out`.
///
/// # Panics
///
/// If `payload` is longer than `RECORD_PAYLOAD_MAX_BYTES`: such a record could never be read
/// back, so writing it would be a silent loss of acknowledged data. Callers chunk bodies and
/// bound inline bodies so this cannot happen.
pub fn encode_record(out: &mut Vec<u8>, record_type: RecordType, sequence: u64, payload: &[u8]) {
    encode_frame(out, record_type, 0, sequence, payload, 0, |_| [0; 0]);
}

/// Appends one framed record with `FLAG_SEALED` set: `payload` is copied into `out`, `seal`
/// encrypts that copy in place and returns the tag, which follows it. The CRC is computed over
/// the sealed bytes, so the scanner checks a sealed record exactly like any other.
///
/// # Panics
///
/// As `encode_record`, if the sealed payload would exceed `RECORD_PAYLOAD_MAX_BYTES`.
pub(crate) fn encode_sealed_record(
    out: &mut Vec<u8>,
    record_type: RecordType,
    sequence: u64,
    payload: &[u8],
    seal: impl FnOnce(&mut [u8]) -> [u8; SEAL_TAG_BYTES],
) {
    encode_frame(
        out,
        record_type,
        FLAG_SEALED,
        sequence,
        payload,
        SEAL_TAG_BYTES,
        seal,
    );
}

fn encode_frame<const TAG: usize>(
    out: &mut Vec<u8>,
    record_type: RecordType,
    flags: u8,
    sequence: u64,
    payload: &[u8],
    tag_bytes: usize,
    seal: impl FnOnce(&mut [u8]) -> [u8; TAG],
) {
    debug_assert_eq!(TAG, tag_bytes);
    let stored_len = payload.len() + tag_bytes;
    assert!(
        stored_len <= RECORD_PAYLOAD_MAX_BYTES,
        "spool record payload of {stored_len} bytes exceeds RECORD_PAYLOAD_MAX_BYTES"
    );
    let length = u32::try_from(stored_len).expect("bounded by RECORD_PAYLOAD_MAX_BYTES above");

    let mut header = [0u8; RECORD_HEADER_BYTES];
    header[MAGIC_RANGE].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    header[TYPE_AT] = record_type as u8;
    header[FLAGS_AT] = flags;
    header[LENGTH_RANGE].copy_from_slice(&length.to_le_bytes());
    header[SEQUENCE_RANGE].copy_from_slice(&sequence.to_le_bytes());

    let start = out.len();
    out.reserve(record_length(stored_len));
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    let payload_start = start + RECORD_HEADER_BYTES;
    let tag = seal(&mut out[payload_start..]);
    out.extend_from_slice(&tag);

    let crc = record_crc(&header, &out[payload_start..]);
    out[start + CRC_RANGE.start..start + CRC_RANGE.end].copy_from_slice(&crc.to_le_bytes());

    // Verify on write as well as on read: a frame that does not decode must never reach disk.
    debug_assert!(crate::spool::scan::decode_record(&out[start..], 0).is_ok());
}

/// The CRC32C of a header (whose CRC field is ignored and treated as zero) and its payload.
pub(crate) fn record_crc(header: &[u8; RECORD_HEADER_BYTES], payload: &[u8]) -> u32 {
    let mut zeroed = *header;
    zeroed[CRC_RANGE].fill(0);
    let crc = crc32c::crc32c(&zeroed);
    crc32c::crc32c_append(crc, payload)
}

/// Appends zero bytes to `out` until `base_offset + out.len()` is a multiple of `BLOCK_BYTES`,
/// where `base_offset` is the segment offset at which `out` will be written. Appends nothing if
/// it already is. Every batch ends this way so the next batch starts on a fresh block.
pub fn pad_to_block(out: &mut Vec<u8>, base_offset: u64) {
    let block = BLOCK_BYTES as u64;
    let end = (base_offset % block) + out.len() as u64 % block;
    let padding = (block - end % block) % block;
    // `padding` is below BLOCK_BYTES, so the conversion cannot truncate.
    out.resize(out.len() + padding as usize, 0);
    debug_assert_eq!((base_offset + out.len() as u64) % block, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_bytes_round_trip_and_unknown_bytes_are_refused() {
        for record_type in RecordType::ALL {
            assert_eq!(RecordType::from_byte(record_type as u8), Some(record_type));
        }
        assert_eq!(RecordType::from_byte(0), None);
        assert_eq!(RecordType::from_byte(11), None);
        assert_eq!(RecordType::from_byte(255), None);
    }

    #[test]
    fn header_layout_is_as_documented() {
        let mut out = Vec::new();
        encode_record(
            &mut out,
            RecordType::Deferred,
            0x0102_0304_0506_0708,
            b"abc",
        );
        assert_eq!(out.len(), RECORD_HEADER_BYTES + 3);
        assert_eq!(&out[0..4], b"PSTR");
        assert_eq!(out[4], 4);
        assert_eq!(out[5], 0);
        assert_eq!(&out[6..8], &[0, 0]);
        assert_eq!(&out[8..12], &3u32.to_le_bytes());
        assert_eq!(&out[12..20], &0x0102_0304_0506_0708u64.to_le_bytes());
        let header: [u8; RECORD_HEADER_BYTES] = out[..RECORD_HEADER_BYTES].try_into().unwrap();
        assert_eq!(&out[20..24], &record_crc(&header, b"abc").to_le_bytes());
        assert_eq!(&out[24..], b"abc");
    }

    #[test]
    fn padding_reaches_the_next_boundary_from_any_base() {
        for base in [0u64, 1, 100, 4095, 4096, 4097, 8191, 1 << 40] {
            for len in [0usize, 1, 24, 4095, 4096, 4097, 10_000] {
                let mut out = vec![7u8; len];
                pad_to_block(&mut out, base);
                assert_eq!((base + out.len() as u64) % BLOCK_BYTES as u64, 0);
                assert!(out.len() - len < BLOCK_BYTES);
                assert!(out[len..].iter().all(|b| *b == 0));
            }
        }
    }

    #[test]
    #[should_panic(expected = "exceeds RECORD_PAYLOAD_MAX_BYTES")]
    fn oversized_payload_is_refused() {
        let mut out = Vec::new();
        encode_record(
            &mut out,
            RecordType::Body,
            1,
            &vec![0; RECORD_PAYLOAD_MAX_BYTES + 1],
        );
    }
}
