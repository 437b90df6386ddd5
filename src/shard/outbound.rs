//! The shard's outbound side: per destination, a queue of jobs and a few workers, each holding
//! one connection to the next hop and reusing it for message after message.
//!
//! A destination gets at most its route's `connections_max` workers on this shard. A worker
//! takes jobs until the queue is empty, waits `idle_timeout` for more with its connection open,
//! then says QUIT and ends; after `messages_per_connection_max` messages it opens a fresh
//! connection. A destination none of whose hosts answers is marked down for a while: jobs for
//! it are deferred at once instead of hammering it, and the retry schedule brings them back.
//!
//! Each connection follows its route's TLS policy: `none` stays in clear text; `opportunistic`
//! uses STARTTLS when offered, without verifying the certificate, and delivers in clear text on
//! a fresh connection when the handshake fails; `required` verifies the certificate for the
//! host name and otherwise moves on to the next host, never sending anything in clear text.
//!
//! Every wait is an io_uring operation or a timer with a bound; nothing here blocks the shard.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;
use tracing::{debug, warn};

use super::link::{ControlClient, MxAnswer};
use super::queue::{log_result, Queue};
use super::stream::{DeliveryStream, MaybeTls};
use crate::config::{Config, OutboundTls, RouteConfig, RouteTarget};
use crate::delivery::client::{
    Client, Message, RecipientResult, SessionError, Timeouts, Timer, Verdict,
};
use crate::delivery::loops::received_count;
use crate::delivery::route::Destination;
use crate::smtp::Envelope;
use crate::spool::BodyLocation;
use crate::tls::client::OutboundTlsConfigs;

/// The first pause after a destination could not be reached at all; it doubles with each
/// further failure, up to `DOWN_PAUSE_MAX`.
const DOWN_PAUSE_FIRST: Duration = Duration::from_secs(30);
const DOWN_PAUSE_MAX: Duration = Duration::from_secs(30 * 60);

/// One message's recipients for one destination.
pub(crate) struct Job {
    pub queue_id: String,
    pub destination: Destination,
    /// Indices into `envelope.rcpt_to`.
    pub recipients: Vec<u32>,
    pub envelope: Rc<Envelope>,
    /// Header fields stored apart from the body; they go out first.
    pub header_prefix: Rc<[u8]>,
    pub body: Rc<BodyLocation>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Time since the message was received, for the delivery log.
    pub delay: Duration,
}

impl Job {
    /// The same verdict for every recipient of the job.
    fn all(&self, verdict: Verdict, status: &str, detail: &str) -> Vec<RecipientResult> {
        self.recipients
            .iter()
            .map(|&index| RecipientResult {
                index,
                verdict,
                status: status.to_owned(),
                detail: detail.to_owned(),
            })
            .collect()
    }
}

/// glommio's timer, for the executor-free SMTP client.
struct ShardTimer;

impl Timer for ShardTimer {
    fn sleep(&self, duration: Duration) -> impl std::future::Future<Output = ()> {
        glommio::timer::sleep(duration)
    }
}

type Connection = Client<DeliveryStream, ShardTimer>;

/// The next hop a connection reached, for the delivery log and bounces.
pub(crate) struct Hop {
    /// The address as `ip:port`, or `-` when no connection was made.
    pub relay: String,
    /// `TLSv1.3`, `TLSv1.2`, or `none` in clear text.
    pub tls: &'static str,
}

impl Hop {
    fn unreached() -> Hop {
        Hop {
            relay: "-".to_owned(),
            tls: "none",
        }
    }
}

struct DestinationState {
    destination: Destination,
    jobs: RefCell<VecDeque<Job>>,
    workers: Cell<usize>,
    /// Workers waiting for a job, each with the sender that wakes it.
    idle: RefCell<Vec<(u64, LocalSender<()>)>>,
    /// Set while the destination is backed off after no host answered.
    down_until: Cell<Option<Instant>>,
    down_reason: RefCell<String>,
    /// Consecutive attempts in which no host could be reached.
    failures: Cell<u32>,
}

impl DestinationState {
    fn is_down(&self) -> bool {
        self.down_until
            .get()
            .is_some_and(|until| Instant::now() < until)
    }

