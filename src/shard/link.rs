//! The channels between the shards and the control thread, and the messages they carry.
//!
//! Shards never share memory with the control thread; they exchange these messages over bounded
//! flume channels, which both glommio (shards) and tokio (control) can await. A full channel
//! makes the sender wait rather than grow memory. This module owns the channel types so that
//! neither side needs to know the other's runtime. DNS answers travel as the plain data types of
//! `shard::resolution`, verification requests and verdicts as those of `verification`, AUTH
//! credentials and verdicts as those of `sasl`, all re-exported here.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

pub use super::resolution::{DnsFailure, MxAnswer, MxHost};
use crate::histogram::DurationHistogram;
pub use crate::sasl::{Credentials, Verdict};
pub use crate::verification::{Identities, MessageVerdict, SpfVerdict};

/// How many requests a shard may have queued at the control thread before it waits.
pub const CONTROL_REQUESTS_MAX: usize = 1024;

/// How many commands may wait for one shard.
pub const SHARD_COMMANDS_MAX: usize = 16;

/// What the control thread asks a shard to do.
#[derive(Debug, Clone)]
pub enum ShardCommand {
    /// Stop accepting; sessions may finish until `deadline`, then they are told `421 4.3.2`.
    Shutdown { deadline: Instant },
    /// A queue administration request from the admin API; the answer goes to `reply`.
    Admin {
        request: AdminRequest,
        reply: flume::Sender<AdminReply>,
    },
}

/// Queue administration, with the semantics Postfix operators know from `mailq`,
/// `postqueue -f` and `postsuper -h/-H/-d/-r`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    /// Every queued message (`mailq`).
    List,
    /// One message in detail.
    Show { queue_id: String },
    /// Try every deferred message now (`postqueue -f`).
    Flush,
    /// Keep a message but never try it until released (`postsuper -h`).
    Hold { queue_id: String, actor: String },
    /// Undo a hold; the message is tried at once (`postsuper -H`).
    Release { queue_id: String, actor: String },
    /// Remove a message without delivering it (`postsuper -d`).
    Delete { queue_id: String, actor: String },
    /// Route one message, or every one, afresh and try it now, forgetting destination pauses
    /// (`postsuper -r`).
    Requeue {
        queue_id: Option<String>,
        actor: String,
    },
    /// Counts for the shard.
    Stats,
    /// The shard's counters and gauges, for `/metrics`.
    Metrics,
}

/// One shard's counters (since start) and gauges (now), for the Prometheus endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMetrics {
    pub shard: usize,
    pub sessions_accepted: u64,
    pub sessions_refused_over_limit: u64,
    pub early_talkers: u64,
    pub tls_handshakes: u64,
    pub tls_handshake_failures: u64,
    pub auth_successes: u64,
    pub auth_failures: u64,
    pub auth_temporary_failures: u64,
    pub messages_signed: u64,
    pub messages_verified: u64,
    pub messages_refused_dmarc: u64,
    pub sessions_active: u64,
    pub messages_accepted: u64,
    /// How long each batch took to become durable; its count is the batches written, each one
    /// durable (O_DSYNC) write.
    pub spool_batch_write: DurationHistogram,
    /// How long each message's COMMIT waited to become durable.
    pub spool_commit_wait: DurationHistogram,
    pub recipients_delivered: u64,
    pub recipients_deferred: u64,
    pub recipients_failed: u64,
    pub notifications_queued: u64,
    pub queue_messages: u64,
    pub spool_segments: u64,
    pub spool_quarantined_segments: u64,
    pub spool_full: bool,
}

/// One queued message as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueEntry {
    pub queue_id: String,
    pub shard: usize,
    pub arrival_unix_ms: u64,
    pub size_bytes: u64,
    pub sender: String,
    /// Recipients still pending.
    pub recipients: Vec<String>,
    pub held: bool,
    /// An attempt is running right now.
    pub active: bool,
    pub attempts: u32,
    pub next_attempt_unix_ms: u64,
}

