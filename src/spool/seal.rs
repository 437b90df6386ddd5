//! Encryption at rest for spool records: the spool keys, the SEGMENT_KEY record that names the
//! key of each segment, the per-segment key derivation, and sealing and opening one record
//! payload with AES-256-GCM from ring.
//!
//! The scheme, in full (docs/spool.md explains it for operators):
//!
//! - A spool key is 32 secret bytes with an id (its file name). A segment written while
//!   encryption is on starts with a SEGMENT_KEY record, in clear: algorithm, key id and a 32-byte
//!   salt drawn at random once per generation.
//! - The segment's AEAD key is HKDF-SHA256(salt, spool key) expanded with the info
//!   `"postern spool segment v1" ‖ generation ‖ segment`, so no two segments share a key, even
//!   when a wiped spool starts again at generation 1 under the same spool key (the salt differs).
//! - The nonce of a record is its offset in the segment (8 bytes little-endian, then 4 zero
//!   bytes). Offsets never repeat within a segment, so a nonce never repeats under a key.
//! - The additional data is the record's type, flags and sequence number, so a record cannot be
//!   retyped, renumbered, moved to another offset or into another segment without its open
//!   failing.
//!
//! What it guarantees: a payload that opens is exactly what the writer sealed at that place.
//! It never performs I/O, never logs, and never lets key bytes out through `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use thiserror::Error;

use super::codec::{put_bytes, put_str, put_u8, Reader};
use super::payload::{PayloadError, PAYLOAD_VERSION};
use super::record::{encode_sealed_record, RecordType, FLAG_SEALED, SEAL_TAG_BYTES};
use super::scan::Scanned;

/// Length of a spool key, and of the AES-256-GCM keys derived from it.
pub const KEY_BYTES: usize = 32;

/// Length of the random salt a SEGMENT_KEY record carries.
pub const SALT_BYTES: usize = 32;

/// Longest key id: it is stored in every encrypted segment and shown in logs.
pub const KEY_ID_MAX_BYTES: usize = 64;

/// The SEGMENT_KEY algorithm byte for AES-256-GCM with the derivation described above. A new
/// scheme gets a new byte; this one must never change meaning.
const ALGORITHM_AES_256_GCM_HKDF_SHA256: u8 = 1;

const DERIVATION_LABEL: &[u8] = b"postern spool segment v1";

/// Checks that `id` can name a key: 1 to `KEY_ID_MAX_BYTES` of ASCII letters, digits, `-`, `_`
/// and `.`, not starting with `.`. That keeps it a plain file name and safe in a log line.
pub fn check_key_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || id.len() > KEY_ID_MAX_BYTES {
        return Err(format!(
            "key id must be 1 to {KEY_ID_MAX_BYTES} characters long"
        ));
    }
    if id.starts_with('.') || !id.chars().all(allowed) {
        return Err(
            "key id may hold only letters, digits, '-', '_' and '.', and must not \
                    start with '.'"
                .to_owned(),
        );
    }
    Ok(())
}

/// The secret bytes in a key file: exactly 32 raw bytes, or 64 hexadecimal digits optionally
/// followed by white space (what `postern spool keygen` writes).
pub fn parse_key_file(contents: &[u8]) -> Result<[u8; KEY_BYTES], String> {
    if let Ok(raw) = <[u8; KEY_BYTES]>::try_from(contents) {
        return Ok(raw);
    }
    let text = contents.trim_ascii_end();
    if text.len() != 2 * KEY_BYTES {
        return Err(format!(
            "a key file holds {KEY_BYTES} raw bytes or {} hexadecimal digits, this one has {} \
             bytes; create one with `postern spool keygen`",
            2 * KEY_BYTES,
            contents.len()
        ));
    }
    let mut secret = [0u8; KEY_BYTES];
    for (byte, pair) in secret.iter_mut().zip(text.chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).ok();
        *byte = digits
            .and_then(|digits| u8::from_str_radix(digits, 16).ok())
            .ok_or("the key file is neither 32 raw bytes nor 64 hexadecimal digits")?;
    }
    Ok(secret)
}

/// One spool key. Its `Debug` shows the id only.
#[derive(Clone)]
pub struct SpoolKey {
    id: String,
    secret: [u8; KEY_BYTES],
}