    fn mark_down(&self, reason: &str) {
        let failures = self.failures.get().saturating_add(1);
        self.failures.set(failures);
        let pause = DOWN_PAUSE_FIRST
            .saturating_mul(1 << failures.saturating_sub(1).min(10))
            .min(DOWN_PAUSE_MAX);
        self.down_until.set(Some(Instant::now() + pause));
        *self.down_reason.borrow_mut() = reason.to_owned();
        warn!(
            destination = %self.destination,
            failures,
            pause_s = pause.as_secs(),
            reason,
            "destination unreachable; its mail is deferred until the pause ends"
        );
    }

    fn mark_up(&self) {
        self.failures.set(0);
        self.down_until.set(None);
    }
}

/// Why no session with a destination could be opened. `permanent` carries the enhanced status
/// when retrying cannot help (no such domain, null MX): the recipients fail instead of waiting.
struct Unreachable {
    permanent: Option<&'static str>,
    reason: String,
}

impl Unreachable {
    fn temporary(reason: String) -> Unreachable {
        Unreachable {
            permanent: None,
            reason,
        }
    }
}

/// How long one DNS question may take before the attempt is deferred.
const DNS_PATIENCE: Duration = Duration::from_secs(30);

pub(crate) struct Outbound {
    control: ControlClient,
    destinations: RefCell<HashMap<Destination, Rc<DestinationState>>>,
    routes: Rc<[RouteConfig]>,
    hostname: String,
    timeouts: Timeouts,
    connect_timeout: Duration,
    idle_timeout: Duration,
    received_max: usize,
    worker_ids: Cell<u64>,
    shard: usize,
    tls: Arc<OutboundTlsConfigs>,
}

impl Outbound {
    pub fn new(
        config: &Config,
        shard: usize,
        control: ControlClient,
        tls: Arc<OutboundTlsConfigs>,
    ) -> Outbound {
        let delivery = &config.delivery;
        Outbound {
            control,
            destinations: RefCell::new(HashMap::new()),
            routes: config.routes.iter().cloned().collect(),
            hostname: config.server.hostname.clone(),
            timeouts: Timeouts {
                command: delivery.command_timeout,
                data: delivery.data_timeout,
                data_done: delivery.data_done_timeout,
            },
            connect_timeout: delivery.connect_timeout,
            idle_timeout: delivery.idle_timeout,
            received_max: delivery.received_max,
            worker_ids: Cell::new(0),
            shard,
            tls,
        }
    }

    /// Queues a job for its destination and wakes or starts a worker for it.
    pub fn submit(&self, queue: &Rc<Queue>, job: Job) {
        let state = Rc::clone(
            self.destinations
                .borrow_mut()
                .entry(job.destination.clone())
                .or_insert_with(|| {
                    Rc::new(DestinationState {
                        destination: job.destination.clone(),
                        jobs: RefCell::new(VecDeque::new()),
                        workers: Cell::new(0),
                        idle: RefCell::new(Vec::new()),
                        down_until: Cell::new(None),
                        down_reason: RefCell::new(String::new()),
                        failures: Cell::new(0),
                    })
                }),
        );
        let route = &self.routes[job.destination.route()];
        state.jobs.borrow_mut().push_back(job);

        if let Some((_, waker)) = state.idle.borrow_mut().pop() {
            let _ = waker.try_send(());
            return;
        }
        if state.workers.get() < route.connections_max {
            state.workers.set(state.workers.get() + 1);
            let id = self.worker_ids.get() + 1;
            self.worker_ids.set(id);
            queue.spawn_background(worker(Rc::clone(queue), state, id));
        }
    }

    /// Destinations currently paused after no host answered.
    pub fn paused(&self) -> usize {
        self.destinations
            .borrow()
            .values()
            .filter(|state| state.is_down())
            .count()
    }

    /// Lifts every pause, so the next attempt connects again (`postern queue requeue`).
    pub fn forget_pauses(&self) {
        for state in self.destinations.borrow().values() {
            state.mark_up();
        }
    }

    /// Forgets a destination nobody works on, unless it is backed off (the pause must hold).
    fn forget_if_unused(&self, state: &DestinationState) {
        if state.workers.get() == 0 && state.jobs.borrow().is_empty() && !state.is_down() {
            self.destinations.borrow_mut().remove(&state.destination);
        }
    }

