//! The queue index: every message that is committed and not yet final, with its delivery state,
//! as the log's records say. Recovery rebuilds it by applying every scanned record in log order;
//! the shard then applies each record it writes. It owns the replay semantics of every record
//! type and the count of live references per segment that decides what may be reclaimed.
//!
//! It guarantees that a record which fails to decode or names an impossible recipient leaves
//! the index unchanged, so a caller may log it and carry on. It never does I/O and never keeps
//! message bodies other than the inline bytes already inside a COMMIT.

use std::collections::{BTreeMap, BTreeSet};

use super::payload::{
    AdminRecord, BodyLocation, BodyRecord, CommitRecord, CopiedState, OutcomeRecord, PayloadError,
};
use super::record::RecordType;

/// Where a record lies in the spool. Ordered as the log is: by generation, then segment, then
/// offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordLocation {
    pub generation: u64,
    pub segment: u64,
    pub offset: u64,
}

impl RecordLocation {
    /// The `(generation, segment)` pair that names the segment file holding the record.
    pub fn segment_key(&self) -> (u64, u64) {
        (self.generation, self.segment)
    }
}

/// One message that still has work to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    pub commit: CommitRecord,
    /// Location of the COMMIT record.
    pub location: RecordLocation,
    /// Indices into `commit.envelope.rcpt_to` without a DELIVERED or FAILED record, ascending.
    pub pending: Vec<u32>,
    /// Set by HELD, cleared by RELEASED: a held message is kept but never scheduled.
    pub held: bool,
    /// DEFERRED records seen for this message.
    pub attempts: u32,
    /// When to try next: the arrival time until the first DEFERRED, so a new message is due at
    /// once.
    pub next_attempt_unix_ms: u64,
}

impl QueuedMessage {
    /// Whether this message needs the segment `(generation, segment)`.
    pub fn references(&self, segment: (u64, u64)) -> bool {
        self.segments().contains(&segment)
    }

    /// Bytes the message takes in the spool: the header fields stored apart and the message as
    /// stored (inline, or the BODY records' payloads).
    pub fn stored_bytes(&self) -> u64 {
        let body = match &self.commit.body {
            BodyLocation::Inline(bytes) => bytes.len() as u64,
            BodyLocation::Extents(extents) => extents.iter().map(|e| u64::from(e.length)).sum(),
        };
        self.commit.header_prefix.len() as u64 + body
    }

    /// Segments this message needs to stay readable: its COMMIT's and every body extent's.
    fn segments(&self) -> BTreeSet<(u64, u64)> {
        let mut segments = BTreeSet::from([self.location.segment_key()]);
        if let BodyLocation::Extents(extents) = &self.commit.body {
            segments.extend(extents.iter().map(|e| (e.generation, e.segment)));
        }
        segments
    }
}

/// The live messages of one shard, keyed by queue id.
#[derive(Clone, Debug, Default)]
pub struct QueueIndex {
    /// Ordered so that listings and tests see a stable order.
    messages: BTreeMap<String, QueuedMessage>,
    /// For each segment, how many live messages reference it. A key is present only while its
    /// count is above zero.
    segment_references: BTreeMap<(u64, u64), usize>,
}

impl QueueIndex {
    pub fn new() -> Self {
        QueueIndex::default()
    }

    /// Applies one record found by a scan, in log order (generations ascending, segments
    /// ascending, offsets ascending). On error the index is unchanged.
    ///
    /// BODY, SEAL and SEGMENT_KEY change nothing: a body matters only once a COMMIT names it,
    /// and a BODY without a later COMMIT is garbage. Outcome and admin records for a queue id
    /// the index does not hold are ignored, because the message may already have been final. A
    /// second COMMIT for a live queue id with the same envelope is a copy written forward by
    /// compaction: the message moves to it and keeps its pending recipients, hold and attempts,
    /// as the records before the copy made them. A copy whose original is gone (its segment was
    /// reclaimed) starts from the state it carries (version 2, `CopiedState`); a copy written
    /// by an older build carries none and starts afresh, its trailing records finishing the
    /// recipients and restoring the hold.
    pub fn apply(
        &mut self,
        location: RecordLocation,
        record_type: RecordType,
        payload: &[u8],
    ) -> Result<(), PayloadError> {
        match record_type {
            RecordType::Body => BodyRecord::decode(payload).map(drop),
            RecordType::Seal | RecordType::SegmentKey => Ok(()),
            RecordType::Commit => self.commit(location, CommitRecord::decode(payload)?),
            RecordType::Delivered | RecordType::Failed => {
                self.finish_recipients(&OutcomeRecord::decode(payload)?)
            }
            RecordType::Deferred => self.defer(&OutcomeRecord::decode(payload)?),
            RecordType::Held | RecordType::Released => {
                let admin = AdminRecord::decode(payload)?;
                if let Some(message) = self.messages.get_mut(&admin.queue_id) {
                    message.held = record_type == RecordType::Held;
                }
                Ok(())
            }
            RecordType::Deleted => {
                self.remove(&AdminRecord::decode(payload)?.queue_id);
                Ok(())
            }
        }
    }