/// A shard's queue in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShardStats {
    pub shard: usize,
    pub messages: usize,
    pub recipients: usize,
    pub held: usize,
    pub active: usize,
    /// Messages with at least one failed attempt.
    pub deferred: usize,
    pub oldest_arrival_unix_ms: Option<u64>,
    pub segments: usize,
    /// Damaged sealed segments kept for inspection (see docs/spool.md); reclaim stops at them.
    pub quarantined_segments: usize,
    pub paused_destinations: usize,
}

/// A shard's answer to an [`AdminRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminReply {
    Entries(Vec<QueueEntry>),
    Entry(Option<QueueEntry>),
    /// How many messages the action changed.
    Done {
        affected: usize,
    },
    /// The action could not be made durable; nothing changed.
    Failed {
        reason: String,
    },
    Stats(ShardStats),
    /// Boxed: with its histograms it is several times larger than the other answers.
    Metrics(Box<ShardMetrics>),
}

/// What a shard asks the control thread. Every request carries its own reply channel.
#[derive(Debug)]
pub enum ControlRequest {
    /// Liveness round trip; a shard sends it once at start-up to prove the path works.
    Ping {
        shard: usize,
        reply: flume::Sender<ControlReply>,
    },
    /// Where mail for `domain` goes (RFC 5321 §5.1, RFC 7505). The control thread gives up at
    /// `deadline`, when the asking shard stops waiting.
    ResolveMx {
        domain: String,
        deadline: Instant,
        reply: flume::Sender<Result<MxAnswer, DnsFailure>>,
    },
    /// The A and AAAA addresses of `name`, IPv4 first.
    ResolveHost {
        name: String,
        deadline: Instant,
        reply: flume::Sender<Result<Vec<IpAddr>, DnsFailure>>,
    },
    /// A TCP connection to `address` from the local address `source` (bind before connect),
    /// which the shard's runtime cannot open; answered with the connected socket.
    ConnectFrom {
        source: IpAddr,
        address: SocketAddr,
        deadline: Instant,
        reply: flume::Sender<Result<OwnedFd, String>>,
    },
    /// SPF for the HELO and MAIL FROM identities (RFC 7208), started as soon as they are known;
    /// the answer waits in `reply` until the message is complete.
    VerifySpf {
        identities: Identities,
        deadline: Instant,
        reply: flume::Sender<SpfVerdict>,
    },
    /// DKIM and DMARC on a whole message (RFC 6376, RFC 7489), with the SPF verdict that
    /// arrives on `spf`; answered with the `Authentication-Results:` field by `deadline`.
    VerifyMessage {
        identities: Identities,
        message: Vec<u8>,
        spf: flume::Receiver<SpfVerdict>,
        deadline: Instant,
        reply: flume::Sender<MessageVerdict>,
    },
    /// Check AUTH credentials from `client` against the users file, counting failures per
    /// client address across every shard. `Debug` shows the user name, never the password.
    /// An attempt still waiting for a verification slot at `deadline`, when the shard stops
    /// waiting, is dropped unchecked rather than checked for nobody.
    Authenticate {
        client: IpAddr,
        credentials: Credentials,
        deadline: Instant,
        reply: flume::Sender<Verdict>,
    },
}

/// The control thread's answer to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlReply {
    Pong,
}

/// The shard's side of its link: commands in, requests out.
pub struct ShardLink {
    pub shard: usize,
    pub commands: flume::Receiver<ShardCommand>,
    pub control: ControlClient,
}

/// The control thread's side: one command sender per shard, one request receiver for all.
pub struct ControlLink {
    pub shards: Vec<flume::Sender<ShardCommand>>,
    pub requests: flume::Receiver<ControlRequest>,
}