    /// Opens a session with the first host of the destination that answers on the route's
    /// TLS policy.
    async fn connect(&self, destination: &Destination) -> Result<(Connection, Hop), Unreachable> {
        let route = &self.routes[destination.route()];
        let tls = self.tls.for_route(destination.route(), route.tls);
        let mut last_error = String::from("no address to connect to");
        for (host, address) in self.addresses(route, destination).await? {
            if let Some(source) = route.source_address {
                if source.is_ipv4() != address.is_ipv4() {
                    last_error = format!("{address}: not reachable from source address {source}");
                    continue;
                }
            }
            match self.open(&host, address, route, tls.as_ref()).await {
                Ok(opened) => return Ok(opened),
                Err(reason) => {
                    debug!(shard = self.shard, %address, %reason, "no session with this host");
                    last_error = reason;
                }
            }
        }
        Err(Unreachable::temporary(last_error))
    }

    /// One host: connect, greet, and apply the TLS policy.
    async fn open(
        &self,
        host: &str,
        address: SocketAddr,
        route: &RouteConfig,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<(Connection, Hop), String> {
        let (policy, source) = (route.tls, route.source_address);
        let mut client = self.open_clear(address, source).await?;
        let relay = address.to_string();
        let Some(tls) = tls else {
            return Ok((client, Hop { relay, tls: "none" }));
        };
        if !client.extensions().starttls {
            if policy == OutboundTls::Required {
                client.quit().await;
                return Err(format!(
                    "{address} ({host}) does not offer STARTTLS and the route requires TLS; \
                     nothing was sent in clear text"
                ));
            }
            return Ok((client, Hop { relay, tls: "none" }));
        }

        match self.start_tls(&mut client, host, tls).await {
            Ok(version) => Ok((
                client,
                Hop {
                    relay,
                    tls: version,
                },
            )),
            Err(reason) if policy == OutboundTls::Opportunistic => {
                // RFC 7435: opportunistic TLS that fails falls back to clear text. The session
                // is unusable after a broken handshake, so the fallback is a new connection.
                debug!(
                    shard = self.shard,
                    %address,
                    %reason,
                    "STARTTLS failed; delivering in clear text"
                );
                let client = self.open_clear(address, source).await?;
                Ok((client, Hop { relay, tls: "none" }))
            }
            Err(reason) => Err(format!(
                "{address} ({host}): TLS failed ({reason}) and the route requires TLS; nothing \
                 was sent in clear text"
            )),
        }
    }

    /// Connects and greets, in clear text. With a source address, the control thread opens
    /// the connection (the shard's runtime cannot bind before connecting) and hands it over.
    async fn open_clear(
        &self,
        address: SocketAddr,
        source: Option<IpAddr>,
    ) -> Result<Connection, String> {
        let stream = match source {
            None => TcpStream::connect_timeout(address, self.connect_timeout)
                .await
                .map_err(|error| format!("connect to {address}: {error}"))?,
            Some(source) => {
                let socket = self
                    .control
                    .connect_from(source, address, self.connect_timeout)
                    .await?;
                // SAFETY: `socket` is a connected TCP socket the control thread opened for this
                // request and handed over; `into_raw_fd` gives up its ownership to the stream,
                // so the descriptor is closed exactly once.
                unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) }
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = MaybeTls::Plain(stream);
        Client::open(stream, ShardTimer, self.timeouts, &self.hostname)
            .await
            .map_err(|error| format!("{address}: {error}"))
    }

    /// STARTTLS, the handshake for `host`, and EHLO again; returns the TLS version.
    async fn start_tls(
        &self,
        client: &mut Connection,
        host: &str,
        config: &Arc<rustls::ClientConfig>,
    ) -> Result<&'static str, String> {
        client
            .request_tls()
            .await
            .map_err(|error| error.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(host.trim_end_matches('.').to_owned())
            .map_err(|error| {
            format!("{host} cannot be checked against a certificate: {error}")
        })?;
        let stream = client.stream_mut();
        let MaybeTls::Plain(tcp) = std::mem::replace(stream, MaybeTls::Detached) else {
            return Err("the connection is already encrypted".to_owned());
        };
        let connector = futures_rustls::TlsConnector::from(Arc::clone(config));
        let encrypted = glommio::timer::timeout(self.timeouts.command, async {
            connector
                .connect(name, tcp)
                .await
                .map_err(glommio::GlommioError::from)
        })
        .await
        .map_err(|error| match error {
            glommio::GlommioError::TimedOut(_) => "the TLS handshake timed out".to_owned(),
            error => format!("TLS handshake: {}", std::io::Error::from(error)),
        })?;
        let version = match encrypted.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        *stream = MaybeTls::Tls(Box::new(encrypted));
        client
            .hello_again()
            .await
            .map_err(|error| error.to_string())?;
        Ok(version)
    }

    /// The addresses to try, in order, each with the host name it belongs to (what a TLS
    /// certificate must be valid for): the smart hosts as listed, or the MX hosts by
    /// preference (RFC 5321 §5.1), each host's addresses IPv4 first.
    async fn addresses(
        &self,
        route: &RouteConfig,
        destination: &Destination,
    ) -> Result<Vec<(String, SocketAddr)>, Unreachable> {
        let mut hosts: Vec<(String, u16)> = Vec::new();
        match (&route.target, destination) {
            (RouteTarget::Smarthost(smarthosts), _) => {
                for smarthost in smarthosts {
                    if let Ok(address) = smarthost.parse::<SocketAddr>() {
                        hosts.push((address.ip().to_string(), address.port()));
                    } else if let Some((host, port)) = smarthost.rsplit_once(':') {
                        let port = port.parse().map_err(|_| {
                            Unreachable::temporary(format!("bad smart host {smarthost}"))
                        })?;
                        hosts.push((host.to_owned(), port));
                    }
                }
            }
            (RouteTarget::Mx, Destination::Mx { domain, .. }) => {
                hosts = self.mx_hosts(domain, route.mx_port).await?;
            }
            (RouteTarget::Mx, Destination::Smarthost { .. }) => {
                unreachable!("an MX route always names a domain destination")
            }
        }

        let mut addresses = Vec::new();
        let mut last_error = None;
        for (host, port) in hosts {
            match self.control.resolve_host(&host, DNS_PATIENCE).await {
                Ok(ips) => addresses.extend(
                    ips.into_iter()
                        .map(|ip| (host.clone(), SocketAddr::new(ip, port))),
                ),
                Err(failure) => last_error = Some(format!("{host}: {failure}")),
            }
        }
        if addresses.is_empty() {
            let reason = last_error.unwrap_or_else(|| format!("no host for {destination}"));
            return Err(Unreachable::temporary(reason));
        }
        Ok(addresses)
    }

    /// The hosts that take mail for `domain`: its MX hosts in preference order, the domain
    /// itself when it has no MX (implicit MX), or the address of a domain literal.
    async fn mx_hosts(&self, domain: &str, port: u16) -> Result<Vec<(String, u16)>, Unreachable> {
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            // RFC 5321 §5.1: an address literal is the host itself; no lookup.
            let ip = literal.strip_prefix("IPv6:").unwrap_or(literal);
            return Ok(vec![(ip.to_owned(), port)]);
        }
        match self.control.resolve_mx(domain, DNS_PATIENCE).await {
            Ok(MxAnswer::Hosts(hosts)) => Ok(hosts
                .into_iter()
                .map(|host| (host.exchange, port))
                .collect()),
            Ok(MxAnswer::Implicit) => Ok(vec![(domain.to_owned(), port)]),
            Ok(MxAnswer::NullMx) => Err(Unreachable {
                permanent: Some("5.1.10"),
                reason: format!("{domain} accepts no mail (null MX, RFC 7505)"),
            }),
            Err(failure) => Err(Unreachable {
                permanent: failure.is_permanent().then(|| failure.enhanced_status()),
                reason: format!("MX lookup for {domain}: {failure}"),
            }),
        }
    }
}

