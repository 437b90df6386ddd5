//! Compaction: copying forward the long-deferred messages that pin an old segment, so that
//! reclaim (which only ever deletes a prefix of the log) can move past it and disk use stays
//! bounded while a destination is down.
//!
//! Trigger. A pass runs when the oldest segment a queued message needs trails the write position
//! by the lag: `COMPACT_LAG_SEGMENTS` held segments, or twice the bytes all queued messages take
//! if that is more. It copies every message that needs that segment, except those being
//! delivered right now (they are copied at a later pass), then goes on with the next oldest
//! segment while that one trails by the lag too.
//!
//! Pacing. A pass copies at most `COMPACT_PASS_BYTES_MAX` (and at least one message), runs once
//! a second after reclaim, and lives in the shard's background task queue, which has a quarter
//! of the sessions' CPU shares; its records join the group commits the sessions make anyway.
//!
//! Write amplification. A copy lies at the head of the log, so it is copied again only once the
//! log has moved on by the lag again. The lag is at least twice the queued bytes and a message
//! is copied at most once in that distance, so at least half of what the log grew by is mail
//! accepted meanwhile: compaction writes at most one byte per byte of new mail (each byte of mail
//! is written about twice in all), and nothing while no new mail arrives.
//!
//! Correctness. The copy is its body and a COMMIT with the same queue id and envelope (which
//! the index treats as a move), carrying the message's delivery state (`CopiedState`: pending
//! recipients, hold, attempts, next attempt) read in the same step as the append, so it is what
//! the records before it in the log say. It is synced before the move counts; only then is the
//! old segment unreferenced. A crash during a copy leaves either the original alone or both,
//! never neither. Two races are closed after the sync: a message that finished or was deleted
//! meanwhile gets its copy finished too (so it cannot come back), and a hold or release
//! recorded just before the copy, but applied after it was built, is recorded again after it.

use std::io;

use tracing::{debug, info, warn};

use super::queue::Queue;
use super::spool::{PendingCommit, SpoolFailure};
use crate::spool::{
    AdminRecord, BodyLocation, BodyRecord, CommitRecord, CopiedState, Extent, OutcomeRecord,
    RecordType, INLINE_BODY_MAX_BYTES,
};

/// Held segments from the oldest needed one to the write position that trigger compaction at
/// the least: a shard that delivers as fast as it accepts keeps a few segments anyway.
const COMPACT_LAG_SEGMENTS: u64 = 4;

/// Bytes one pass (one a second) may copy forward: 4 MiB/s per shard is a few per cent of what
/// an SSD sustains, so sessions keep the disk, and since compaction needs at most one byte per
/// byte of new mail it keeps up with a shard accepting up to 4 MiB/s (about 340 GiB a day).
// LIMITATION(L3): a shard accepting more than this for long outgrows the disk-use bound.
const COMPACT_PASS_BYTES_MAX: u64 = 4 << 20;

/// A spool write failure as the I/O error compaction reports.
fn spool_error(failure: SpoolFailure) -> io::Error {
    io::Error::other(failure.message)
}

/// What one pass did, for its log line.
#[derive(Default)]
struct Pass {
    messages: usize,
    bytes: u64,
}

impl Queue {
    /// One compaction pass (see the module documentation).
    pub(super) async fn compact(&self) {
        let mut pass = Pass::default();
        let mut previous = None;
        while let Some(pinned) = self.pinned_messages(COMPACT_LAG_SEGMENTS) {
            if previous == Some(pinned.segment) {
                break; // Nothing this pass could copy freed it.
            }
            previous = Some(pinned.segment);

            let mut chosen = Vec::new();
            let mut budget_spent = false;
            for (queue_id, bytes) in pinned.messages {
                let first = pass.messages == 0 && chosen.is_empty();
                if !first && pass.bytes + bytes > COMPACT_PASS_BYTES_MAX {
                    budget_spent = true;
                    break;
                }
                pass.bytes += bytes;
                chosen.push(queue_id);
            }
            pass.messages += chosen.len();
            if let Err(error) = self.copy_forward(&chosen).await {
                warn!(%error, "cannot copy messages forward; their segment stays");
                break;
            }
            if budget_spent || pinned.in_flight > 0 {
                // Messages in flight hold the segment until a later pass copies them.
                break;
            }
        }
        if pass.messages > 0 {
            info!(
                messages = pass.messages,
                bytes = pass.bytes,
                "long-deferred messages copied forward to free old segments"
            );
        }
    }

