//! The shard's queue: every message not yet final, when each is due, and the bookkeeping that
//! turns delivery results into spool records.
//!
//! The index is the one recovery rebuilt; every change to it after start-up goes through the
//! same replay code (`QueueIndex::apply`) with the record the shard has just appended, so the
//! live state and the state after a crash cannot drift apart. The scheduler task wakes at the
//! earliest due time or when a message arrives, groups each due message's pending recipients by
//! destination and hands them to `outbound`. Results come back here: DELIVERED is appended as
//! it arrives; once every destination of the attempt has answered, the failed recipients are
//! reported to the sender (`bounces`) and then recorded FAILED, and the rest get one DEFERRED
//! with the next attempt's time. Segment reclaim and the spool limits live in `reclaim`.
//!
//! It lives on one shard thread and never blocks it; no borrow of the state is held across an
//! await.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::{Latency, Shares, TaskQueueHandle};
use tracing::{error, info, warn};

use super::link::{ControlClient, ShardMetrics};
use super::outbound::{Hop, Job, Outbound};
use super::spool::{Recovered, ShardSpool};
use crate::config::Config;
use crate::delivery::bounce::Action as BounceAction;
use crate::delivery::client::{RecipientResult, Verdict};
use crate::delivery::route::{Destination, Router};
use crate::delivery::schedule::{NextAttempt, RetrySchedule};
use crate::spool::{
    CommitRecord, OutcomeRecord, QueueIndex, QueuedMessage, RecordLocation, RecordType,
};
use crate::time::unix_ms;
use crate::tls::client::OutboundTlsConfigs;

/// Messages handed to delivery per scheduler round, so a large backlog after a restart is
/// started in slices and new mail is not starved behind it.
const DISPATCH_BATCH_MAX: usize = 512;

/// How long the scheduler sleeps when nothing is due; it is woken early by new mail.
const IDLE_WAKEUP: Duration = Duration::from_secs(60);

/// How often the reclaimer looks for segments that no live message needs.
pub(super) const RECLAIM_INTERVAL: Duration = Duration::from_secs(1);

/// What one delivery attempt of one message has produced so far.
struct Attempt {
    jobs_left: usize,
    failed: Vec<Outcome>,
    deferred: Vec<Outcome>,
}

/// One recipient's result with the next hop that gave it (`-` for none).
pub(super) struct Outcome {
    pub result: RecipientResult,
    pub relay: String,
}

struct State {
    index: QueueIndex,
    /// `(due unix ms, queue id)` of every message waiting for an attempt. A message may have a
    /// stale entry (it was rescheduled or finished); the index decides when the entry is popped.
    due: BTreeSet<(u64, String)>,
    /// Messages whose attempt is running, with what it has produced.
    in_flight: HashMap<String, Attempt>,
    /// Segment files that exist and have not been reclaimed, in log order.
    segments: BTreeSet<(u64, u64)>,
    /// The first damaged sealed segment: reclaim never passes it.
    quarantine_boundary: Option<(u64, u64)>,
    quarantined_segments: usize,
}

pub(crate) struct Queue {
    state: RefCell<State>,
    pub spool: ShardSpool,
    router: Router,
    schedule: RetrySchedule,
    pub outbound: Outbound,
    wake: LocalSender<()>,
    random: Cell<u64>,
    pub shard: usize,
    queue_ids: Cell<u32>,
    pub hostname: String,
    pub delay_warning: Option<Duration>,
    /// Messages whose sender has been told of the delay (not persisted: after a restart a
    /// sender may be told twice).
    warned: RefCell<HashSet<String>>,
    pub(super) storage: StorageLimits,
    /// Recipients by final or deferred outcome, and notifications queued, since start.
    pub(super) outcomes: OutcomeCounters,
    /// The task queue of delivery, scheduling and reclaim: fewer shares than the sessions and
    /// the committer in the default queue, so a busy shard answers its clients first.
    background: TaskQueueHandle,
}

/// What holds the oldest needed segment (see `pinned_messages`).
pub(super) struct Pinned {
    pub segment: (u64, u64),
    /// Queue id and stored bytes of each message that may be copied now.
    pub messages: Vec<(String, u64)>,
    /// Messages that need the segment but are being delivered; they wait for the next pass.
    pub in_flight: usize,
}

