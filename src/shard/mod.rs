//! The data plane: one pinned glommio executor per core, each owning its sessions and spool.
//!
//! This module is the only place that knows glommio. A shard is started with its own listening
//! sockets (already bound by `listener`), its own spool directory and its link to the control
//! thread; from then on it shares nothing mutable with any other thread. Shutdown is a command
//! from the control thread: stop accepting, let sessions finish until the deadline, then tell the
//! rest `421 4.3.2` and stop.

mod accept;
mod admin;
mod bounces;
mod compaction;
mod connection;
pub mod link;
mod message;
mod outbound;
mod queue;
mod reclaim;
pub mod resolution;
pub mod spool;
mod stream;
mod verification;

use std::cell::Cell;
use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{debug, error, info, warn, Instrument};

use crate::config::{BareLineEndings, Config, ListenerConfig, TlsMode};
use crate::dkim::SigningKeys;
use crate::fatal::{ExitReason, Fatal};
use crate::smtp::{self, Limits};
use accept::Acceptor;
use link::ShardLink;
use spool::{ShardSpool, SpoolSettings};

/// Memory each shard registers with io_uring for storage I/O. Small on purpose: it is locked
/// memory (RLIMIT_MEMLOCK); spool batches larger than this use ordinary aligned allocations.
pub const IO_MEMORY_BYTES: usize = 512 * 1024;

/// How long a shard waits for the control thread's start-up ping before it warns.
const CONTROL_PING_PATIENCE: Duration = Duration::from_secs(5);

/// How often a stopping shard checks whether its sessions are gone.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Pause after a failed accept (descriptor exhaustion, mostly), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The cores this process may run on, in order. Shard `i` is pinned to the `i`-th (modulo).
pub fn online_cpus() -> Result<Vec<usize>, Fatal> {
    let cpus = glommio::CpuSet::online()
        .map_err(|error| Fatal::internal(format!("cannot read the CPU topology: {error}")))?;
    let mut cpus: Vec<usize> = cpus.iter().map(|location| location.cpu).collect();
    cpus.sort_unstable();
    cpus.dedup();
    if cpus.is_empty() {
        return Err(Fatal::internal("no online CPU found"));
    }
    Ok(cpus)
}

/// What one shard needs to start.
pub struct ShardSpec {
    pub index: usize,
    pub cpu: usize,
    /// This shard's listening sockets, one per configured listener.
    pub listeners: Vec<OwnedFd>,
    pub link: ShardLink,
    /// Certificates for TLS listeners, shared by every shard.
    pub tls: Option<Arc<crate::tls::InboundTls>>,
    /// Client configurations for delivery over TLS, shared by every shard.
    pub outbound_tls: Arc<crate::tls::client::OutboundTlsConfigs>,
    /// The DKIM keys, loaded once at start and shared read-only by every shard.
    pub signing_keys: Arc<SigningKeys>,
}

/// The running shards.
pub struct Shards {
    threads: Vec<JoinHandle<()>>,
}

impl Shards {
    /// Starts every shard and waits until each is serving, or returns the first failure (the
    /// shards already started then stop when their link closes).
    pub fn start(config: Arc<Config>, specs: Vec<ShardSpec>) -> Result<Shards, Fatal> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::with_capacity(specs.len());
        let count = specs.len();

        for spec in specs {
            let config = Arc::clone(&config);
            let ready = ready_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("postern-shard-{}", spec.index))
                .spawn(move || run_shard(spec, config, ready))
                .map_err(|error| Fatal::internal(format!("cannot start a shard: {error}")))?;
            threads.push(thread);
        }
        drop(ready_tx);

        for _ in 0..count {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(fatal)) => return Err(fatal),
                Err(_) => return Err(Fatal::internal("a shard stopped during start-up")),
            }
        }
        Ok(Shards { threads })
    }

    /// Waits until every shard has stopped.
    pub fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                error!("a shard panicked; its sessions were cut off");
            }
        }
    }
}

type Ready = std::sync::mpsc::Sender<Result<(), Fatal>>;

fn run_shard(spec: ShardSpec, config: Arc<Config>, ready: Ready) {
    let executor = LocalExecutorBuilder::new(Placement::Fixed(spec.cpu))
        .name(&format!("postern-shard-{}", spec.index))
        .io_memory(IO_MEMORY_BYTES)
        .make();
    let executor = match executor {
        Ok(executor) => executor,
        Err(error) => {
            let _ = ready.send(Err(executor_failure(io::Error::from(error))));
            return;
        }
    };
    let index = spec.index;
    executor.run(
        async move { shard_main(spec, config, ready).await }
            .instrument(tracing::info_span!("shard", shard = index)),
    );
}