/// One connection's worth of work for a destination: takes jobs until there are none for
/// `idle_timeout`, reconnecting after `messages_per_connection_max` messages.
async fn worker(queue: Rc<Queue>, state: Rc<DestinationState>, id: u64) {
    let outbound = &queue.outbound;
    let route = &outbound.routes[state.destination.route()];
    let mut connection: Option<(Connection, Hop, usize)> = None;

    loop {
        let Some(job) = next_job(&state, id, outbound.idle_timeout).await else {
            break;
        };

        if state.is_down() {
            let reason = format!("destination backed off: {}", state.down_reason.borrow());
            finish_all(
                &queue,
                &job,
                &Hop::unreached(),
                Verdict::Deferred,
                "4.4.1",
                &reason,
            )
            .await;
            continue;
        }

        let content = match prepare(&queue, &job).await {
            Ok(content) => content,
            Err((verdict, status, detail)) => {
                finish_all(&queue, &job, &Hop::unreached(), verdict, status, &detail).await;
                continue;
            }
        };

        if connection.is_none() {
            match outbound.connect(&state.destination).await {
                Ok((client, hop)) => {
                    state.mark_up();
                    connection = Some((client, hop, 0));
                }
                Err(Unreachable {
                    permanent: Some(status),
                    reason,
                }) => {
                    let hop = Hop::unreached();
                    finish_all(&queue, &job, &hop, Verdict::Failed, status, &reason).await;
                    continue;
                }
                Err(Unreachable { reason, .. }) => {
                    state.mark_down(&reason);
                    let hop = Hop::unreached();
                    finish_all(&queue, &job, &hop, Verdict::Deferred, "4.4.1", &reason).await;
                    continue;
                }
            }
        }
        let Some((client, hop, sent)) = connection.as_mut() else {
            unreachable!("a connection was opened above");
        };

        let message = Message {
            envelope: &job.envelope,
            recipients: &job.recipients,
            content: &content,
        };

        let outcome = client.send(&message).await;
        let hop = Hop {
            relay: hop.relay.clone(),
            tls: hop.tls,
        };
        *sent += 1;
        let reuse = *sent < route.messages_per_connection_max;
        match outcome {
            Ok(results) => {
                finish(&queue, &job, &hop, results).await;
                if !reuse {
                    if let Some((client, _, _)) = connection.take() {
                        client.quit().await;
                    }
                }
            }
            Err(error) => {
                let detail = session_failure_detail(&error);
                connection = None;
                finish_all(&queue, &job, &hop, Verdict::Deferred, "4.4.2", &detail).await;
            }
        }
    }

    if let Some((client, _, _)) = connection.take() {
        client.quit().await;
    }
    state.workers.set(state.workers.get() - 1);
    outbound.forget_if_unused(&state);
}

