//! Compaction: copying forward the few long-deferred messages that pin an old segment, so that
//! reclaim (which only ever deletes a prefix of the log) can move past it.
//!
//! A pass runs when the oldest segment a queued message needs trails the write position by
//! `COMPACT_LAG_SEGMENTS` held segments and is needed by at most `COMPACT_MESSAGES_MAX`
//! messages. Each such message is written again at the head of the log: its body, a COMMIT
//! with the same queue id and envelope (which the index treats as a move), and the records a
//! replay without the original would need — recipients already finished, a hold — the last of
//! them synced before the move counts. Only then is the old segment unreferenced. A message
//! that finishes while it is being copied gets its copy finished too, so it cannot come back.

use std::io;

use tracing::{info, warn};

use super::queue::Queue;
use crate::spool::{
    AdminRecord, BodyLocation, BodyRecord, CommitRecord, Extent, OutcomeRecord, RecordType,
    INLINE_BODY_MAX_BYTES,
};

/// Held segments from the oldest needed one to the write position that trigger compaction.
const COMPACT_LAG_SEGMENTS: usize = 4;

/// A segment needed by more messages than this is busy, not pinned by stragglers.
const COMPACT_MESSAGES_MAX: usize = 64;

impl Queue {
    /// One compaction pass (see the module documentation).
    pub(super) async fn compact(&self) {
        let Some(pinned) = self.pinned_messages(COMPACT_LAG_SEGMENTS, COMPACT_MESSAGES_MAX) else {
            return;
        };
        for queue_id in pinned {
            match self.copy_forward(&queue_id).await {
                Ok(()) => {
                    info!(%queue_id, "long-deferred message copied forward to free an old segment")
                }
                Err(error) => {
                    warn!(%queue_id, %error, "cannot copy a message forward; its segment stays");
                    return;
                }
            }
        }
    }

    /// Writes one message again at the head of the log and moves the index to the copy.
    async fn copy_forward(&self, queue_id: &str) -> io::Result<()> {
        let Some((commit, pending, held)) = self.with_index(|index| {
            index
                .get(queue_id)
                .map(|m| (m.commit.clone(), m.pending.clone(), m.held))
        }) else {
            return Ok(()); // Finished meanwhile: nothing pins its segment any more.
        };

        let content = match &commit.body {
            BodyLocation::Inline(bytes) => bytes.clone(),
            BodyLocation::Extents(extents) => self.spool.read_extents(extents).await?,
        };
        let body = if content.len() <= INLINE_BODY_MAX_BYTES {
            BodyLocation::Inline(content)
        } else {
            BodyLocation::Extents(self.write_body(queue_id, &content).await)
        };
        let copy = CommitRecord { body, ..commit };
        let location = self
            .spool
            .commit(&copy)
            .await
            .map_err(|failure| io::Error::other(failure.message))?;

        // What a replay that no longer sees the original needs to reach the same state.
        let recipients = copy.envelope.rcpt_to.len() as u32;
        let still_queued = self.with_index(|index| index.get(queue_id).is_some());
        let finished: Vec<u32> = if still_queued {
            (0..recipients).filter(|i| !pending.contains(i)).collect()
        } else {
            (0..recipients).collect()
        };
        let mut trailing = Vec::new();
        if !finished.is_empty() {
            let record = OutcomeRecord {
                queue_id: queue_id.to_owned(),
                recipients: finished,
                detail: "finished before the message was copied forward".into(),
                next_attempt_unix_ms: None,
            };
            let mut payload = Vec::new();
            record.encode(&mut payload);
            trailing.push((RecordType::Delivered, payload));
        }
        if held && still_queued {
            let mut payload = Vec::new();
            AdminRecord {
                queue_id: queue_id.to_owned(),
                actor: "compaction".into(),
            }
            .encode(&mut payload);
            trailing.push((RecordType::Held, payload));
        }
        if let Some((last_type, last)) = trailing.pop() {
            for (record_type, payload) in &trailing {
                self.spool.append(*record_type, payload).await;
            }
            self.spool
                .append_durable(last_type, &last)
                .await
                .map_err(|failure| io::Error::other(failure.message))?;
        }

        if still_queued && self.with_index(|index| index.get(queue_id).is_some()) {
            self.move_to_copy(location, copy);
        }
        Ok(())
    }

    /// Writes a large body as BODY records, as a session does, and returns their extents.
    async fn write_body(&self, queue_id: &str, content: &[u8]) -> Vec<Extent> {
        let mut extents = Vec::new();
        for chunk in content.chunks(INLINE_BODY_MAX_BYTES) {
            let record = BodyRecord { queue_id, chunk };
            let location = self.spool.append_body(&record).await;
            extents.push(Extent {
                generation: location.generation,
                segment: location.segment,
                offset: location.offset,
                length: record.encoded_len() as u32,
            });
        }
        extents
    }
}
