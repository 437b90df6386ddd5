//! `postern-loadgen send`: the load generator. This module owns the run: how message numbers
//! are handed out (one shared counter, so ids are unique across threads), when each message is
//! due (closed loop: as soon as a session is free; open loop: at `start + n / rate`, and latency
//! is measured from that intended start, which corrects for coordinated omission), the bounds
//! (every run stops at its message count or its duration, whichever comes first, or at SIGINT),
//! and the aggregation of the per-thread figures into one report. It guarantees that every
//! message number handed out ends in exactly one outcome: accepted, temporarily refused,
//! refused or connection error.

mod session;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::idlog::{IdBatch, IdLog};
use crate::message::{BodySet, SizeChoice};
use crate::report::{write_json, ConnectionErrors, Latency, SendReport};
use crate::runtime::{spawn_executor, StopSignals, ThreadPlan};
pub use session::ClientTls;
use session::{Connection, Envelope, Outcome, SessionError};

/// How often the live progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Everything `send` was asked to do, validated.
#[derive(Clone, Debug)]
pub struct SendOptions {
    pub targets: Vec<SocketAddr>,
    pub messages: u64,
    pub duration: Duration,
    pub concurrency: usize,
    pub size: SizeChoice,
    pub rate: Option<f64>,
    pub recipients: Vec<String>,
    pub from: String,
    pub helo: String,
    /// Messages per connection; 0 means no limit.
    pub per_connection: u64,
    pub pipelining: bool,
    pub timeout: Duration,
    pub ids_out: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub threads: usize,
    pub cpus: Option<Vec<usize>>,
    pub quiet: bool,
}

/// What `run` needs beyond the plain options: TLS state does not implement `Debug`/`Clone`.
pub struct SendTls(pub Arc<ClientTls>);

/// What the threads share: the message counter, the clock origin, the stop flag and the live
/// counters for the progress line.
struct Shared {
    options: SendOptions,
    tls: Arc<ClientTls>,
    run: String,
    next: AtomicU64,
    started: Instant,
    deadline: Instant,
    stop: AtomicBool,
    completed: AtomicU64,
    failed: AtomicU64,
    threads_done: AtomicUsize,
}

impl Shared {
    /// The next message number and its intended start, or `None` when the run is over.
    fn claim(&self) -> Option<(u64, Instant)> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n >= self.options.messages {
            return None;
        }
        let due = match self.options.rate {
            Some(rate) => self.started + Duration::from_secs_f64(n as f64 / rate),
            None => Instant::now(),
        };
        (due < self.deadline).then_some((n, due))
    }
}

/// One thread's figures.
#[derive(Default)]
struct ThreadFigures {
    attempted: u64,
    accepted: u64,
    temporarily_refused: u64,
    refused: u64,
    errors: ConnectionErrors,
    recipients_refused: u64,
    connections: u64,
    bytes_accepted: u64,
    connect: Latency,
    data_reply: Latency,
    transaction: Latency,
    ids_out_errors: u64,
    first_error: Option<String>,
    /// When the thread's last session ended, from the start of the run.
    finished: Duration,
}

/// Runs `send` and prints (and optionally writes) the report.
pub fn run(options: SendOptions, tls: SendTls) -> anyhow::Result<SendReport> {
    let plan = ThreadPlan::new(options.threads, options.cpus.as_deref())?;
    let threads = plan.threads().min(options.concurrency.max(1));
    let signals = StopSignals::block()?;
    let ids = options.ids_out.as_deref().map(IdLog::create).transpose()?;

    let started = Instant::now();
    let shared = Arc::new(Shared {
        run: crate::message::new_run_id(),
        next: AtomicU64::new(0),
        started,
        deadline: started + options.duration,
        stop: AtomicBool::new(false),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        threads_done: AtomicUsize::new(0),
        options,
        tls: tls.0,
    });

    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let shared = Arc::clone(&shared);
        let ids = ids.clone();
        let sessions = sessions_of_thread(shared.options.concurrency, threads, index);
        let handle = spawn_executor(
            format!("loadgen-send-{index}"),
            plan.cpus[index],
            move || thread_main(shared, index, sessions, ids),
        )?;
        handles.push(handle);
    }

    watch(&shared, &signals, threads);

    let mut figures = ThreadFigures::default();
    for handle in handles {
        let thread = handle
            .join()
            .map_err(|error| anyhow::anyhow!("a sender thread failed: {error}"))?;
        figures.merge(&thread);
    }
    // The run lasted until its last session ended, not until `watch` next woke up to notice:
    // that can be up to its polling interval later, which would understate short runs' rates.
    let report = shared.report(&figures, threads, figures.finished);
    if let Some(path) = &shared.options.json {
        write_json(path, &report)?;
    }
    Ok(report)
}