/// Names the fix for an executor that could not be built.
fn executor_failure(error: io::Error) -> Fatal {
    match error.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EPERM) => Fatal::new(
            ExitReason::IoUringUnavailable,
            format!("the kernel refused io_uring: {error}"),
            "use Linux 5.8 or newer with io_uring enabled (sysctl kernel.io_uring_disabled=0)",
        ),
        Some(libc::ENOMEM) => Fatal::new(
            ExitReason::MemlockTooLow,
            format!("io_uring could not lock its memory: {error}"),
            "raise the memlock limit (`ulimit -l`, or LimitMEMLOCK= in the systemd unit)",
        ),
        _ => Fatal::internal(format!("cannot start a shard executor: {error}")),
    }
}

async fn shard_main(spec: ShardSpec, config: Arc<Config>, ready: Ready) {
    let ShardSpec {
        index,
        listeners,
        link,
        tls,
        outbound_tls,
        signing_keys,
        ..
    } = spec;

    let directory = shard_directory(&config.server.spool, index);
    let settings = SpoolSettings {
        segment_bytes: config.server.spool_segment_bytes,
        keys: Arc::clone(&config.server.spool_keys),
        ..SpoolSettings::default()
    };
    let (spool, recovered) = match open_spool(&directory, settings).await {
        Ok(opened) => opened,
        Err(error) => {
            let _ = ready.send(Err(spool_failure(&directory, &error)));
            return;
        }
    };

    if link
        .control
        .ping(index, CONTROL_PING_PATIENCE)
        .await
        .is_err()
    {
        warn!("the control thread did not answer the start-up ping; shutdown signals may be lost");
    }

    let (session_deadline_tx, session_deadline_rx) = flume::bounded::<()>(1);
    let queue = queue::Queue::start(
        &config,
        index,
        spool.clone(),
        link.control.clone(),
        recovered,
        outbound_tls,
    );
    let context = Rc::new(ShardContext::new(
        &config,
        signing_keys,
        spool,
        queue,
        link.control.clone(),
        session_deadline_rx,
        tls,
    ));
    let (stop_accepting_tx, stop_accepting_rx) = flume::bounded::<()>(1);

    // `listeners` comes in the order of `config.listeners` (see `serve`).
    for (fd, listener_config) in listeners.into_iter().zip(&config.listeners) {
        // `fd` is a listening TCP socket that `listener::bind_all` made for this shard alone.
        let accepting = accept_loop(
            Acceptor::new(fd),
            Rc::new(listener_config.clone()),
            Rc::clone(&context),
            stop_accepting_rx.clone(),
        );
        glommio::spawn_local(accepting.in_current_span()).detach();
    }
    let _ = ready.send(Ok(()));
    debug!("shard serving");

    let deadline = loop {
        match link.commands.recv_async().await {
            Ok(link::ShardCommand::Shutdown { deadline }) => break deadline,
            Ok(link::ShardCommand::Admin {
                request: link::AdminRequest::Metrics,
                reply,
            }) => {
                let _ = reply.try_send(link::AdminReply::Metrics(Box::new(context.metrics(index))));
            }
            Ok(link::ShardCommand::Admin { request, reply }) => {
                let answer = context.queue.administer(request).await;
                // The admin client may have given up waiting; nothing is lost by dropping it.
                let _ = reply.try_send(answer);
            }
            // The control thread is gone: stop as if told to, with the configured grace.
            Err(_) => break Instant::now() + config.server.shutdown_timeout,
        }
    };

    drop(stop_accepting_tx);
    drain(&context, deadline, session_deadline_tx).await;
    context
        .counters
        .log(index, context.spool.batches_written(), context.queue.len());
}

