//! `postern-loadgen sink`: the verifying SMTP server. This module owns the sink's threads (one
//! glommio executor per thread, each with its own SO_REUSEPORT listener, like the relay's
//! shards), its stop conditions (SIGINT/SIGTERM, `--messages`, `--duration`), the fault plan
//! (`--fail-4xx`, `--fail-5xx`, `--drop`, `--delay`), duplicate detection across threads, and the
//! report. It guarantees that an id is written to `--ids-out` only for a message answered with
//! `250`, so the log is exactly what a sender may treat as delivered.

mod session;

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::channels::local_channel;

use crate::idlog::{IdBatch, IdLog};
use crate::report::{write_json, SinkReport};
use crate::runtime::{bind_listeners, into_listener, spawn_executor, StopSignals, ThreadPlan};

/// How often a sink thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Pause after a failed accept (descriptor exhaustion, mostly), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Duplicate detection is split into this many locked sets, so threads rarely meet on a lock.
const SEEN_SHARDS: usize = 16;

/// Everything `sink` was asked to do, validated.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    pub listen: SocketAddr,
    pub threads: usize,
    pub cpus: Option<Vec<usize>>,
    pub ids_out: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub fail_4xx: f64,
    pub fail_5xx: f64,
    pub drop: f64,
    pub delay: Duration,
    pub seed: u64,
    /// Stop after accepting this many messages.
    pub messages: Option<u64>,
    pub duration: Option<Duration>,
    pub timeout: Duration,
    pub message_size_max_bytes: u64,
    pub tls_mode: crate::tls::TlsMode,
    /// Present unless `tls_mode` is `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Verify DKIM signatures against these keys (`--dkim-key`).
    pub dkim: Option<Arc<crate::dkim::DkimVerifier>>,
}

/// What the threads share.
struct Shared {
    stop: AtomicBool,
    accepted: AtomicU64,
    /// 64-bit hashes of the ids accepted so far. A false duplicate needs a hash collision,
    /// about one in 10^6 runs of 10^7 messages; `check` is the exact join.
    seen: Vec<Mutex<HashSet<u64>>>,
}

impl Shared {
    /// Notes `id`; true if it was accepted before.
    fn seen_before(&self, id: &str) -> bool {
        let hash = fnv1a(id.as_bytes());
        let shard = &self.seen[(hash % SEEN_SHARDS as u64) as usize];
        // A poisoned set only means another thread panicked while inserting; the set is still
        // a valid set of hashes.
        let mut set = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        !set.insert(hash)
    }
}

fn fnv1a(octets: &[u8]) -> u64 {
    octets.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &octet| {
        (hash ^ u64::from(octet)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a thread's sessions share.
pub(crate) struct ThreadState {
    options: Arc<SinkOptions>,
    shared: Arc<Shared>,
    report: SinkReport,
    ids: IdBatch,
    random: u64,
}

/// What to do at one end of data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Temporary,
    Permanent,
    Drop,
}

impl ThreadState {
    fn draw_fault(&mut self) -> Fault {
        let options = &self.options;
        if options.fail_4xx == 0.0 && options.fail_5xx == 0.0 && options.drop == 0.0 {
            return Fault::None;
        }
        // xorshift64*: fast, and reproducible from --seed.
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        let draw =
            (self.random.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        if draw < options.drop {
            Fault::Drop
        } else if draw < options.drop + options.fail_4xx {
            Fault::Temporary
        } else if draw < options.drop + options.fail_4xx + options.fail_5xx {
            Fault::Permanent
        } else {
            Fault::None
        }
    }
}

/// A bound sink, not yet serving: lets the caller print the address first.
pub struct BoundSink {
    options: SinkOptions,
    pub address: SocketAddr,
    sockets: Vec<std::os::fd::OwnedFd>,
    plan: ThreadPlan,
}

/// Binds the listening sockets.
pub fn bind(options: SinkOptions) -> anyhow::Result<BoundSink> {
    let plan = ThreadPlan::new(options.threads, options.cpus.as_deref())?;
    let (address, sockets) = bind_listeners(options.listen, plan.threads())?;
    Ok(BoundSink {
        options,
        address,
        sockets,
        plan,
    })
}

impl BoundSink {
    /// Serves until a stop condition, then reports.
    pub fn run(self) -> anyhow::Result<SinkReport> {
        let signals = StopSignals::block()?;
        let ids = self
            .options
            .ids_out
            .as_deref()
            .map(IdLog::create)
            .transpose()?;
        let options = Arc::new(self.options);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            seen: (0..SEEN_SHARDS)
                .map(|_| Mutex::new(HashSet::new()))
                .collect(),
        });
        let started = Instant::now();

        let mut handles = Vec::new();
        for (index, fd) in self.sockets.into_iter().enumerate() {
            let options = Arc::clone(&options);
            let shared = Arc::clone(&shared);
            let ids = ids.clone();
            let handle = spawn_executor(
                format!("loadgen-sink-{index}"),
                self.plan.cpus[index],
                move || thread_main(fd, options, shared, ids, index as u64),
            )?;
            handles.push(handle);
        }

        loop {
            if signals.wait(Duration::from_millis(100)) {
                break;
            }
            let done = options
                .messages
                .is_some_and(|limit| shared.accepted.load(Ordering::Relaxed) >= limit);
            let expired = options
                .duration
                .is_some_and(|duration| started.elapsed() >= duration);
            if done || expired {
                break;
            }
        }
        shared.stop.store(true, Ordering::Relaxed);

        let mut report = SinkReport::default();
        for handle in handles {
            let thread = handle
                .join()
                .map_err(|error| anyhow::anyhow!("a sink thread failed: {error}"))?;
            report.add(&thread);
        }
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        report.listen = self.address.to_string();
        report.threads = self.plan.threads();
        report.elapsed_seconds = seconds;
        report.messages_per_second = report.accepted as f64 / seconds;
        report.megabytes_per_second = report.bytes as f64 / seconds / 1e6;
        if let Some(path) = &options.json {
            write_json(path, &report)?;
        }
        Ok(report)
    }
}

async fn thread_main(
    fd: std::os::fd::OwnedFd,
    options: Arc<SinkOptions>,
    shared: Arc<Shared>,
    ids: Option<IdLog>,
    index: u64,
) -> SinkReport {
    let listener = into_listener(fd);
    let seed = options.seed ^ (index + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let state = Rc::new(RefCell::new(ThreadState {
        options,
        shared: Arc::clone(&shared),
        report: SinkReport::default(),
        ids: IdBatch::new(ids),
        random: seed | 1,
    }));

    // One watcher polls the flag and closes the channel; the accept loop waits on the channel,
    // so no timer is armed per accepted connection.
    let (stop_sender, stop_receiver) = local_channel::new_bounded::<()>(1);
    let watcher_shared = Arc::clone(&shared);
    glommio::spawn_local(async move {
        while !watcher_shared.stop.load(Ordering::Relaxed) {
            glommio::timer::sleep(STOP_POLL).await;
        }
        drop(stop_sender);
    })
    .detach();

    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            let _ = stop_receiver.recv().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                state.borrow_mut().report.sessions += 1;
                glommio::spawn_local(session::serve(stream, Rc::clone(&state))).detach();
            }
            Some(Err(_)) => glommio::timer::sleep(ACCEPT_ERROR_PAUSE).await,
        }
    }

    // Sessions still open are cut off when the executor ends; what they accepted is counted.
    let mut state = state.borrow_mut();
    state.ids.flush();
    state.report.ids_out_errors += u64::from(state.ids.error.is_some());
    state.report.clone()
}
