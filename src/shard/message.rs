//! One message on its way into the spool, as a session streams it.
//!
//! Small messages (the common case) stay in memory until end of data and go to disk inside
//! their COMMIT record: one record, one copy. A message that grows past `BODY_CHUNK_BYTES`
//! streams out as BODY records while it arrives, so a session's memory stays bounded whatever
//! the message size, and the COMMIT then lists those records as the body's extents. A message
//! that is abandoned simply never gets its COMMIT: its BODY records are garbage to recovery.

use std::time::SystemTime;

use super::spool::{ShardSpool, SpoolFailure};
use crate::smtp::Envelope;
use crate::spool::{
    BodyLocation, BodyRecord, CommitRecord, Extent, RecordLocation, INLINE_BODY_MAX_BYTES,
};
use crate::time::unix_ms;

/// Body bytes held in memory before they are written as a BODY record: the same bound that
/// keeps an inline body inside its COMMIT, so a COMMIT always leaves room for its envelope.
const BODY_CHUNK_BYTES: usize = INLINE_BODY_MAX_BYTES;

pub struct SpoolMessage {
    queue_id: String,
    received_at_unix_ms: u64,
    buffer: Vec<u8>,
    extents: Vec<Extent>,
    header_prefix: Vec<u8>,
    /// `ShardSpool::write_failures` when the first BODY record was appended.
    write_failures_at_first_body: Option<u64>,
    spool: ShardSpool,
}

impl SpoolMessage {
    /// Starts a message whose stored form begins with our `Received:` header.
    pub fn begin(spool: &ShardSpool, queue_id: String, received: &str) -> SpoolMessage {
        let mut buffer = Vec::with_capacity(8 * 1024);
        buffer.extend_from_slice(received.as_bytes());
        SpoolMessage {
            queue_id,
            received_at_unix_ms: unix_ms(SystemTime::now()),
            buffer,
            extents: Vec::new(),
            header_prefix: Vec::new(),
            write_failures_at_first_body: None,
            spool: spool.clone(),
        }
    }

    /// Takes the bytes out of `body` (leaving it empty, capacity kept).
    pub async fn append(&mut self, body: &mut Vec<u8>) {
        self.buffer.extend_from_slice(body);
        body.clear();
        while self.buffer.len() >= BODY_CHUNK_BYTES {
            self.write_chunk(BODY_CHUNK_BYTES).await;
        }
    }

    /// Adds header fields that can only be written once the whole message is known (a
    /// signature, verification results). They are stored in the COMMIT and go out first.
    pub fn prepend_header(&mut self, field: &[u8]) {
        self.header_prefix.extend_from_slice(field);
    }

    /// Writes the COMMIT and waits until it is durable; returns the record and where it lies.
    pub async fn commit(
        mut self,
        envelope: &Envelope,
    ) -> Result<(CommitRecord, RecordLocation), SpoolFailure> {
        let body = if self.extents.is_empty() {
            BodyLocation::Inline(std::mem::take(&mut self.buffer))
        } else {
            if !self.buffer.is_empty() {
                self.write_chunk(self.buffer.len()).await;
            }
            BodyLocation::Extents(std::mem::take(&mut self.extents))
        };
        if self
            .write_failures_at_first_body
            .is_some_and(|failures| failures != self.spool.write_failures())
        {
            // A batch failed since the body started: some of its BODY records may be in it.
            return Err(SpoolFailure {
                no_space: false,
                message: "a spool write failed while the message body was being stored".into(),
            });
        }
        let record = CommitRecord {
            queue_id: std::mem::take(&mut self.queue_id),
            received_at_unix_ms: self.received_at_unix_ms,
            envelope: envelope.clone(),
            header_prefix: std::mem::take(&mut self.header_prefix),
            body,
            copied: None,
        };
        let location = self.spool.commit(&record).await?;
        Ok((record, location))
    }

    async fn write_chunk(&mut self, length: usize) {
        self.write_failures_at_first_body
            .get_or_insert(self.spool.write_failures());
        let record = BodyRecord {
            queue_id: &self.queue_id,
            chunk: &self.buffer[..length],
        };
        let location = self.spool.append_body(&record).await;
        self.extents.push(Extent {
            generation: location.generation,
            segment: location.segment,
            offset: location.offset,
            length: record.encoded_len() as u32,
        });
        self.buffer.drain(..length);
    }
}