/// The spool limits of this shard and whether it is over them (see `reclaim`).
pub(super) struct StorageLimits {
    /// This shard's share of `server.spool_size_max`.
    pub size_max_bytes: Option<u64>,
    pub free_min_bytes: u64,
    /// Set while the spool is over a limit: sessions answer MAIL and RCPT with 452.
    pub full: Cell<bool>,
}

/// CPU shares of the background queue against the default queue's 1,000.
const BACKGROUND_SHARES: usize = 250;

#[derive(Default)]
pub(super) struct OutcomeCounters {
    pub delivered: Cell<u64>,
    pub deferred: Cell<u64>,
    pub failed: Cell<u64>,
    pub notifications: Cell<u64>,
}

impl OutcomeCounters {
    fn add(counter: &Cell<u64>, count: usize) {
        counter.set(counter.get() + count as u64);
    }
}

impl Queue {
    /// Takes over the recovered index and starts the scheduler and the reclaimer.
    pub fn start(
        config: &Config,
        shard: usize,
        spool: ShardSpool,
        control: ControlClient,
        recovered: Recovered,
        outbound_tls: Arc<OutboundTlsConfigs>,
    ) -> Rc<Queue> {
        let Recovered {
            index: recovered,
            segment_files: segments,
            quarantined_segments,
            ..
        } = recovered;
        let now = unix_ms(SystemTime::now());
        let due = recovered
            .iter()
            .filter(|message| !message.held)
            .map(|message| {
                (
                    message.next_attempt_unix_ms.min(now),
                    message.commit.queue_id.clone(),
                )
            })
            .collect();
        let (wake, woken) = local_channel::new_bounded(1);
        let queue = Rc::new(Queue {
            state: RefCell::new(State {
                index: recovered,
                due,
                in_flight: HashMap::new(),
                segments: segments.into_iter().collect(),
                quarantine_boundary: quarantined_segments.first().copied(),
                quarantined_segments: quarantined_segments.len(),
            }),
            spool,
            router: Router::new(&config.routes),
            schedule: RetrySchedule::new(&config.delivery),
            outbound: Outbound::new(config, shard, control, outbound_tls),
            wake,
            random: Cell::new(seed(shard)),
            shard,
            queue_ids: Cell::new(0),
            hostname: config.server.hostname.clone(),
            delay_warning: config.delivery.delay_warning,
            warned: RefCell::new(HashSet::new()),
            storage: StorageLimits {
                size_max_bytes: config
                    .server
                    .spool_size_max_bytes
                    .map(|total| total / shard_count(config)),
                free_min_bytes: config.server.spool_free_min_bytes,
                full: Cell::new(false),
            },
            outcomes: OutcomeCounters::default(),
            background: glommio::executor().create_task_queue(
                Shares::Static(BACKGROUND_SHARES),
                Latency::NotImportant,
                "postern-delivery",
            ),
        });
        queue.spawn_background(Rc::clone(&queue).schedule_loop(woken));
        queue.spawn_background(Rc::clone(&queue).reclaim_loop());
        queue
    }

    /// Runs `task` in the background queue (see `background`).
    pub(super) fn spawn_background(&self, task: impl std::future::Future<Output = ()> + 'static) {
        match glommio::spawn_local_into(task, self.background) {
            Ok(task) => {
                task.detach();
            }
            Err(error) => error!(%error, "cannot start a delivery task"),
        }
    }

    /// A message the session has just committed: it is due at once.
    pub fn accept(&self, location: RecordLocation, commit: CommitRecord) {
        let queue_id = commit.queue_id.clone();
        let now = unix_ms(SystemTime::now());
        {
            let mut state = self.state.borrow_mut();
            if let Err(error) = state.index.insert_commit(location, commit) {
                // The session builds the record, so this is a bug, not bad input: the message
                // is durable and will be found again by recovery at the next start.
                error!(%queue_id, %error, "accepted message could not be queued");
                return;
            }
            state.due.insert((now, queue_id));
        }
        let _ = self.wake.try_send(());
    }

    /// A new queue id: generation, shard and a counter, so it is unique across shards and
    /// restarts. Upper-case hex, as operators know from Postfix.
    pub fn next_queue_id(&self) -> String {
        let counter = self.queue_ids.get().wrapping_add(1);
        self.queue_ids.set(counter);
        format!(
            "{:06X}{:02X}{counter:08X}",
            self.spool.generation(),
            self.shard & 0xff
        )
    }