    /// Writes these messages again at the head of the log, all in the filling batch so that
    /// they share its sync, then moves each one still queued to its copy once it is durable.
    async fn copy_forward(&self, queue_ids: &[String]) -> io::Result<()> {
        let write_failures = self.spool.write_failures();
        let mut written = Vec::new();
        let mut failed = None;
        for queue_id in queue_ids {
            match self.write_copy(queue_id).await {
                Ok(Some(copy)) => written.push(copy),
                Ok(None) => {} // Finished meanwhile: nothing pins its segment any more.
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }

        // The copies already in the batch are awaited and used even after a failure.
        for copy in written {
            let (location, copy) = copy.durable().await.map_err(spool_error)?;
            if self.spool.write_failures() != write_failures {
                // A copied body may be in the failed batch: keep every original.
                return Err(io::Error::other(
                    "a spool write failed while messages were copied",
                ));
            }
            self.record_what_the_copy_missed(&copy).await?;
            if self.with_index(|index| index.get(&copy.queue_id).is_some()) {
                debug!(queue_id = %copy.queue_id, "message copied forward");
                self.move_to_copy(location, copy);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Appends one message's body and its copied COMMIT to the filling batch.
    async fn write_copy(&self, queue_id: &str) -> io::Result<Option<PendingCommit>> {
        let Some(commit) = self.with_index(|index| index.get(queue_id).map(|m| m.commit.clone()))
        else {
            return Ok(None);
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

        // The state is read when the COMMIT joins the batch: an outcome is applied to the index
        // before it is appended, so every outcome in the log before the copy is in it. One
        // applied but still waiting for room in the batch lands after the copy and is replayed
        // on it again: harmless for DELIVERED and FAILED, one attempt more for a DEFERRED. A
        // message that finished while its body was read is not copied; its BODY records are
        // garbage.
        self.spool
            .commit_built(|| {
                Some(CommitRecord {
                    body,
                    copied: Some(self.copied_state(queue_id)?),
                    ..commit
                })
            })
            .await
            .map_err(spool_error)
    }

    /// The delivery state a replay of the copy alone must reach.
    fn copied_state(&self, queue_id: &str) -> Option<CopiedState> {
        self.with_index(|index| {
            index.get(queue_id).map(|message| CopiedState {
                attempts: message.attempts,
                next_attempt_unix_ms: message.next_attempt_unix_ms,
                held: message.held,
                pending: message.pending.clone(),
            })
        })
    }

    /// Admin records are applied after their sync, so one appended just before the copy may be
    /// missing from the state it carries; the message's current state says so. A message gone
    /// from the index gets every recipient finished after its copy, a changed hold is recorded
    /// again. Synced before the move, like the copy.
    async fn record_what_the_copy_missed(&self, copy: &CommitRecord) -> io::Result<()> {
        let queue_id = copy.queue_id.as_str();
        let held_copied = copy.copied.as_ref().is_some_and(|state| state.held);
        let held_now = self.with_index(|index| index.get(queue_id).map(|m| m.held));
        let mut payload = Vec::new();
        let record_type = match held_now {
            None => {
                OutcomeRecord {
                    queue_id: queue_id.to_owned(),
                    recipients: (0..copy.envelope.rcpt_to.len() as u32).collect(),
                    detail: "finished while the message was copied forward".into(),
                    next_attempt_unix_ms: None,
                }
                .encode(&mut payload);
                RecordType::Delivered
            }
            Some(held) if held != held_copied => {
                AdminRecord {
                    queue_id: queue_id.to_owned(),
                    actor: "compaction".into(),
                }
                .encode(&mut payload);
                if held {
                    RecordType::Held
                } else {
                    RecordType::Released
                }
            }
            Some(_) => return Ok(()),
        };
        self.spool
            .append_durable(record_type, &payload)
            .await
            .map(drop)
            .map_err(spool_error)
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