/// Waits for the threads, drawing the progress line on a terminal and passing on SIGINT.
fn watch(shared: &Shared, signals: &StopSignals, threads: usize) {
    let live = std::io::stderr().is_terminal() && !shared.options.quiet;
    let mut last = (Instant::now(), 0u64);
    let mut next_draw = Instant::now() + PROGRESS_INTERVAL;
    while shared.threads_done.load(Ordering::Acquire) < threads {
        if signals.wait(Duration::from_millis(100)) {
            shared.stop.store(true, Ordering::Relaxed);
        }
        if live && Instant::now() >= next_draw {
            let completed = shared.completed.load(Ordering::Relaxed);
            let failed = shared.failed.load(Ordering::Relaxed);
            let now = Instant::now();
            let rate = (completed - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            last = (now, completed);
            next_draw = now + PROGRESS_INTERVAL;
            eprint!(
                "\r  sent {completed}  {rate:.0}/s  not accepted {failed}  elapsed {:.0}s   ",
                shared.started.elapsed().as_secs_f64()
            );
        }
    }
    if live {
        eprintln!();
    }
}

/// Spreads `concurrency` sessions over `threads` as evenly as possible.
fn sessions_of_thread(concurrency: usize, threads: usize, index: usize) -> usize {
    concurrency / threads + usize::from(index < concurrency % threads)
}

async fn thread_main(
    shared: Arc<Shared>,
    index: usize,
    sessions: usize,
    ids: Option<IdLog>,
) -> ThreadFigures {
    let bodies = std::rc::Rc::new(BodySet::new(&shared.options.size));
    let figures = std::rc::Rc::new(std::cell::RefCell::new(ThreadFigures::default()));
    let ids = std::rc::Rc::new(std::cell::RefCell::new(IdBatch::new(ids)));

    let mut tasks = Vec::with_capacity(sessions);
    for slot in 0..sessions {
        let session = run_session(
            Arc::clone(&shared),
            std::rc::Rc::clone(&bodies),
            std::rc::Rc::clone(&figures),
            std::rc::Rc::clone(&ids),
            index * 1_000_003 + slot,
        );
        tasks.push(glommio::spawn_local(session));
    }
    for task in tasks {
        task.await;
    }
    let finished = shared.started.elapsed();

    let mut ids = ids.borrow_mut();
    ids.flush();
    let mut figures = figures.take();
    figures.finished = finished;
    figures.ids_out_errors += u64::from(ids.error.is_some());
    shared.threads_done.fetch_add(1, Ordering::Release);
    figures
}

/// One session slot: claims messages until the run is over, connecting as needed.
async fn run_session(
    shared: Arc<Shared>,
    bodies: std::rc::Rc<BodySet>,
    figures: std::rc::Rc<std::cell::RefCell<ThreadFigures>>,
    ids: std::rc::Rc<std::cell::RefCell<IdBatch>>,
    slot: usize,
) {
    let options = &shared.options;
    let envelope = Envelope {
        run: &shared.run,
        from: &options.from,
        recipients: &options.recipients,
        helo: &options.helo,
    };
    let mut connection: Option<Connection> = None;
    let mut on_connection = 0u64;
    let mut connections_made = 0usize;
    let mut id = String::with_capacity(32);

    while let Some((n, due)) = shared.claim() {
        if options.rate.is_some() {
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                glommio::timer::sleep(wait).await;
            }
        }
        let began = if options.rate.is_some() {
            due
        } else {
            Instant::now()
        };
        figures.borrow_mut().attempted += 1;

        if connection.is_none() {
            let target = options.targets[(slot + connections_made) % options.targets.len()];
            connections_made += 1;
            let connecting = Instant::now();
            let opening = Connection::open(
                target,
                options.timeout,
                &envelope,
                options.pipelining,
                &shared.tls,
            );
            match opening.await {
                Ok(opened) => {
                    let mut figures = figures.borrow_mut();
                    figures.connections += 1;
                    figures.connect.record(connecting.elapsed());
                    connection = Some(opened);
                    on_connection = 0;
                }
                Err(error) => {
                    shared.record_error(&mut figures.borrow_mut(), &error);
                    continue;
                }
            }
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };

        on_connection += 1;
        let last = options.per_connection != 0 && on_connection >= options.per_connection;
        let body = bodies.pick(n);
        match open.transaction(&envelope, n, body, last).await {
            Ok(transaction) => {
                let mut figures = figures.borrow_mut();
                figures.recipients_refused += transaction.recipients_refused;
                if let Some(data_reply) = transaction.data_reply {
                    figures.data_reply.record(data_reply);
                }
                match transaction.outcome {
                    Outcome::Accepted => {
                        figures.accepted += 1;
                        figures.bytes_accepted += transaction.message_bytes as u64;
                        figures.transaction.record(began.elapsed());
                        id.clear();
                        id.push_str(&shared.run);
                        id.push('-');
                        id.push_str(itoa_u64(n, &mut [0u8; 20]));
                        ids.borrow_mut().record(&id, false);
                    }
                    Outcome::TemporarilyRefused => {
                        figures.temporarily_refused += 1;
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Refused => {
                        figures.refused += 1;
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                shared.completed.fetch_add(1, Ordering::Relaxed);
                if last {
                    connection = None;
                }
            }
            Err(error) => {
                shared.record_error(&mut figures.borrow_mut(), &error);
                connection = None;
            }
        }
    }

    if let Some(open) = connection {
        open.quit().await;
    }
}

/// Formats `n` in decimal into `buffer` without allocating.
fn itoa_u64(mut n: u64, buffer: &mut [u8; 20]) -> &str {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buffer[at..]).unwrap_or("0")
}

impl Shared {
    fn record_error(&self, figures: &mut ThreadFigures, error: &SessionError) {
        if figures.first_error.is_none() {
            figures.first_error = Some(error.to_string());
        }
        match error {
            SessionError::Connect(_) => figures.errors.connect += 1,
            SessionError::Timeout => figures.errors.timeout += 1,
            SessionError::Closed => figures.errors.closed += 1,
            SessionError::Protocol(_) => figures.errors.protocol += 1,
            SessionError::Io(_) => figures.errors.io += 1,
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, figures: &ThreadFigures, threads: usize, elapsed: Duration) -> SendReport {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        SendReport {
            run: self.run.clone(),
            mode: if self.options.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            rate_target_per_second: self.options.rate,
            threads,
            concurrency: self.options.concurrency,
            attempted: figures.attempted,
            accepted: figures.accepted,
            temporarily_refused: figures.temporarily_refused,
            refused: figures.refused,
            connection_errors: figures.errors.total(),
            connection_error_kinds: figures.errors,
            recipients_refused: figures.recipients_refused,
            connections: figures.connections,
            elapsed_seconds: seconds,
            messages_per_second: figures.accepted as f64 / seconds,
            megabytes_per_second: figures.bytes_accepted as f64 / seconds / 1e6,
            latency_connect: figures.connect.summary(),
            latency_data_reply: figures.data_reply.summary(),
            latency_transaction: figures.transaction.summary(),
            ids_out_errors: figures.ids_out_errors,
            first_error: figures.first_error.clone(),
        }
    }
}

impl ThreadFigures {
    fn merge(&mut self, other: &ThreadFigures) {
        self.attempted += other.attempted;
        self.accepted += other.accepted;
        self.temporarily_refused += other.temporarily_refused;
        self.refused += other.refused;
        self.errors.add(&other.errors);
        self.recipients_refused += other.recipients_refused;
        self.connections += other.connections;
        self.bytes_accepted += other.bytes_accepted;
        self.connect.merge(&other.connect);
        self.data_reply.merge(&other.data_reply);
        self.transaction.merge(&other.transaction);
        self.ids_out_errors += other.ids_out_errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.finished = self.finished.max(other.finished);
    }
}