    /// Messages in the queue (for logs and tests).
    pub fn len(&self) -> usize {
        self.state.borrow().index.len()
    }

    async fn schedule_loop(self: Rc<Self>, woken: LocalReceiver<()>) {
        loop {
            let now = unix_ms(SystemTime::now());
            let due = self.take_due(now);
            for queue_id in &due {
                self.dispatch(queue_id, now).await;
            }
            if due.len() == DISPATCH_BATCH_MAX {
                glommio::yield_if_needed().await;
                continue;
            }

            let next = self.state.borrow().due.first().map(|(at, _)| *at);
            let sleep = next.map_or(IDLE_WAKEUP, |at| {
                Duration::from_millis(at.saturating_sub(unix_ms(SystemTime::now())))
            });
            if sleep.is_zero() {
                continue;
            }
            futures_lite::future::or(
                async {
                    woken.recv().await;
                },
                glommio::timer::sleep(sleep.min(IDLE_WAKEUP)),
            )
            .await;
        }
    }

    /// Pops the due entries that still stand for a message ready to be tried.
    fn take_due(&self, now: u64) -> Vec<String> {
        let mut state = self.state.borrow_mut();
        let mut ready = Vec::new();
        while ready.len() < DISPATCH_BATCH_MAX {
            let Some((at, _)) = state.due.first() else {
                break;
            };
            if *at > now {
                break;
            }
            let Some((_, queue_id)) = state.due.pop_first() else {
                break;
            };
            // Deleted or held messages leave their entry behind; releasing re-adds one.
            let ready_to_try = state
                .index
                .get(&queue_id)
                .is_some_and(|message| !message.held);
            if ready_to_try && !state.in_flight.contains_key(&queue_id) {
                ready.push(queue_id);
            }
        }
        ready
    }

    /// Starts one attempt: the pending recipients, grouped by destination.
    async fn dispatch(self: &Rc<Self>, queue_id: &str, now: u64) {
        let jobs = {
            let state = self.state.borrow();
            let Some(message) = state.index.get(queue_id) else {
                return;
            };
            let mut groups: Vec<(Destination, Vec<u32>)> = Vec::new();
            let mut unroutable = Vec::new();
            for &index in &message.pending {
                let address = &message.commit.envelope.rcpt_to[index as usize].address;
                match self.router.destination(address) {
                    Some(destination) => match groups.iter_mut().find(|(d, _)| *d == destination) {
                        Some((_, recipients)) => recipients.push(index),
                        None => groups.push((destination, vec![index])),
                    },
                    None => unroutable.push(index),
                }
            }
            let envelope = Rc::new(message.commit.envelope.clone());
            let header_prefix: Rc<[u8]> = Rc::from(message.commit.header_prefix.as_slice());
            let body = Rc::new(message.commit.body.clone());
            let attempt = message.attempts + 1;
            let delay_ms = now.saturating_sub(message.commit.received_at_unix_ms);
            let jobs: Vec<Job> = groups
                .into_iter()
                .map(|(destination, recipients)| Job {
                    queue_id: queue_id.to_owned(),
                    destination,
                    recipients,
                    envelope: Rc::clone(&envelope),
                    header_prefix: Rc::clone(&header_prefix),
                    body: Rc::clone(&body),
                    attempt,
                    delay: Duration::from_millis(delay_ms),
                })
                .collect();
            (jobs, unroutable)
        };
        let (jobs, unroutable) = jobs;

        self.state.borrow_mut().in_flight.insert(
            queue_id.to_owned(),
            Attempt {
                jobs_left: jobs.len() + usize::from(!unroutable.is_empty()),
                failed: Vec::new(),
                deferred: Vec::new(),
            },
        );
        for job in jobs {
            self.outbound.submit(self, job);
        }
        if !unroutable.is_empty() {
            let results = unroutable
                .into_iter()
                .map(|index| RecipientResult {
                    index,
                    verdict: Verdict::Failed,
                    status: "5.4.4".into(),
                    detail: "no [[route]] matches the recipient's domain".into(),
                })
                .collect();
            self.finish_job(queue_id, "-", results).await;
        }
    }