    /// Adds a message the shard has just committed, exactly as replaying its COMMIT would,
    /// without encoding and decoding it again.
    pub fn insert_commit(
        &mut self,
        location: RecordLocation,
        commit: CommitRecord,
    ) -> Result<(), PayloadError> {
        self.commit(location, commit)
    }

    pub fn get(&self, queue_id: &str) -> Option<&QueuedMessage> {
        self.messages.get(queue_id)
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Live messages in queue id order.
    pub fn iter(&self) -> impl Iterator<Item = &QueuedMessage> {
        self.messages.values()
    }

    /// Segments still referenced by a live message (its COMMIT or a body extent).
    ///
    /// Reclaim only a prefix of the log: the segments ordered before the first element (see
    /// `oldest_live_segment`). A segment in a gap may still hold outcome records: dropping one
    /// that holds a DELIVERED for a live message, or the final record of a message whose COMMIT
    /// survives in a kept segment, would make recovery deliver those recipients again.
    pub fn live_segments(&self) -> BTreeSet<(u64, u64)> {
        self.segment_references.keys().copied().collect()
    }

    /// The first segment, in log order, that a live message references. Every segment before
    /// it may be reclaimed; `None` means every written segment may be.
    pub fn oldest_live_segment(&self) -> Option<(u64, u64)> {
        self.segment_references.keys().next().copied()
    }

    fn commit(
        &mut self,
        location: RecordLocation,
        mut commit: CommitRecord,
    ) -> Result<(), PayloadError> {
        // Consumed here: a queued message's COMMIT never carries a stale copy of its state.
        let copied = commit.copied.take();
        let recipients = commit.envelope.rcpt_to.len();
        if recipients == 0 {
            // Without recipients no outcome could ever make the message final.
            return Err(PayloadError::NoRecipients {
                queue_id: commit.queue_id,
            });
        }

        if let Some(existing) = self.messages.get(&commit.queue_id) {
            // Queue ids are unique per message, so a second COMMIT is a copy written forward
            // by compaction: it moves the message and keeps what has happened to it.
            if existing.commit.envelope != commit.envelope {
                return Err(PayloadError::DuplicateCommit {
                    queue_id: commit.queue_id,
                });
            }
            let mut moved = self
                .take(&commit.queue_id)
                .expect("present: checked just above");
            moved.commit = commit;
            moved.location = location;
            self.insert(moved);
            return Ok(());
        }

        let message = match copied {
            Some(state) => copied_message(commit, location, state)?,
            None => {
                // `recipients` came from a u32 count in the payload, so every index fits.
                let pending = (0..recipients)
                    .map(|index| u32::try_from(index).expect("decoded from a u32 count"))
                    .collect();
                let next_attempt_unix_ms = commit.received_at_unix_ms;
                QueuedMessage {
                    commit,
                    location,
                    pending,
                    held: false,
                    attempts: 0,
                    next_attempt_unix_ms,
                }
            }
        };
        self.insert(message);
        Ok(())
    }

    fn finish_recipients(&mut self, outcome: &OutcomeRecord) -> Result<(), PayloadError> {
        let Some(message) = self.messages.get_mut(&outcome.queue_id) else {
            return Ok(());
        };
        check_recipients(message, outcome)?;

        // Recipients already final are skipped: outcomes are idempotent.
        message
            .pending
            .retain(|index| !outcome.recipients.contains(index));
        if message.pending.is_empty() {
            self.remove(&outcome.queue_id);
        }
        Ok(())
    }

    fn defer(&mut self, outcome: &OutcomeRecord) -> Result<(), PayloadError> {
        let Some(message) = self.messages.get_mut(&outcome.queue_id) else {
            return Ok(());
        };
        check_recipients(message, outcome)?;
        let next_attempt_unix_ms =
            outcome
                .next_attempt_unix_ms
                .ok_or_else(|| PayloadError::MissingNextAttempt {
                    queue_id: outcome.queue_id.clone(),
                })?;

        message.attempts = message.attempts.saturating_add(1);
        message.next_attempt_unix_ms = next_attempt_unix_ms;
        Ok(())
    }

    fn insert(&mut self, message: QueuedMessage) {
        debug_assert!(!message.pending.is_empty());
        debug_assert!(message.pending.windows(2).all(|pair| pair[0] < pair[1]));
        for segment in message.segments() {
            *self.segment_references.entry(segment).or_insert(0) += 1;
        }
        let previous = self
            .messages
            .insert(message.commit.queue_id.clone(), message);
        assert!(previous.is_none(), "queue index insert over a live message");
    }

    fn take(&mut self, queue_id: &str) -> Option<QueuedMessage> {
        let message = self.messages.remove(queue_id)?;
        for segment in message.segments() {
            let count = self
                .segment_references
                .get_mut(&segment)
                .expect("every live message's segments are counted on insert");
            assert!(*count > 0, "segment reference count underflow");
            *count -= 1;
            if *count == 0 {
                self.segment_references.remove(&segment);
            }
        }
        Some(message)
    }

    fn remove(&mut self, queue_id: &str) {
        self.take(queue_id);
    }

    /// Recomputes the segment references from scratch; tests compare it with the counts kept
    /// incrementally.
    #[cfg(test)]
    pub(crate) fn recount_segment_references(&self) -> BTreeMap<(u64, u64), usize> {
        let mut counts = BTreeMap::new();
        for segment in self.messages.values().flat_map(QueuedMessage::segments) {
            *counts.entry(segment).or_insert(0) += 1;
        }
        counts
    }
}

/// A copy whose original is gone, in the state it carries. Its pending recipients must be
/// non-empty, ascending and within the envelope, as the index keeps them.
fn copied_message(
    commit: CommitRecord,
    location: RecordLocation,
    state: CopiedState,
) -> Result<QueuedMessage, PayloadError> {
    let recipients = commit.envelope.rcpt_to.len();
    if let Some(index) = state.pending.iter().find(|i| **i as usize >= recipients) {
        return Err(PayloadError::RecipientOutOfRange {
            queue_id: commit.queue_id,
            index: *index,
            recipients,
        });
    }
    let ascending = state.pending.windows(2).all(|pair| pair[0] < pair[1]);
    if state.pending.is_empty() || !ascending {
        return Err(PayloadError::InvalidCopiedPending {
            queue_id: commit.queue_id,
        });
    }
    Ok(QueuedMessage {
        commit,
        location,
        pending: state.pending,
        held: state.held,
        attempts: state.attempts,
        next_attempt_unix_ms: state.next_attempt_unix_ms,
    })
}

fn check_recipients(message: &QueuedMessage, outcome: &OutcomeRecord) -> Result<(), PayloadError> {
    let recipients = message.commit.envelope.rcpt_to.len();
    match outcome
        .recipients
        .iter()
        .find(|index| **index as usize >= recipients)
    {
        None => Ok(()),
        Some(index) => Err(PayloadError::RecipientOutOfRange {
            queue_id: outcome.queue_id.clone(),
            index: *index,
            recipients,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::{Envelope, Recipient};
    use crate::spool::payload::Extent;
    use proptest::prelude::*;

    fn at(segment: u64, offset: u64) -> RecordLocation {
        RecordLocation {
            generation: 1,
            segment,
            offset,
        }
    }

    fn commit_payload(queue_id: &str, recipients: usize, body: BodyLocation) -> Vec<u8> {
        copy_payload(queue_id, recipients, body, None)
    }

    /// A COMMIT; with `copied`, the version 2 copy compaction writes.
    fn copy_payload(
        queue_id: &str,
        recipients: usize,
        body: BodyLocation,
        copied: Option<CopiedState>,
    ) -> Vec<u8> {
        let envelope = Envelope {
            helo: "client.example".into(),
            mail_from: "from@example.org".into(),
            rcpt_to: (0..recipients)
                .map(|index| Recipient {
                    address: format!("r{index}@example.com"),
                    notify: None,
                    orcpt: None,
                })
                .collect(),
            ..Envelope::default()
        };
        let mut payload = Vec::new();
        CommitRecord {
            queue_id: queue_id.into(),
            received_at_unix_ms: 1_000,
            envelope,
            header_prefix: Vec::new(),
            body,
            copied,
        }
        .encode(&mut payload);
        payload
    }

    fn outcome_payload(queue_id: &str, recipients: &[u32], next: Option<u64>) -> Vec<u8> {
        let mut payload = Vec::new();
        OutcomeRecord {
            queue_id: queue_id.into(),
            recipients: recipients.to_vec(),
            detail: "250 ok".into(),
            next_attempt_unix_ms: next,
        }
        .encode(&mut payload);
        payload
    }

    fn admin_payload(queue_id: &str) -> Vec<u8> {
        let mut payload = Vec::new();
        AdminRecord {
            queue_id: queue_id.into(),
            actor: "test".into(),
        }
        .encode(&mut payload);
        payload
    }

    fn inline() -> BodyLocation {
        BodyLocation::Inline(b"Subject: hi\r\n\r\nhi\r\n".to_vec())
    }

    fn check_counts(index: &QueueIndex) {
        assert_eq!(index.segment_references, index.recount_segment_references());
    }

    #[test]
    fn commit_adds_a_message_due_at_once_with_every_recipient_pending() {
        let mut index = QueueIndex::new();
        assert!(index.is_empty());
        index
            .apply(
                at(0, 0),
                RecordType::Commit,
                &commit_payload("Q1", 3, inline()),
            )
            .unwrap();
        let message = index.get("Q1").unwrap();
        assert_eq!(message.pending, vec![0, 1, 2]);
        assert_eq!(message.location, at(0, 0));
        assert!(!message.held);
        assert_eq!(message.attempts, 0);
        assert_eq!(message.next_attempt_unix_ms, 1_000);
        assert_eq!(index.len(), 1);
        assert_eq!(index.live_segments(), BTreeSet::from([(1, 0)]));
    }

    #[test]
    fn partial_delivery_keeps_the_message_until_every_recipient_is_final() {
        let mut index = QueueIndex::new();
        index
            .apply(
                at(0, 0),
                RecordType::Commit,
                &commit_payload("Q1", 3, inline()),
            )
            .unwrap();
        index
            .apply(
                at(0, 100),
                RecordType::Delivered,
                &outcome_payload("Q1", &[1], None),
            )
            .unwrap();
        assert_eq!(index.get("Q1").unwrap().pending, vec![0, 2]);

        // Repeating an outcome changes nothing.
        index
            .apply(
                at(0, 200),
                RecordType::Delivered,
                &outcome_payload("Q1", &[1], None),
            )
            .unwrap();
        index
            .apply(
                at(0, 300),
                RecordType::Failed,
                &outcome_payload("Q1", &[0], None),
            )
            .unwrap();
        assert_eq!(index.get("Q1").unwrap().pending, vec![2]);

        index
            .apply(
                at(1, 0),
                RecordType::Delivered,
                &outcome_payload("Q1", &[2], None),
            )
            .unwrap();
        assert!(index.get("Q1").is_none());
        assert!(index.is_empty());
        assert!(index.live_segments().is_empty());
        assert_eq!(index.oldest_live_segment(), None);
    }

    #[test]
    fn defer_counts_attempts_and_sets_the_next_one() {
        let mut index = QueueIndex::new();
        index
            .apply(
                at(0, 0),
                RecordType::Commit,
                &commit_payload("Q1", 2, inline()),
            )
            .unwrap();
        for (attempt, next) in [(1, 5_000), (2, 65_000)] {
            index
                .apply(
                    at(0, 1),
                    RecordType::Deferred,
                    &outcome_payload("Q1", &[0, 1], Some(next)),
                )
                .unwrap();
            let message = index.get("Q1").unwrap();
            assert_eq!(message.attempts, attempt);
            assert_eq!(message.next_attempt_unix_ms, next);
            assert_eq!(message.pending, vec![0, 1]);
        }

        let missing = index.apply(
            at(0, 2),
            RecordType::Deferred,
            &outcome_payload("Q1", &[0], None),
        );
        assert_eq!(
            missing,
            Err(PayloadError::MissingNextAttempt {
                queue_id: "Q1".into()
            })
        );
        assert_eq!(index.get("Q1").unwrap().attempts, 2);
    }

    #[test]
    fn hold_release_and_delete() {
        let mut index = QueueIndex::new();
        index
            .apply(
                at(0, 0),
                RecordType::Commit,
                &commit_payload("Q1", 1, inline()),
            )
            .unwrap();
        index
            .apply(at(0, 1), RecordType::Held, &admin_payload("Q1"))
            .unwrap();
        assert!(index.get("Q1").unwrap().held);
        index
            .apply(at(0, 2), RecordType::Released, &admin_payload("Q1"))
            .unwrap();
        assert!(!index.get("Q1").unwrap().held);
        index
            .apply(at(0, 3), RecordType::Held, &admin_payload("Q1"))
            .unwrap();
        index
            .apply(at(0, 4), RecordType::Deleted, &admin_payload("Q1"))
            .unwrap();
        assert!(index.is_empty());
        assert!(index.live_segments().is_empty());
    }

    #[test]
    fn body_without_commit_and_unknown_ids_leave_no_trace() {
        let mut index = QueueIndex::new();
        let mut body = Vec::new();
        BodyRecord {
            queue_id: "Q0",
            chunk: b"orphan chunk",
        }
        .encode(&mut body);
        index.apply(at(0, 0), RecordType::Body, &body).unwrap();
        index.apply(at(0, 1), RecordType::Seal, b"").unwrap();
        for record_type in [RecordType::Delivered, RecordType::Failed] {
            index
                .apply(at(0, 2), record_type, &outcome_payload("Q0", &[7], None))
                .unwrap();
        }
        index
            .apply(
                at(0, 3),
                RecordType::Deferred,
                &outcome_payload("Q0", &[0], Some(1)),
            )
            .unwrap();
        for record_type in [RecordType::Held, RecordType::Released, RecordType::Deleted] {
            index
                .apply(at(0, 4), record_type, &admin_payload("Q0"))
                .unwrap();
        }
        assert!(index.is_empty());
        assert!(index.live_segments().is_empty());
    }

    #[test]
    fn bad_records_leave_the_index_unchanged() {
        let mut index = QueueIndex::new();
        index
            .apply(
                at(0, 0),
                RecordType::Commit,
                &commit_payload("Q1", 2, inline()),
            )
            .unwrap();
        let before = index.get("Q1").cloned();

        let out_of_range = index.apply(
            at(0, 1),
            RecordType::Delivered,
            &outcome_payload("Q1", &[0, 2], None),
        );
        assert_eq!(
            out_of_range,
            Err(PayloadError::RecipientOutOfRange {
                queue_id: "Q1".into(),
                index: 2,
                recipients: 2
            })
        );
        assert!(index
            .apply(at(0, 2), RecordType::Delivered, b"\x01")
            .is_err());
        assert!(index.apply(at(0, 3), RecordType::Commit, b"").is_err());
        assert_eq!(
            index.apply(
                at(0, 4),
                RecordType::Commit,
                &commit_payload("Q2", 0, inline())
            ),
            Err(PayloadError::NoRecipients {
                queue_id: "Q2".into()
            })
        );
        assert_eq!(
            index.apply(
                at(0, 5),
                RecordType::Commit,
                &commit_payload("Q1", 3, inline())
            ),
            Err(PayloadError::DuplicateCommit {
                queue_id: "Q1".into()
            })
        );
        assert_eq!(index.get("Q1").cloned(), before);
        assert_eq!(index.len(), 1);
        check_counts(&index);
    }

    #[test]
    fn live_segments_follow_commits_and_extents() {
        let extents = |segments: &[u64]| {
            BodyLocation::Extents(
                segments
                    .iter()
                    .map(|segment| Extent {
                        generation: 1,
                        segment: *segment,
                        offset: 0,
                        length: 10,
                    })
                    .collect(),
            )
        };
        let mut index = QueueIndex::new();
        index
            .apply(
                at(3, 0),
                RecordType::Commit,
                &commit_payload("Q1", 1, extents(&[2, 3])),
            )
            .unwrap();
        index
            .apply(
                at(5, 0),
                RecordType::Commit,
                &commit_payload("Q2", 1, extents(&[4, 5])),
            )
            .unwrap();
        index
            .apply(
                at(5, 9),
                RecordType::Commit,
                &commit_payload("Q3", 1, inline()),
            )
            .unwrap();
        assert_eq!(
            index.live_segments(),
            BTreeSet::from([(1, 2), (1, 3), (1, 4), (1, 5)])
        );
        assert_eq!(index.oldest_live_segment(), Some((1, 2)));
        check_counts(&index);

        index
            .apply(
                at(6, 0),
                RecordType::Delivered,
                &outcome_payload("Q1", &[0], None),
            )
            .unwrap();
        assert_eq!(index.live_segments(), BTreeSet::from([(1, 4), (1, 5)]));
        index
            .apply(at(6, 1), RecordType::Deleted, &admin_payload("Q2"))
            .unwrap();
        assert_eq!(index.live_segments(), BTreeSet::from([(1, 5)]));
        check_counts(&index);
    }

    #[test]
    fn a_second_identical_commit_moves_the_message_and_keeps_its_state() {
        let mut index = QueueIndex::new();
        index
            .apply(
                at(0, 0),
                RecordType::Commit,
                &commit_payload("Q1", 3, inline()),
            )
            .unwrap();
        index
            .apply(
                at(0, 1),
                RecordType::Delivered,
                &outcome_payload("Q1", &[0], None),
            )
            .unwrap();
        index
            .apply(
                at(0, 2),
                RecordType::Deferred,
                &outcome_payload("Q1", &[1, 2], Some(9)),
            )
            .unwrap();
        index
            .apply(at(0, 3), RecordType::Held, &admin_payload("Q1"))
            .unwrap();
        index
            .apply(
                at(7, 0),
                RecordType::Commit,
                &commit_payload("Q1", 3, inline()),
            )
            .unwrap();

        let message = index.get("Q1").unwrap();
        assert_eq!(message.location, at(7, 0));
        assert_eq!(message.pending, vec![1, 2]);
        assert!(message.held);
        assert_eq!(message.attempts, 1);
        assert_eq!(message.next_attempt_unix_ms, 9);
        assert_eq!(index.live_segments(), BTreeSet::from([(1, 7)]));
        check_counts(&index);
    }

    fn carried(pending: &[u32], held: bool) -> Option<CopiedState> {
        Some(CopiedState {
            attempts: 5,
            next_attempt_unix_ms: 86_400_000,
            held,
            pending: pending.to_vec(),
        })
    }

    #[test]
    fn a_copy_whose_original_is_gone_starts_from_the_state_it_carries() {
        let mut index = QueueIndex::new();
        let copy = copy_payload("Q1", 3, inline(), carried(&[1, 2], true));
        index.apply(at(7, 0), RecordType::Commit, &copy).unwrap();

        let message = index.get("Q1").unwrap();
        assert_eq!(message.location, at(7, 0));
        assert_eq!(message.pending, vec![1, 2]);
        assert!(message.held);
        assert_eq!(message.attempts, 5);
        assert_eq!(message.next_attempt_unix_ms, 86_400_000);
        assert_eq!(
            message.commit.copied, None,
            "the index never keeps a copied state"
        );
        check_counts(&index);

        // Later records act on it as on any message; a DEFERRED counts one more attempt.
        index
            .apply(
                at(7, 1),
                RecordType::Deferred,
                &outcome_payload("Q1", &[1, 2], Some(90_000_000)),
            )
            .unwrap();
        assert_eq!(index.get("Q1").unwrap().attempts, 6);
        index
            .apply(
                at(7, 2),
                RecordType::Delivered,
                &outcome_payload("Q1", &[1, 2], None),
            )
            .unwrap();
        assert!(index.is_empty());
    }

    #[test]
    fn a_copy_behind_its_original_keeps_what_the_records_built() {
        let mut index = QueueIndex::new();
        index
            .apply(
                at(0, 0),
                RecordType::Commit,
                &commit_payload("Q1", 3, inline()),
            )
            .unwrap();
        index
            .apply(
                at(0, 1),
                RecordType::Deferred,
                &outcome_payload("Q1", &[0, 1, 2], Some(9)),
            )
            .unwrap();
        index
            .apply(at(0, 2), RecordType::Held, &admin_payload("Q1"))
            .unwrap();

        // The records are the authority while they are all there: a hold recorded just before
        // the copy (its admin record is applied after its sync) may be missing from the state
        // the copy carries.
        let copy = copy_payload("Q1", 3, inline(), carried(&[0, 2], false));
        index.apply(at(7, 0), RecordType::Commit, &copy).unwrap();
        let message = index.get("Q1").unwrap();
        assert_eq!(message.location, at(7, 0));
        assert_eq!(message.pending, vec![0, 1, 2]);
        assert!(message.held);
        assert_eq!((message.attempts, message.next_attempt_unix_ms), (1, 9));
        assert_eq!(message.commit.copied, None);
        assert_eq!(index.live_segments(), BTreeSet::from([(1, 7)]));
        check_counts(&index);
    }

    #[test]
    fn a_copy_written_by_an_older_build_is_replayed_from_its_trailing_records() {
        // Before version 2 a copy was a version 1 COMMIT, then DELIVERED for the recipients
        // already finished and HELD for a held message.
        let mut index = QueueIndex::new();
        index
            .apply(
                at(7, 0),
                RecordType::Commit,
                &commit_payload("Q1", 3, inline()),
            )
            .unwrap();
        index
            .apply(
                at(7, 1),
                RecordType::Delivered,
                &outcome_payload("Q1", &[0], None),
            )
            .unwrap();
        index
            .apply(at(7, 2), RecordType::Held, &admin_payload("Q1"))
            .unwrap();
        let message = index.get("Q1").unwrap();
        assert_eq!(message.pending, vec![1, 2]);
        assert!(message.held);
        assert_eq!(message.attempts, 0);
    }

    #[test]
    fn a_copy_with_impossible_pending_recipients_is_refused() {
        let mut index = QueueIndex::new();
        for (pending, error) in [
            (
                &[0, 3][..],
                PayloadError::RecipientOutOfRange {
                    queue_id: "Q1".into(),
                    index: 3,
                    recipients: 3,
                },
            ),
            (
                &[],
                PayloadError::InvalidCopiedPending {
                    queue_id: "Q1".into(),
                },
            ),
            (
                &[2, 1],
                PayloadError::InvalidCopiedPending {
                    queue_id: "Q1".into(),
                },
            ),
            (
                &[1, 1],
                PayloadError::InvalidCopiedPending {
                    queue_id: "Q1".into(),
                },
            ),
        ] {
            let copy = copy_payload("Q1", 3, inline(), carried(pending, false));
            assert_eq!(index.apply(at(7, 0), RecordType::Commit, &copy), Err(error));
        }
        assert!(index.is_empty());
        check_counts(&index);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Commit {
            id: u8,
            segment: u64,
            body: Vec<u64>,
        },
        Final {
            id: u8,
            recipient: u32,
        },
        Delete {
            id: u8,
        },
    }

    fn step_strategy() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..8, 0u64..6, prop::collection::vec(0u64..6, 0..3))
                .prop_map(|(id, segment, body)| Step::Commit { id, segment, body }),
            (0u8..8, 0u32..2).prop_map(|(id, recipient)| Step::Final { id, recipient }),
            (0u8..8).prop_map(|id| Step::Delete { id }),
        ]
    }

    proptest! {
        /// The incrementally kept segment counts always equal a recount from the messages.
        #[test]
        fn segment_counts_match_a_recount(steps in prop::collection::vec(step_strategy(), 0..60)) {
            let mut index = QueueIndex::new();
            for step in steps {
                let _ = match step {
                    Step::Commit { id, segment, body } => {
                        let body = if body.is_empty() {
                            inline()
                        } else {
                            BodyLocation::Extents(body.iter().map(|segment| Extent {
                                generation: 1, segment: *segment, offset: 0, length: 1,
                            }).collect())
                        };
                        index.apply(at(segment, 0), RecordType::Commit,
                            &commit_payload(&format!("Q{id}"), 2, body))
                    }
                    Step::Final { id, recipient } => index.apply(at(0, 0), RecordType::Failed,
                        &outcome_payload(&format!("Q{id}"), &[recipient], None)),
                    Step::Delete { id } => index.apply(at(0, 0), RecordType::Deleted,
                        &admin_payload(&format!("Q{id}"))),
                };
                prop_assert_eq!(&index.segment_references, &index.recount_segment_references());
                prop_assert!(index.iter().all(|message| !message.pending.is_empty()));
            }
        }
    }
}
