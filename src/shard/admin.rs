//! Queue administration on the shard: the answers to `postern queue …` for the messages this
//! shard owns.
//!
//! Every change is made the way delivery makes its changes: an admin record (HELD, RELEASED,
//! DELETED, with the actor) is appended to the spool and applied to the index through the same
//! replay code, so an action survives a restart exactly as it was taken. Every action is logged
//! with who asked for it.

use std::time::SystemTime;

use tracing::{error, info};

use super::link::{AdminReply, AdminRequest, QueueEntry, ShardStats};
use super::queue::Queue;
use crate::spool::{AdminRecord, QueuedMessage, RecordType};
use crate::time::unix_ms;

impl Queue {
    /// Carries out one admin request.
    pub async fn administer(&self, request: AdminRequest) -> AdminReply {
        match request {
            AdminRequest::List => AdminReply::Entries(self.entries(None)),
            AdminRequest::Show { queue_id } => {
                AdminReply::Entry(self.entries(Some(&queue_id)).pop())
            }
            AdminRequest::Stats => AdminReply::Stats(self.stats()),
            // Answered by the shard loop, which holds the session counters as well.
            AdminRequest::Metrics => AdminReply::Metrics(Box::new(self.metrics())),
            AdminRequest::Flush => {
                let affected = self.make_due(None, false);
                info!(affected, "queue flush: every deferred message is tried now");
                AdminReply::Done { affected }
            }
            AdminRequest::Requeue { queue_id, actor } => {
                self.outbound.forget_pauses();
                let affected = self.make_due(queue_id.as_deref(), false);
                info!(
                    queue_id = queue_id.as_deref().unwrap_or("ALL"),
                    %actor,
                    affected,
                    "queue requeue: routed afresh and tried now; destination pauses lifted"
                );
                AdminReply::Done { affected }
            }
            AdminRequest::Hold { queue_id, actor } => {
                self.admin_record(RecordType::Held, &queue_id, &actor, |m| !m.held)
                    .await
            }
            AdminRequest::Release { queue_id, actor } => {
                let reply = self
                    .admin_record(RecordType::Released, &queue_id, &actor, |m| m.held)
                    .await;
                self.make_due(Some(&queue_id), false);
                reply
            }
            AdminRequest::Delete { queue_id, actor } => {
                self.admin_record(RecordType::Deleted, &queue_id, &actor, |_| true)
                    .await
            }
        }
    }

    /// Appends and applies one admin record for `queue_id`, when the message exists and
    /// `applies` says the action changes it.
    async fn admin_record(
        &self,
        record_type: RecordType,
        queue_id: &str,
        actor: &str,
        applies: impl Fn(&QueuedMessage) -> bool,
    ) -> AdminReply {
        let applicable = self.with_index(|index| index.get(queue_id).is_some_and(&applies));
        if !applicable {
            return AdminReply::Done { affected: 0 };
        }
        let record = AdminRecord {
            queue_id: queue_id.to_owned(),
            actor: actor.to_owned(),
        };
        let mut payload = Vec::new();
        record.encode(&mut payload);
        if let Err(failure) = self.spool.append_durable(record_type, &payload).await {
            error!(
                %queue_id,
                %actor,
                %failure,
                "queue administration not recorded: the spool write failed"
            );
            return AdminReply::Failed {
                reason: failure.to_string(),
            };
        }
        self.apply_record(record_type, queue_id, &payload);
        info!(
            %queue_id,
            %actor,
            action = ?record_type,
            "queue administration"
        );
        AdminReply::Done { affected: 1 }
    }

    fn entries(&self, only: Option<&str>) -> Vec<QueueEntry> {
        let shard = self.shard;
        self.with_state(|index, in_flight| {
            let entry = |message: &QueuedMessage| {
                let commit = &message.commit;
                QueueEntry {
                    queue_id: commit.queue_id.clone(),
                    shard,
                    arrival_unix_ms: commit.received_at_unix_ms,
                    size_bytes: message.stored_bytes(),
                    sender: commit.envelope.mail_from.clone(),
                    recipients: message
                        .pending
                        .iter()
                        .map(|&i| commit.envelope.rcpt_to[i as usize].address.clone())
                        .collect(),
                    held: message.held,
                    active: in_flight(&commit.queue_id),
                    attempts: message.attempts,
                    next_attempt_unix_ms: message.next_attempt_unix_ms,
                }
            };
            match only {
                Some(queue_id) => index.get(queue_id).map(entry).into_iter().collect(),
                None => index.iter().map(entry).collect(),
            }
        })
    }

    fn stats(&self) -> ShardStats {
        let shard = self.shard;
        let paused_destinations = self.outbound.paused();
        let segments = self.segment_count();
        let quarantined_segments = self.quarantined_segments();
        self.with_state(|index, in_flight| {
            let mut stats = ShardStats {
                shard,
                segments,
                quarantined_segments,
                paused_destinations,
                ..ShardStats::default()
            };
            for message in index.iter() {
                stats.messages += 1;
                stats.recipients += message.pending.len();
                stats.held += usize::from(message.held);
                stats.active += usize::from(in_flight(&message.commit.queue_id));
                stats.deferred += usize::from(message.attempts > 0);
                let arrival = message.commit.received_at_unix_ms;
                stats.oldest_arrival_unix_ms = Some(
                    stats
                        .oldest_arrival_unix_ms
                        .map_or(arrival, |o| o.min(arrival)),
                );
            }
            stats
        })
    }

    /// Puts one message (or every message) at the front of the schedule, skipping held ones;
    /// returns how many.
    fn make_due(&self, only: Option<&str>, include_held: bool) -> usize {
        let now = unix_ms(SystemTime::now());
        let ids: Vec<String> = self.with_index(|index| {
            index
                .iter()
                .filter(|m| include_held || !m.held)
                .filter(|m| only.is_none_or(|id| m.commit.queue_id == id))
                .map(|m| m.commit.queue_id.clone())
                .collect()
        });
        let count = ids.len();
        self.schedule_now(ids, now);
        count
    }
}