    /// Records what one destination did with its recipients: deliveries at once; failures and
    /// deferrals when the last destination of the attempt has answered (see `conclude`).
    pub async fn finish_job(&self, queue_id: &str, relay: &str, results: Vec<RecipientResult>) {
        let mut delivered = Vec::new();
        let mut unfinished = Vec::new();
        for result in results {
            match result.verdict {
                Verdict::Delivered => delivered.push(result),
                Verdict::Failed | Verdict::Deferred => unfinished.push(Outcome {
                    result,
                    relay: relay.to_owned(),
                }),
            }
        }
        if !delivered.is_empty() {
            self.record_outcome(RecordType::Delivered, queue_id, &delivered, None)
                .await;
        }

        let finished = {
            let mut state = self.state.borrow_mut();
            let Some(attempt) = state.in_flight.get_mut(queue_id) else {
                debug_assert!(false, "a job finished for a message not in flight");
                return;
            };
            attempt.jobs_left -= 1;
            for outcome in unfinished {
                match outcome.result.verdict {
                    Verdict::Failed => attempt.failed.push(outcome),
                    _ => attempt.deferred.push(outcome),
                }
            }
            if attempt.jobs_left > 0 {
                None
            } else {
                state.in_flight.remove(queue_id)
            }
        };
        if let Some(attempt) = finished {
            self.conclude(queue_id, attempt).await;
        }
    }

    /// Ends an attempt. Deferred recipients get one DEFERRED record with the next attempt's
    /// time, or fail once the message is past its maximum age. Failed recipients are bounced
    /// first and recorded after: a crash in between repeats the attempt (and perhaps the
    /// bounce) rather than losing the notification.
    async fn conclude(&self, queue_id: &str, attempt: Attempt) {
        let Attempt {
            mut failed,
            deferred,
            ..
        } = attempt;
        let Some((received, attempts)) = self.with_index(|index| {
            index
                .get(queue_id)
                .map(|message| (message.commit.received_at_unix_ms, message.attempts + 1))
        }) else {
            return; // Deleted by an operator while the attempt ran.
        };

        let mut delayed = Vec::new();
        if !deferred.is_empty() {
            let now = unix_ms(SystemTime::now());
            match self
                .schedule
                .after_failure(received, attempts, now, self.next_random())
            {
                NextAttempt::At { unix_ms } => {
                    let results: Vec<RecipientResult> =
                        deferred.iter().map(|o| o.result.clone()).collect();
                    self.record_outcome(RecordType::Deferred, queue_id, &results, Some(unix_ms))
                        .await;
                    self.schedule_now(vec![queue_id.to_owned()], unix_ms);
                    if self.delay_warning_due(queue_id, received, now) {
                        delayed = deferred;
                    }
                }
                NextAttempt::Expired => {
                    warn!(%queue_id, recipients = deferred.len(), "message expired in the queue");
                    self.log_expired(queue_id, attempts, &deferred);
                    failed.extend(deferred.into_iter().map(|outcome| Outcome {
                        result: RecipientResult {
                            verdict: Verdict::Failed,
                            status: "4.4.7".into(),
                            detail: format!(
                                "gave up after the maximum queue time; last error: {}",
                                outcome.result.detail
                            ),
                            ..outcome.result
                        },
                        ..outcome
                    }));
                }
            }
        }

        if !delayed.is_empty() {
            self.bounce(queue_id, &delayed, BounceAction::Delayed).await;
        }
        if !failed.is_empty() {
            self.bounce(queue_id, &failed, BounceAction::Failed).await;
            let results: Vec<RecipientResult> = failed.into_iter().map(|o| o.result).collect();
            self.record_outcome(RecordType::Failed, queue_id, &results, None)
                .await;
        }
    }

    /// One `delivery` line per recipient given up on, like those of a normal attempt.
    fn log_expired(&self, queue_id: &str, attempt: u32, outcomes: &[Outcome]) {
        self.with_index(|index| {
            let Some(message) = index.get(queue_id) else {
                return;
            };
            let received = message.commit.received_at_unix_ms;
            let delay_ms = unix_ms(SystemTime::now()).saturating_sub(received);
            for outcome in outcomes {
                let recipient = &message.commit.envelope.rcpt_to[outcome.result.index as usize];
                info!(
                    %queue_id,
                    to = %recipient.address,
                    relay = %outcome.relay,
                    attempt,
                    delay_ms,
                    dsn = %"4.4.7",
                    status = "bounced",
                    reply = %format!(
                        "gave up after the maximum queue time; last error: {}",
                        outcome.result.detail
                    ),
                    "delivery"
                );
            }
        });
    }