impl SpoolKey {
    /// A key from its id (checked with `check_key_id` by the caller) and its secret bytes.
    pub fn new(id: impl Into<String>, secret: [u8; KEY_BYTES]) -> SpoolKey {
        SpoolKey {
            id: id.into(),
            secret,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for SpoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpoolKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Every key the spool may read with, and the one new segments are sealed with, if any. The
/// default ring is empty: encryption off, and only plaintext segments readable.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, SpoolKey>,
    active: Option<String>,
}

impl KeyRing {
    /// A ring of `keys`; `active`, if given, must be the id of one of them.
    pub fn new(keys: Vec<SpoolKey>, active: Option<&str>) -> Result<KeyRing, String> {
        let keys: BTreeMap<String, SpoolKey> =
            keys.into_iter().map(|key| (key.id.clone(), key)).collect();
        if let Some(active) = active {
            if !keys.contains_key(active) {
                return Err(format!("no key with id `{active}`"));
            }
        }
        Ok(KeyRing {
            keys,
            active: active.map(str::to_owned),
        })
    }

    /// The key new segments are sealed with; `None` means new segments are plaintext.
    pub fn active(&self) -> Option<&SpoolKey> {
        self.active.as_ref().and_then(|id| self.keys.get(id))
    }

    pub fn get(&self, id: &str) -> Option<&SpoolKey> {
        self.keys.get(id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Key ids in order, for logs.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

/// The payload of SEGMENT_KEY: `version, algorithm u8, key_id str, salt bytes (32)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentKeyRecord {
    pub key_id: String,
    pub salt: [u8; SALT_BYTES],
}

impl SegmentKeyRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, PAYLOAD_VERSION);
        put_u8(out, ALGORITHM_AES_256_GCM_HKDF_SHA256);
        put_str(out, &self.key_id);
        put_bytes(out, &self.salt);
    }

    pub fn decode(payload: &[u8]) -> Result<SegmentKeyRecord, PayloadError> {
        let mut reader = Reader::new(payload);
        match reader.u8("version")? {
            PAYLOAD_VERSION => {}
            version => return Err(PayloadError::UnsupportedVersion { version }),
        }
        match reader.u8("algorithm")? {
            ALGORITHM_AES_256_GCM_HKDF_SHA256 => {}
            tag => {
                return Err(PayloadError::InvalidTag {
                    field: "algorithm",
                    tag,
                })
            }
        }
        let key_id = reader.string("key_id")?;
        let salt = reader.bytes("salt")?;
        let salt = <[u8; SALT_BYTES]>::try_from(salt)
            .map_err(|_| PayloadError::Truncated { field: "salt" })?;
        reader.finish()?;
        Ok(SegmentKeyRecord { key_id, salt })
    }
}

/// The AEAD key of one segment, derived once when the segment is created or first read.
#[derive(Clone)]
pub struct SegmentCipher {
    key: LessSafeKey,
}

impl fmt::Debug for SegmentCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SegmentCipher")
    }
}

/// Why a record's payload could not be opened. Each means damage or tampering, never a bug of
/// the reader: the CRC already matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error("sealed record in a segment that names no key (its SEGMENT_KEY record is missing)")]
    SealedWithoutKey,
    #[error("plaintext record in an encrypted segment")]
    PlainInSealedSegment,
    #[error("sealed record failed authentication (tampered, or moved from another place)")]
    Unauthentic,
}

impl SegmentCipher {
    /// Derives the key of segment `segment` of generation `generation` from `key` and `salt`.
    pub fn derive(
        key: &SpoolKey,
        salt: &[u8; SALT_BYTES],
        generation: u64,
        segment: u64,
    ) -> SegmentCipher {
        let generation = generation.to_le_bytes();
        let segment = segment.to_le_bytes();
        let info: [&[u8]; 3] = [DERIVATION_LABEL, &generation, &segment];
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&key.secret);
        let Ok(okm) = prk.expand(&info, &AES_256_GCM) else {
            unreachable!("HKDF-SHA256 can expand to 32 bytes, far below its 8160-byte limit");
        };
        SegmentCipher {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        }
    }

    /// Appends one sealed record at segment offset `offset` to `out`: the payload is copied
    /// once, encrypted in place, and followed by its tag.
    pub fn encode_record(
        &self,
        out: &mut Vec<u8>,
        record_type: RecordType,
        sequence: u64,
        offset: u64,
        payload: &[u8],
    ) {
        encode_sealed_record(out, record_type, sequence, payload, |in_out| {
            let Ok(tag) = self.key.seal_in_place_separate_tag(
                nonce(offset),
                aad(record_type, sequence),
                in_out,
            ) else {
                unreachable!("AES-256-GCM seals any payload below 64 GiB");
            };
            let mut bytes = [0u8; SEAL_TAG_BYTES];
            bytes.copy_from_slice(tag.as_ref());
            bytes
        });
    }

    /// Opens a sealed payload (ciphertext and tag) in place and returns the plaintext part.
    pub fn open<'b>(
        &self,
        record_type: RecordType,
        sequence: u64,
        offset: u64,
        stored: &'b mut [u8],
    ) -> Result<&'b [u8], OpenError> {
        self.key
            .open_in_place(nonce(offset), aad(record_type, sequence), stored)
            .map(|plain| &*plain)
            .map_err(|_| OpenError::Unauthentic)
    }
}