/// Makes the channels for `shards` shards.
pub fn links(shards: usize) -> (ControlLink, Vec<ShardLink>) {
    let (request_tx, request_rx) = flume::bounded(CONTROL_REQUESTS_MAX);
    let mut shard_links = Vec::with_capacity(shards);
    let mut command_senders = Vec::with_capacity(shards);

    for shard in 0..shards {
        let (command_tx, command_rx) = flume::bounded(SHARD_COMMANDS_MAX);
        command_senders.push(command_tx);
        shard_links.push(ShardLink {
            shard,
            commands: command_rx,
            control: ControlClient {
                requests: request_tx.clone(),
            },
        });
    }

    let control = ControlLink {
        shards: command_senders,
        requests: request_rx,
    };
    (control, shard_links)
}

/// A shard's handle for asking the control thread things.
#[derive(Clone)]
pub struct ControlClient {
    requests: flume::Sender<ControlRequest>,
}

/// How much longer than the connect timeout a shard waits for a connection the control
/// thread opens for it.
const CONNECT_REPLY_GRACE: Duration = Duration::from_secs(1);

/// How much longer than its verification timeout a shard waits for the verdict, so that the
/// control thread's own `temperror` answer at the deadline still arrives.
pub const VERIFICATION_REPLY_GRACE: Duration = Duration::from_secs(1);

/// An SPF verdict on its way from the control thread.
#[derive(Debug)]
pub struct PendingSpf(flume::Receiver<SpfVerdict>);

/// The control thread is gone or did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("the control thread did not answer")]
pub struct ControlUnavailable;

impl ControlClient {
    /// Sends a liveness ping and waits for the answer, at most `patience`.
    pub async fn ping(&self, shard: usize, patience: Duration) -> Result<(), ControlUnavailable> {
        let (reply_tx, reply_rx) = flume::bounded(1);
        let request = ControlRequest::Ping {
            shard,
            reply: reply_tx,
        };
        match self.exchange(request, reply_rx, patience).await {
            Ok(ControlReply::Pong) => Ok(()),
            Err(_) => Err(ControlUnavailable),
        }
    }

    /// Asks where mail for `domain` goes, waiting at most `patience`. A control thread that is
    /// gone, busy or slower than `patience` is a `DnsFailure::Temporary`, never a permanent one.
    pub async fn resolve_mx(
        &self,
        domain: &str,
        patience: Duration,
    ) -> Result<MxAnswer, DnsFailure> {
        let (reply_tx, reply_rx) = flume::bounded(1);
        let request = ControlRequest::ResolveMx {
            domain: domain.to_owned(),
            deadline: Instant::now() + patience,
            reply: reply_tx,
        };
        self.ask(request, reply_rx, patience).await
    }

    /// Asks for the addresses of `name` (A and AAAA, IPv4 first), waiting at most `patience`.
    /// An IP address literal is answered as itself without a query.
    pub async fn resolve_host(
        &self,
        name: &str,
        patience: Duration,
    ) -> Result<Vec<IpAddr>, DnsFailure> {
        let (reply_tx, reply_rx) = flume::bounded(1);
        let request = ControlRequest::ResolveHost {
            name: name.to_owned(),
            deadline: Instant::now() + patience,
            reply: reply_tx,
        };
        self.ask(request, reply_rx, patience).await
    }

    /// A connection to `address` bound to `source`, opened by the control thread within
    /// `patience`. The error says what failed (the bind, the connect, or the control thread).
    pub async fn connect_from(
        &self,
        source: IpAddr,
        address: SocketAddr,
        patience: Duration,
    ) -> Result<OwnedFd, String> {
        let (reply_tx, reply_rx) = flume::bounded(1);
        let request = ControlRequest::ConnectFrom {
            source,
            address,
            deadline: Instant::now() + patience,
            reply: reply_tx,
        };
        // The control thread gives up at the deadline itself; the margin lets its answer,
        // and the socket in it, come back rather than be dropped on the floor.
        let wait = patience + CONNECT_REPLY_GRACE;
        match self.exchange(request, reply_rx, wait).await {
            Ok(answer) => answer,
            Err(NoAnswer::Gone) => Err(ControlUnavailable.to_string()),
            Err(NoAnswer::TimedOut) => {
                Err(format!("connect to {address} from {source}: timed out"))
            }
        }
    }