    /// Whether the sender should now be told once that delivery is delayed.
    fn delay_warning_due(&self, queue_id: &str, received: u64, now: u64) -> bool {
        let Some(warning) = self.delay_warning else {
            return false;
        };
        now.saturating_sub(received) >= warning.as_millis() as u64
            && self.warned.borrow_mut().insert(queue_id.to_owned())
    }

    /// When the message received at `received_unix_ms` expires.
    pub(super) fn expires_unix_ms(&self, received_unix_ms: u64) -> u64 {
        self.schedule.expires_unix_ms(received_unix_ms)
    }

    /// Appends one outcome record and applies it to the index, as recovery would replay it.
    async fn record_outcome(
        &self,
        record_type: RecordType,
        queue_id: &str,
        results: &[RecipientResult],
        next_attempt_unix_ms: Option<u64>,
    ) {
        let counter = match record_type {
            RecordType::Delivered => &self.outcomes.delivered,
            RecordType::Deferred => &self.outcomes.deferred,
            _ => &self.outcomes.failed,
        };
        OutcomeCounters::add(counter, results.len());
        let record = OutcomeRecord {
            queue_id: queue_id.to_owned(),
            recipients: results.iter().map(|result| result.index).collect(),
            detail: results
                .last()
                .map(|result| result.detail.clone())
                .unwrap_or_default(),
            next_attempt_unix_ms,
        };
        let mut payload = Vec::new();
        record.encode(&mut payload);
        self.apply_and_append(record_type, queue_id, &payload).await;
    }

    /// Applies a record to the index, as recovery would replay it, then appends it to the
    /// spool. The index changes at once, so the scheduler never acts on stale state; outcome
    /// and admin records carry no location the index uses, hence the placeholder.
    pub(super) async fn apply_and_append(
        &self,
        record_type: RecordType,
        queue_id: &str,
        payload: &[u8],
    ) {
        self.apply_record(record_type, queue_id, payload);
        self.spool.append(record_type, payload).await;
    }

    /// Applies an outcome or admin record to the index, as recovery would replay it.
    pub(super) fn apply_record(&self, record_type: RecordType, queue_id: &str, payload: &[u8]) {
        let (generation, segment) = self.spool.write_position();
        let placeholder = RecordLocation {
            generation,
            segment,
            offset: 0,
        };
        let applied = self
            .state
            .borrow_mut()
            .index
            .apply(placeholder, record_type, payload);
        if let Err(error) = applied {
            error!(%queue_id, %error, "record could not be applied to the queue");
        }
    }

    /// Reads the index.
    pub(super) fn with_index<T>(&self, read: impl FnOnce(&QueueIndex) -> T) -> T {
        read(&self.state.borrow().index)
    }

    /// Reads the index with a test for "an attempt is running".
    pub(super) fn with_state<T>(
        &self,
        read: impl FnOnce(&QueueIndex, &dyn Fn(&str) -> bool) -> T,
    ) -> T {
        let state = self.state.borrow();
        read(&state.index, &|queue_id| {
            state.in_flight.contains_key(queue_id)
        })
    }

    /// Adds the segments the spool created since the last call, and returns those before the
    /// oldest one still needed: by a queued message, as the one being written, or as the first
    /// quarantined segment.
    pub(super) fn reclaimable_segments(&self) -> Vec<(u64, u64)> {
        self.note_created_segments();
        let write_position = self.spool.write_position();
        let state = self.state.borrow();
        let boundary = state
            .index
            .oldest_live_segment()
            .unwrap_or((u64::MAX, u64::MAX))
            .min(write_position)
            .min(state.quarantine_boundary.unwrap_or((u64::MAX, u64::MAX)));
        state.segments.range(..boundary).copied().collect()
    }

    /// Adds the segment files the spool created since the last call; returns whether there
    /// were any.
    pub(super) fn note_created_segments(&self) -> bool {
        let created = self.spool.take_created_segments();
        if created.is_empty() {
            return false;
        }
        let generation = self.spool.generation();
        self.state
            .borrow_mut()
            .segments
            .extend(created.into_iter().map(|segment| (generation, segment)));
        true
    }