/// The plaintext payload of `record`, a record other than SEGMENT_KEY from a segment sealed
/// under `cipher` (`None`: a plaintext segment). A sealed payload is copied into `scratch`
/// (reused, so no allocation per record) and opened there; a plain one is returned as is.
pub fn open_payload<'r>(
    cipher: Option<&SegmentCipher>,
    record: &Scanned<'r>,
    scratch: &'r mut Vec<u8>,
) -> Result<&'r [u8], OpenError> {
    let Scanned::Record {
        record_type,
        sequence,
        payload,
        sealed,
        offset,
        ..
    } = record;
    match (cipher, sealed) {
        (None, false) => Ok(payload),
        (None, true) => Err(OpenError::SealedWithoutKey),
        (Some(_), false) => Err(OpenError::PlainInSealedSegment),
        (Some(cipher), true) => {
            scratch.clear();
            scratch.extend_from_slice(payload);
            cipher.open(*record_type, *sequence, *offset, scratch)
        }
    }
}

fn nonce(offset: u64) -> Nonce {
    let mut bytes = [0u8; NONCE_LEN];
    bytes[..8].copy_from_slice(&offset.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn aad(record_type: RecordType, sequence: u64) -> Aad<[u8; 10]> {
    let mut bytes = [0u8; 10];
    bytes[0] = record_type as u8;
    bytes[1] = FLAG_SEALED;
    bytes[2..].copy_from_slice(&sequence.to_le_bytes());
    Aad::from(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::spool::scan::decode_record;

    fn key(id: &str, byte: u8) -> SpoolKey {
        SpoolKey::new(id, [byte; KEY_BYTES])
    }

    fn sealed(
        cipher: &SegmentCipher,
        record_type: RecordType,
        sequence: u64,
        offset: u64,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        cipher.encode_record(
            &mut out,
            record_type,
            sequence,
            offset,
            b"envelope and body",
        );
        out
    }

    fn open_at(cipher: &SegmentCipher, bytes: &[u8], offset: u64) -> Result<Vec<u8>, OpenError> {
        let record = decode_record(bytes, offset).expect("frame and CRC are intact");
        let mut scratch = Vec::new();
        open_payload(Some(cipher), &record, &mut scratch).map(<[u8]>::to_vec)
    }

    #[test]
    fn sealed_records_round_trip_and_hide_the_payload() {
        let cipher = SegmentCipher::derive(&key("k1", 7), &[1; SALT_BYTES], 3, 4);
        let bytes = sealed(&cipher, RecordType::Commit, 42, 8192);
        assert_eq!(bytes.len(), 24 + 17 + SEAL_TAG_BYTES);
        assert_eq!(bytes[5], FLAG_SEALED);
        assert!(!bytes.windows(8).any(|w| w == b"envelope"));
        assert_eq!(
            open_at(&cipher, &bytes, 8192).unwrap(),
            b"envelope and body"
        );
    }

    #[test]
    fn tampered_ciphertext_is_refused_even_with_a_fixed_crc() {
        let cipher = SegmentCipher::derive(&key("k1", 7), &[1; SALT_BYTES], 1, 1);
        let mut bytes = sealed(&cipher, RecordType::Commit, 5, 0);
        bytes[30] ^= 1;
        fix_crc(&mut bytes);
        assert_eq!(open_at(&cipher, &bytes, 0), Err(OpenError::Unauthentic));
    }

    #[test]
    fn the_header_is_bound_as_additional_data() {
        let cipher = SegmentCipher::derive(&key("k1", 7), &[1; SALT_BYTES], 1, 1);
        let original = sealed(&cipher, RecordType::Deferred, 5, 4096);

        let mut retyped = original.clone();
        retyped[4] = RecordType::Delivered as u8;
        fix_crc(&mut retyped);
        assert_eq!(
            open_at(&cipher, &retyped, 4096),
            Err(OpenError::Unauthentic)
        );

        let mut renumbered = original.clone();
        renumbered[12] ^= 1;
        fix_crc(&mut renumbered);
        assert_eq!(
            open_at(&cipher, &renumbered, 4096),
            Err(OpenError::Unauthentic)
        );

        // The same bytes read at another offset, or from another segment, do not open.
        assert_eq!(
            open_at(&cipher, &original, 8192),
            Err(OpenError::Unauthentic)
        );
        let other = SegmentCipher::derive(&key("k1", 7), &[1; SALT_BYTES], 1, 2);
        assert_eq!(
            open_at(&other, &original, 4096),
            Err(OpenError::Unauthentic)
        );
    }

    #[test]
    fn nonce_and_key_never_repeat_across_shards_generations_segments_and_offsets() {
        // Two shards, or a wiped spool starting again, differ by salt; generations and segments
        // by the derivation info; records by offset. Every (key, nonce) pair must differ, which
        // shows as distinct ciphertexts of one plaintext.
        let spool_key = key("k1", 9);
        let mut seen = HashSet::new();
        for salt in [[1u8; SALT_BYTES], [2u8; SALT_BYTES]] {
            for generation in 1..=3 {
                for segment in 1..=3 {
                    let cipher = SegmentCipher::derive(&spool_key, &salt, generation, segment);
                    for offset in [0u64, 24, 4096, 1 << 33] {
                        let bytes = sealed(&cipher, RecordType::Body, 1, offset);
                        assert!(seen.insert(bytes[24..].to_vec()), "a (key, nonce) repeated");
                    }
                }
            }
        }
        assert_eq!(seen.len(), 2 * 3 * 3 * 4);
        assert_ne!(nonce_bytes(0), nonce_bytes(1 << 32));
    }

    fn nonce_bytes(offset: u64) -> Vec<u8> {
        nonce(offset).as_ref().to_vec()
    }

    #[test]
    fn a_different_spool_key_does_not_open() {
        let salt = [3; SALT_BYTES];
        let writer = SegmentCipher::derive(&key("k1", 1), &salt, 1, 1);
        let reader = SegmentCipher::derive(&key("k1", 2), &salt, 1, 1);
        let bytes = sealed(&writer, RecordType::Commit, 1, 0);
        assert_eq!(open_at(&reader, &bytes, 0), Err(OpenError::Unauthentic));
    }

    #[test]
    fn plain_and_sealed_records_must_match_their_segment() {
        let cipher = SegmentCipher::derive(&key("k1", 1), &[0; SALT_BYTES], 1, 1);
        let mut plain = Vec::new();
        crate::spool::encode_record(&mut plain, RecordType::Deleted, 1, b"x");
        let plain_record = decode_record(&plain, 0).unwrap();
        let mut scratch = Vec::new();
        assert_eq!(
            open_payload(Some(&cipher), &plain_record, &mut scratch),
            Err(OpenError::PlainInSealedSegment)
        );
        let sealed_bytes = sealed(&cipher, RecordType::Deleted, 1, 0);
        let sealed_record = decode_record(&sealed_bytes, 0).unwrap();
        assert_eq!(
            open_payload(None, &sealed_record, &mut scratch),
            Err(OpenError::SealedWithoutKey)
        );
        assert_eq!(
            open_payload(None, &plain_record, &mut scratch),
            Ok(&b"x"[..])
        );
    }

    #[test]
    fn segment_key_records_round_trip_and_reject_bad_salts() {
        let record = SegmentKeyRecord {
            key_id: "2026-12".into(),
            salt: [5; SALT_BYTES],
        };
        let mut payload = Vec::new();
        record.encode(&mut payload);
        assert_eq!(SegmentKeyRecord::decode(&payload), Ok(record));

        let mut short = Vec::new();
        put_u8(&mut short, PAYLOAD_VERSION);
        put_u8(&mut short, ALGORITHM_AES_256_GCM_HKDF_SHA256);
        put_str(&mut short, "k");
        put_bytes(&mut short, &[0; 16]);
        assert!(SegmentKeyRecord::decode(&short).is_err());
        payload[1] = 2;
        assert!(SegmentKeyRecord::decode(&payload).is_err());
    }

    #[test]
    fn key_files_are_raw_or_hex_and_ids_are_file_names() {
        assert_eq!(parse_key_file(&[7; 32]), Ok([7; 32]));
        let hex = format!("{}\n", "0a".repeat(32));
        assert_eq!(parse_key_file(hex.as_bytes()), Ok([10; 32]));
        assert!(parse_key_file(b"0a0a").is_err());
        assert!(parse_key_file("zz".repeat(32).as_bytes()).is_err());
        assert!(parse_key_file(&[7; 33]).is_err());

        assert!(check_key_id("2026-12.a_b").is_ok());
        for bad in ["", ".hidden", "a/b", "é", &"k".repeat(65)] {
            assert!(check_key_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_ring_knows_its_active_key_and_never_prints_secrets() {
        let ring = KeyRing::new(vec![key("old", 1), key("new", 2)], Some("new")).unwrap();
        assert_eq!(ring.active().map(SpoolKey::id), Some("new"));
        assert!(ring.get("old").is_some());
        assert!(KeyRing::new(vec![key("old", 1)], Some("new")).is_err());
        assert!(KeyRing::default().active().is_none());
        let printed = format!("{ring:?}");
        assert!(
            printed.contains("new") && !printed.contains("[2, 2"),
            "{printed}"
        );
    }

    fn fix_crc(bytes: &mut [u8]) {
        let header: [u8; 24] = bytes[..24].try_into().unwrap();
        let crc = crate::spool::record::record_crc(&header, &bytes[24..]);
        bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    }
}