    /// Starts the SPF checks of a transaction and returns at once; the verdict arrives in the
    /// returned receiver, to be handed to `verify_message`. A full request channel is not
    /// waited for: the receiver then never gets a verdict, which reads `temperror`.
    pub fn start_spf(&self, identities: Identities, patience: Duration) -> PendingSpf {
        let (reply_tx, reply_rx) = flume::bounded(1);
        let request = ControlRequest::VerifySpf {
            identities,
            deadline: Instant::now() + patience,
            reply: reply_tx,
        };
        let _ = self.requests.try_send(request);
        PendingSpf(reply_rx)
    }

    /// Asks for DKIM and DMARC on `message` with the pending SPF verdict, waiting at most
    /// `patience` plus `VERIFICATION_REPLY_GRACE`: the control thread answers with whatever it
    /// has at `patience`, and the grace lets that answer travel back.
    pub async fn verify_message(
        &self,
        identities: Identities,
        message: Vec<u8>,
        spf: PendingSpf,
        patience: Duration,
    ) -> Result<MessageVerdict, ControlUnavailable> {
        let (reply_tx, reply_rx) = flume::bounded(1);
        let request = ControlRequest::VerifyMessage {
            identities,
            message,
            spf: spf.0,
            deadline: Instant::now() + patience,
            reply: reply_tx,
        };
        let waited = patience + VERIFICATION_REPLY_GRACE;
        self.exchange(request, reply_rx, waited)
            .await
            .map_err(|_| ControlUnavailable)
    }

    /// Has `credentials` verified on the control thread, waiting at most `patience`. A control
    /// thread that is gone, busy or slower than `patience` is `Verdict::Unavailable`, which the
    /// client hears as a temporary failure.
    pub async fn authenticate(
        &self,
        client: IpAddr,
        credentials: Credentials,
        patience: Duration,
    ) -> Verdict {
        let (reply_tx, reply_rx) = flume::bounded(1);
        let request = ControlRequest::Authenticate {
            client,
            credentials,
            deadline: Instant::now() + patience,
            reply: reply_tx,
        };
        self.exchange(request, reply_rx, patience)
            .await
            .unwrap_or(Verdict::Unavailable)
    }

    /// Sends a DNS request and waits for its answer; `patience` bounds both the wait for room in
    /// the request channel and the wait for the reply.
    async fn ask<T>(
        &self,
        request: ControlRequest,
        reply: flume::Receiver<Result<T, DnsFailure>>,
        patience: Duration,
    ) -> Result<T, DnsFailure> {
        match self.exchange(request, reply, patience).await {
            Ok(answer) => answer,
            Err(NoAnswer::Gone) => Err(DnsFailure::Temporary(ControlUnavailable.to_string())),
            Err(NoAnswer::TimedOut) => Err(DnsFailure::Temporary(format!(
                "no DNS answer within {patience:?}"
            ))),
        }
    }

    /// Sends `request` and waits for its answer on `reply`; `wait` bounds both the wait for
    /// room in the request channel and the wait for the answer.
    async fn exchange<T>(
        &self,
        request: ControlRequest,
        reply: flume::Receiver<T>,
        wait: Duration,
    ) -> Result<T, NoAnswer> {
        let exchange = async {
            self.requests
                .send_async(request)
                .await
                .map_err(|_| NoAnswer::Gone)?;
            reply.recv_async().await.map_err(|_| NoAnswer::Gone)
        };
        match glommio::timer::timeout(wait, async { Ok(exchange.await) }).await {
            Ok(answer) => answer,
            Err(_) => Err(NoAnswer::TimedOut),
        }
    }
}

/// Why a request to the control thread got no answer.
enum NoAnswer {
    /// The control thread has stopped (its channel is closed).
    Gone,
    /// It did not answer within the wait.
    TimedOut,
}