/// Waits for sessions to finish until `deadline`; then closes the rest with `421 4.3.2`.
async fn drain(context: &ShardContext, deadline: Instant, session_deadline: flume::Sender<()>) {
    while context.sessions.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(DRAIN_POLL.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
    let remaining = context.sessions.get();
    if remaining == 0 {
        return;
    }

    info!(
        sessions = remaining,
        "grace period over: closing the remaining sessions with 421"
    );
    drop(session_deadline);
    let give_up = Instant::now() + connection::CLOSE_GRACE;
    while context.sessions.get() > 0 && Instant::now() < give_up {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    if context.sessions.get() > 0 {
        warn!(
            sessions = context.sessions.get(),
            "sessions did not close in time; cutting them off"
        );
    }
}

/// `<spool>/shard-<i>`: everything one shard ever writes.
pub fn shard_directory(spool: &Path, shard: usize) -> std::path::PathBuf {
    spool.join(format!("shard-{shard}"))
}

/// Recovers the shard's earlier generations, then starts a new one. Recovery reads with plain
/// blocking calls: it runs before this shard accepts anything, so nothing waits behind it.
async fn open_spool(
    directory: &Path,
    settings: SpoolSettings,
) -> io::Result<(ShardSpool, spool::Recovered)> {
    let started = Instant::now();
    let mut recovered = spool::recover(directory, &settings.keys)?;
    info!(
        messages = recovered.index.len(),
        segments = recovered.segments,
        bytes = recovered.bytes,
        torn_tails = recovered.torn_tails,
        quarantined = recovered.quarantined,
        elapsed = ?started.elapsed(),
        "spool recovered"
    );
    let ciphers = std::mem::take(&mut recovered.segment_ciphers);
    let spool = ShardSpool::start(directory, recovered.next_generation, settings, ciphers).await?;
    Ok((spool, recovered))
}

fn spool_failure(spool: &Path, error: &io::Error) -> Fatal {
    if let Some(missing) = spool::MissingSpoolKey::within(error) {
        return Fatal::new(
            ExitReason::SpoolKeyMissing,
            missing.to_string(),
            format!(
                "put the key file `{}.key` back into the `server.spool_keys` directory; it must \
                 stay there until no segment names it (see docs/spool.md, key rotation)",
                missing.key_id
            ),
        );
    }
    Fatal::new(
        ExitReason::SpoolNotWritable,
        format!("cannot open the spool {}: {error}", spool.display()),
        "check that `server.spool` exists and is writable by this user, and that its disk is not full",
    )
}

async fn accept_loop(
    listener: Acceptor,
    profile: Rc<ListenerConfig>,
    context: Rc<ShardContext>,
    stop: flume::Receiver<()>,
) {
    let address = listener.local_addr().ok();
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            let _ = stop.recv_async().await;
            None
        })
        .await;

        let (stream, peer) = match accepted {
            None => break,
            Some(Ok(accepted)) => accepted,
            Some(Err(error)) => {
                warn!(?address, %error, "accept failed; if it says 'too many open files', raise LimitNOFILE");
                glommio::timer::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };

        if context.sessions.get() >= context.sessions_max {
            // A TLS client would read a clear-text reply as a broken handshake; it just closes.
            if profile.tls != TlsMode::Implicit {
                connection::refuse_over_limit(
                    &stream,
                    &smtp::too_many_sessions_reply(&context.hostname),
                );
            }
            context
                .counters
                .sessions_refused
                .set(context.counters.sessions_refused.get() + 1);
            continue;
        }

        let session_id = context.next_session_id();
        let span = tracing::info_span!("session", id = session_id, %peer);
        context.sessions.set(context.sessions.get() + 1);
        context
            .counters
            .sessions_accepted
            .set(context.counters.sessions_accepted.get() + 1);
        let session_context = Rc::clone(&context);
        let session_profile = Rc::clone(&profile);
        let session = async move {
            connection::serve(
                stream,
                peer,
                Rc::clone(&session_context),
                session_id,
                session_profile,
            )
            .await;
            session_context
                .sessions
                .set(session_context.sessions.get() - 1);
        };
        glommio::spawn_local(session.instrument(span)).detach();
    }
    debug!(?address, "stopped accepting");
}

/// Everything a shard's sessions share. Lives on one thread; `Cell`s, not atomics.
pub(crate) struct ShardContext {
    pub hostname: Arc<str>,
    pub limits: Limits,
    pub local_domains: Arc<[String]>,
    allow_networks: Vec<ipnet::IpNet>,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub greeting_delay: Duration,
    pub sessions_max: usize,
    pub spool: ShardSpool,
    pub queue: Rc<queue::Queue>,
    /// The shard's way to the control thread, for inbound verification and AUTH.
    pub control: link::ControlClient,
    /// `[verification]`; `None` when it is switched off.
    pub verification: Option<verification::VerificationSettings>,
    pub signing_keys: Arc<SigningKeys>,
    /// Read buffers of ended sessions, reused by new ones (see `connection::ReadBuffer`).
    pub read_buffers: std::cell::RefCell<Vec<Vec<u8>>>,
    pub counters: Counters,
    pub sessions: Cell<usize>,
    session_ids: Cell<u64>,
    /// Disconnected (never sent on) when the shutdown deadline passes.
    session_deadline: flume::Receiver<()>,
    /// Certificates and the TLS profile, when `[tls]` is configured.
    pub tls: Option<Arc<crate::tls::InboundTls>>,
}