/// The message as it goes out, or the verdict that keeps it from going: it cannot be read
/// back (deferred), or it has looped (failed).
async fn prepare(queue: &Queue, job: &Job) -> Result<Vec<u8>, (Verdict, &'static str, String)> {
    let mut content = job.header_prefix.to_vec();
    match job.body.as_ref() {
        BodyLocation::Inline(bytes) => content.extend_from_slice(bytes),
        // LIMITATION(L12): the whole message is read into memory for the attempt.
        BodyLocation::Extents(extents) => {
            let body = queue.spool.read_extents(extents).await.map_err(|error| {
                warn!(queue_id = %job.queue_id, %error, "cannot read a queued message back");
                let detail = format!("local error reading the queued message: {error}");
                (Verdict::Deferred, "4.3.0", detail)
            })?;
            content.extend_from_slice(&body);
        }
    }

    let hops = received_count(&content);
    let limit = queue.outbound.received_max;
    if hops > limit {
        let detail = format!("mail loop: {hops} Received headers, more than the limit of {limit}");
        return Err((Verdict::Failed, "5.4.6", detail));
    }
    Ok(content)
}

/// The next job, waiting up to `idle` for one; `None` when the worker should end.
async fn next_job(state: &DestinationState, id: u64, idle: Duration) -> Option<Job> {
    if let Some(job) = state.jobs.borrow_mut().pop_front() {
        return Some(job);
    }
    let (waker, woken) = local_channel::new_bounded(1);
    state.idle.borrow_mut().push((id, waker));
    let _ = futures_lite::future::or(
        async {
            woken.recv().await;
        },
        glommio::timer::sleep(idle),
    )
    .await;
    state.idle.borrow_mut().retain(|(worker, _)| *worker != id);
    state.jobs.borrow_mut().pop_front()
}

/// The same verdict for every recipient of the job.
async fn finish_all(
    queue: &Queue,
    job: &Job,
    hop: &Hop,
    verdict: Verdict,
    status: &str,
    detail: &str,
) {
    finish(queue, job, hop, job.all(verdict, status, detail)).await;
}

async fn finish(queue: &Queue, job: &Job, hop: &Hop, results: Vec<RecipientResult>) {
    for result in &results {
        log_result(job, hop, result);
    }
    queue.finish_job(&job.queue_id, &hop.relay, results).await;
}

fn session_failure_detail(error: &SessionError) -> String {
    match error {
        SessionError::Refused { reply, .. } => format!("{error} (reply: {reply})"),
        _ => error.to_string(),
    }
}