    /// The messages pinning the oldest needed segment, when reclaim is stuck behind it: that
    /// segment trails the write position by at least `lag_min` held segments, and by at least
    /// twice the bytes every queued message takes (see `compaction` for why). `None` when it
    /// does not.
    pub(super) fn pinned_messages(&self, lag_min: u64) -> Option<Pinned> {
        let state = self.state.borrow();
        let oldest = state.index.oldest_live_segment()?;
        let queued_bytes: u64 = state.index.iter().map(QueuedMessage::stored_bytes).sum();
        let lag = lag_min.max((2 * queued_bytes).div_ceil(self.spool.segment_bytes().max(1)));
        if (state.segments.range(oldest..).count() as u64) < lag {
            return None;
        }
        let mut pinned = Pinned {
            segment: oldest,
            messages: Vec::new(),
            in_flight: 0,
        };
        for message in state.index.iter().filter(|m| m.references(oldest)) {
            let queue_id = &message.commit.queue_id;
            if state.in_flight.contains_key(queue_id) {
                pinned.in_flight += 1;
            } else {
                pinned
                    .messages
                    .push((queue_id.clone(), message.stored_bytes()));
            }
        }
        Some(pinned)
    }

    /// Moves a queued message to its copy written forward by compaction.
    pub(super) fn move_to_copy(&self, location: RecordLocation, copy: CommitRecord) {
        let queue_id = copy.queue_id.clone();
        if let Err(error) = self.state.borrow_mut().index.insert_commit(location, copy) {
            error!(%queue_id, %error, "a copied message could not replace its original");
        }
    }

    /// A segment file is gone.
    pub(super) fn forget_segment(&self, generation: u64, segment: u64) {
        self.state
            .borrow_mut()
            .segments
            .remove(&(generation, segment));
    }

    /// Segment files not yet reclaimed.
    pub(super) fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Damaged sealed segments found at start-up, kept for the operator.
    pub(super) fn quarantined_segments(&self) -> usize {
        self.state.borrow().quarantined_segments
    }

    /// Makes these messages due at `now` and wakes the scheduler.
    pub(super) fn schedule_now(&self, queue_ids: Vec<String>, now: u64) {
        {
            let mut state = self.state.borrow_mut();
            for queue_id in queue_ids {
                state.due.insert((now, queue_id));
            }
        }
        let _ = self.wake.try_send(());
    }

    fn next_random(&self) -> u64 {
        let mut x = self.random.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.set(x);
        x
    }

    /// The queue's part of the shard's metrics.
    pub fn metrics(&self) -> ShardMetrics {
        let state = self.state.borrow();
        ShardMetrics {
            recipients_delivered: self.outcomes.delivered.get(),
            recipients_deferred: self.outcomes.deferred.get(),
            recipients_failed: self.outcomes.failed.get(),
            notifications_queued: self.outcomes.notifications.get(),
            queue_messages: state.index.len() as u64,
            spool_segments: state.segments.len() as u64,
            spool_quarantined_segments: state.quarantined_segments as u64,
            spool_full: self.storage.full.get(),
            ..ShardMetrics::default()
        }
    }
}

/// Delivery log line for one recipient, in the spirit of Postfix's `status=` lines.
pub(crate) fn log_result(job: &Job, hop: &Hop, result: &RecipientResult) {
    let recipient = &job.envelope.rcpt_to[result.index as usize].address;
    let status = match result.verdict {
        Verdict::Delivered => "sent",
        Verdict::Deferred => "deferred",
        Verdict::Failed => "bounced",
    };
    info!(
        queue_id = %job.queue_id,
        to = %recipient,
        destination = %job.destination,
        relay = hop.relay.as_str(),
        tls = hop.tls,
        attempt = job.attempt,
        delay_ms = job.delay.as_millis() as u64,
        dsn = %result.status,
        status,
        reply = %result.detail,
        "delivery"
    );
}

/// The shards the configuration asks for (0 = one per core), for dividing spool limits.
fn shard_count(config: &Config) -> u64 {
    match config.server.shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        shards => shards as u64,
    }
}

fn seed(shard: usize) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ (shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}
