//! The pure core of the durable spool (DESIGN.md §3): the on-disk record format, the scanner
//! that recovery runs over each segment, the payload encodings of every record type, and the
//! queue index that recovery rebuilds from those records.
//!
//! Everything here is bytes in, values out. This module never touches files, sockets, clocks or
//! an executor; the shard's I/O layer writes the bytes it produces, reads them back, and feeds
//! them in. That keeps the format testable by fixtures, property tests and fuzzers alone.
//!
//! What it guarantees: every record carries a CRC32C over its header and payload and is checked
//! on every read; a batch always ends on a block boundary so a group commit never rewrites a
//! block holding acknowledged data; every decoder is bounds-checked and returns an error on
//! malformed input instead of panicking or allocating without limit; with encryption at rest
//! (`seal`), a payload is opened only if it authenticates for the exact place it was read from.

mod codec;
mod index;
mod payload;
mod record;
mod scan;
mod seal;

pub use index::{QueueIndex, QueuedMessage, RecordLocation};
pub use payload::{
    peek_queue_id, AdminRecord, BodyLocation, BodyRecord, CommitRecord, CopiedState, Extent,
    OutcomeRecord, PayloadError, COMMIT_COPY_VERSION, INLINE_BODY_MAX_BYTES, PAYLOAD_VERSION,
};
pub use record::{
    encode_record, pad_to_block, record_length, RecordType, BLOCK_BYTES, FLAG_SEALED,
    PLAIN_PAYLOAD_MAX_BYTES, RECORD_HEADER_BYTES, RECORD_MAGIC, RECORD_PAYLOAD_MAX_BYTES,
    SEAL_TAG_BYTES,
};
pub use scan::{decode_record, scan_segment, BadRecord, ScanEnd, Scanned, SegmentScan};
pub use seal::{
    check_key_id, open_payload, parse_key_file, KeyRing, OpenError, SegmentCipher,
    SegmentKeyRecord, SpoolKey, KEY_BYTES, KEY_ID_MAX_BYTES, SALT_BYTES,
};