impl ShardContext {
    fn new(
        config: &Config,
        signing_keys: Arc<SigningKeys>,
        spool: ShardSpool,
        queue: Rc<queue::Queue>,
        control: link::ControlClient,
        session_deadline: flume::Receiver<()>,
        tls: Option<Arc<crate::tls::InboundTls>>,
    ) -> ShardContext {
        let smtp = &config.smtp;
        ShardContext {
            hostname: Arc::from(config.server.hostname.as_str()),
            limits: Limits {
                command_line_max_bytes: smtp.command_line_max_bytes,
                text_line_max_bytes: smtp.text_line_max_bytes,
                recipients_max: smtp.recipients_max,
                message_size_max_bytes: smtp.message_size_max_bytes,
                bad_commands_max: smtp.bad_commands_max,
                accept_bare_line_endings: smtp.bare_line_endings == BareLineEndings::Accept,
            },
            local_domains: config.relay.local_domains.iter().cloned().collect(),
            allow_networks: config.relay.allow_networks.clone(),
            command_timeout: smtp.command_timeout,
            data_timeout: smtp.data_timeout,
            greeting_delay: smtp.greeting_delay,
            sessions_max: config.server.sessions_per_shard_max,
            spool,
            queue,
            control,
            verification: verification::VerificationSettings::from_config(&config.verification),
            signing_keys,
            read_buffers: std::cell::RefCell::new(Vec::new()),
            counters: Counters::default(),
            sessions: Cell::new(0),
            session_ids: Cell::new(0),
            session_deadline,
            tls,
        }
    }

    /// Whether a client at `ip` may relay to any domain (`relay.allow_networks`).
    pub fn relay_allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow_networks
            .iter()
            .any(|network| network.contains(&ip))
    }

    /// Resolves when sessions must end: the shutdown grace is over.
    pub async fn wait_for_session_deadline(&self) {
        let _ = self.session_deadline.recv_async().await;
    }

    /// A new queue id (see `Queue::next_queue_id`).
    pub fn next_queue_id(&self) -> String {
        self.queue.next_queue_id()
    }

    /// Counters and gauges for `/metrics`.
    fn metrics(&self, shard: usize) -> link::ShardMetrics {
        let queue = self.queue.metrics();
        link::ShardMetrics {
            shard,
            sessions_accepted: self.counters.sessions_accepted.get(),
            sessions_refused_over_limit: self.counters.sessions_refused.get(),
            early_talkers: self.counters.early_talkers.get(),
            tls_handshakes: self.counters.tls_handshakes.get(),
            tls_handshake_failures: self.counters.tls_handshake_failures.get(),
            auth_successes: self.counters.auth_successes.get(),
            auth_failures: self.counters.auth_failures.get(),
            auth_temporary_failures: self.counters.auth_temporary_failures.get(),
            messages_signed: self.counters.messages_signed.get(),
            messages_verified: self.counters.messages_verified.get(),
            messages_refused_dmarc: self.counters.messages_refused_dmarc.get(),
            sessions_active: self.sessions.get() as u64,
            messages_accepted: self.counters.messages_accepted.get(),
            spool_batch_write: self.spool.batch_writes(),
            spool_commit_wait: self.spool.commit_waits(),
            ..queue
        }
    }

    fn next_session_id(&self) -> u64 {
        // Unique within the shard; the enclosing `shard` span makes it unique in the process.
        let id = self.session_ids.get() + 1;
        self.session_ids.set(id);
        id
    }
}

/// Per-shard counters, logged at shutdown (and exported as metrics once the admin API lands).
#[derive(Default)]
pub(crate) struct Counters {
    pub sessions_accepted: Cell<u64>,
    pub messages_accepted: Cell<u64>,
    pub sessions_refused: Cell<u64>,
    pub early_talkers: Cell<u64>,
    pub tls_handshakes: Cell<u64>,
    pub tls_handshake_failures: Cell<u64>,
    /// AUTH verdicts: `235`, `535`, and `454` (rate limited or not checked in time).
    pub auth_successes: Cell<u64>,
    pub auth_failures: Cell<u64>,
    pub auth_temporary_failures: Cell<u64>,
    /// Messages stored with at least one DKIM signature of ours.
    pub messages_signed: Cell<u64>,
    /// Messages of untrusted clients checked with SPF, DKIM and DMARC, and those of them
    /// refused with 550 5.7.1 under `dmarc_reject`.
    pub messages_verified: Cell<u64>,
    pub messages_refused_dmarc: Cell<u64>,
}

impl Counters {
    fn log(&self, shard: usize, spool_batches: u64, queued: usize) {
        info!(
            shard,
            spool_batches,
            queued,
            sessions_accepted = self.sessions_accepted.get(),
            sessions_refused_over_limit = self.sessions_refused.get(),
            early_talkers = self.early_talkers.get(),
            "shard stopped"
        );
    }
}
