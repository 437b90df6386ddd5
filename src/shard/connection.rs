//! The thin I/O loop that drives one SMTP session on a shard.
//!
//! All protocol decisions live in `smtp::Session`; this loop only moves bytes: it reads with the
//! timeout of the session's current phase (RFC 5321 §4.5.3.2), feeds the session, streams body
//! bytes into the store, waits for durability before the session may say `250`, and writes the
//! replies once the input is drained, which is what makes pipelining cheap. It also runs the TLS
//! handshakes, at accept on implicit-TLS listeners and when the session asks after STARTTLS.
//! AUTH credentials go to the control thread for verification and the session waits for the
//! verdict. Mail from untrusted clients also passes through `verification` on its way to the
//! store. It never blocks the shard: every wait is an io_uring operation, a timer or a bounded
//! wait for the control thread.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use nix::sys::socket::MsgFlags;
use tracing::{debug, info, warn};

use super::message::SpoolMessage;
use super::spool::SpoolFailure;
use super::stream::{tls_details, SessionStream, TlsDetails};
use super::verification::MessageVerification;
use super::ShardContext;
use crate::config::{AuthMode, ListenerConfig, TlsMode};
use crate::dkim::MessageSigner;
use crate::sasl::Verdict;
use crate::smtp::{Event, Session, SessionParams, StoreOutcome};
use crate::time::{rfc5322_date, unix_ms};

/// Longest a session waits for the control thread to verify AUTH credentials. A verification
/// takes tens of milliseconds; a backlog longer than this is answered `454 4.7.0`.
const AUTH_PATIENCE: Duration = Duration::from_secs(15);

/// Bytes read from the socket at a time. Pipelined commands and body chunks both fit; a
/// larger buffer saves few syscalls and costs memory on every idle session.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The read buffer most sessions would otherwise allocate and zero afresh: sessions take one
/// from the shard's free list and give it back when they end. The list is bounded, so a burst
/// of sessions never leaves more buffers behind than `READ_BUFFERS_KEPT`.
struct ReadBuffer {
    bytes: Vec<u8>,
    context: Rc<ShardContext>,
}

/// Free read buffers a shard keeps for the next sessions (64 KiB each).
const READ_BUFFERS_KEPT: usize = 64;

impl ReadBuffer {
    fn take(context: &Rc<ShardContext>) -> ReadBuffer {
        let bytes = context
            .read_buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; READ_BUFFER_BYTES]);
        ReadBuffer {
            bytes,
            context: Rc::clone(context),
        }
    }
}

impl std::ops::Deref for ReadBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::ops::DerefMut for ReadBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        let mut free = self.context.read_buffers.borrow_mut();
        if free.len() < READ_BUFFERS_KEPT {
            free.push(std::mem::take(&mut self.bytes));
        }
    }
}

/// How the session ended, for the shard's counters and the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Closed,
    ClientGone,
    TimedOut,
    ShutDown,
    IoError,
}

/// What the driver does after feeding one read through the session.
enum Flow {
    Continue,
    Close,
    /// The session said `220` to STARTTLS: hand the socket to a TLS handshake.
    StartTls,
}

/// What one wait for input produced.
enum Input {
    Bytes(usize),
    Eof,
    TimedOut,
    ShutDown,
    Failed(io::Error),
}

/// Runs one session to its end. Errors are logged here; the caller only counts.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    context: Rc<ShardContext>,
    session_id: u64,
    listener: Rc<ListenerConfig>,
) {
    let Ok(local) = stream.local_addr() else {
        return; // The client left between accept and here.
    };

    let signer = (!context.signing_keys.is_empty())
        .then(|| MessageSigner::new(Arc::clone(&context.signing_keys)));
    let mut driver = Driver {
        session: Session::new(session_params(&context, &listener, peer, local)),
        signer,
        context,
        listener,
        peer,
        input_is_secret: false,
        message: None,
        verification: None,
        queue_id: String::new(),
        messages_accepted: 0,
        tls: None,
    };
    let mut stream = SessionStream::Plain(stream);
    let ending = driver.run(&mut stream).await;
    if matches!(ending, Ending::Closed | Ending::TimedOut | Ending::ShutDown) {
        driver.close(&mut stream).await;
    }

    if let Some(message) = driver.message.take() {
        drop(message); // Never committed: its BODY records, if any, are garbage to recovery.
    }
    debug!(
        session = session_id,
        ?ending,
        messages = driver.messages_accepted,
        "session closed"
    );
}

fn session_params(
    context: &ShardContext,
    listener: &ListenerConfig,
    peer: SocketAddr,
    local: SocketAddr,
) -> SessionParams {
    let tls_configured = context.tls.is_some();
    SessionParams {
        hostname: Arc::clone(&context.hostname),
        peer,
        local,
        limits: context.limits.clone(),
        relay_allowed: context.relay_allowed(peer.ip()),
        local_domains: context.local_domains.clone(),
        starttls_available: tls_configured && listener.tls == TlsMode::StartTls,
        tls_active: false,
        auth_available: listener.auth != AuthMode::None,
        auth_required: listener.auth == AuthMode::Required,
    }
}

struct Driver {
    session: Session,
    /// Present when DKIM keys are configured; it signs only messages the session may sign.
    signer: Option<MessageSigner>,
    context: Rc<ShardContext>,
    listener: Rc<ListenerConfig>,
    peer: SocketAddr,
    /// The last read completed an AUTH exchange, so it may hold a password.
    input_is_secret: bool,
    message: Option<SpoolMessage>,
    /// The checks of the current message, for an untrusted client with verification on.
    verification: Option<MessageVerification>,
    queue_id: String,
    messages_accepted: u64,
    /// Set once the session is encrypted.
    tls: Option<TlsDetails>,
}

impl Driver {
    async fn run(&mut self, stream: &mut SessionStream) -> Ending {
        if self.listener.tls == TlsMode::Implicit {
            // RFC 8314 §3.3: the client speaks first, with its ClientHello, so there is no
            // early talker to catch; the greeting follows the handshake.
            if let Err(ending) = self.handshake(stream).await {
                return ending;
            }
        } else if self.client_talked_first(stream).await {
            self.session.refuse_early_talker();
            self.context
                .counters
                .early_talkers
                .set(self.context.counters.early_talkers.get() + 1);
            let _ = self.flush(stream).await;
            return Ending::Closed;
        }
        self.session.greet();
        if self.flush(stream).await.is_err() {
            return Ending::IoError;
        }

        let mut input = ReadBuffer::take(&self.context);
        let mut body = Vec::new();
        loop {
            let length = match self.read(stream, &mut input).await {
                Input::Bytes(length) => length,
                Input::Eof => return Ending::ClientGone,
                Input::Failed(error) => {
                    debug!(%error, "read failed");
                    return Ending::IoError;
                }
                Input::TimedOut => {
                    self.session.timed_out();
                    let _ = self.flush(stream).await;
                    return Ending::TimedOut;
                }
                Input::ShutDown => {
                    self.session.shutting_down();
                    let _ = self.flush(stream).await;
                    return Ending::ShutDown;
                }
            };

            let processed = self.process(&input[..length], &mut body).await;
            if std::mem::take(&mut self.input_is_secret) {
                zeroize::Zeroize::zeroize(&mut input[..length]);
            }
            match processed {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => {
                    let _ = self.flush(stream).await;
                    return Ending::Closed;
                }
                Ok(Flow::StartTls) => {
                    // The 220 goes out in clear; whatever the client pipelined after STARTTLS
                    // was left unread in `input` and is dropped with it (RFC 3207 §4.2), so no
                    // plaintext command can be smuggled into the encrypted session.
                    if self.flush(stream).await.is_err() {
                        return Ending::IoError;
                    }
                    if let Err(ending) = self.handshake(stream).await {
                        return ending;
                    }
                    continue;
                }
                Err(error) => {
                    debug!(%error, "session input failed");
                    let _ = self.flush(stream).await;
                    return Ending::IoError;
                }
            }
            if self.flush(stream).await.is_err() {
                return Ending::IoError;
            }
        }
    }

    /// Feeds one read's worth of input through the session, acting on each event in order.
    async fn process(&mut self, input: &[u8], body: &mut Vec<u8>) -> io::Result<Flow> {
        self.session
            .set_storage_full(self.context.queue.storage_full());
        let mut position = 0;
        loop {
            let (consumed, event) = self.session.feed(&input[position..], body);
            position += consumed;
            if !body.is_empty() {
                if let Some(verification) = self.verification.as_mut() {
                    verification.filter(body);
                }
                self.append_body(body).await;
            }

            match event {
                Event::NeedInput => return Ok(Flow::Continue),
                Event::Close => return Ok(Flow::Close),
                Event::MessageBegin => self.begin_message(),
                Event::MessageComplete => self.commit_message().await,
                Event::MessageAborted => {
                    self.message = None;
                    self.verification = None;
                    if let Some(signer) = self.signer.as_mut() {
                        signer.abandon();
                    }
                }
                Event::Authenticate => self.authenticate().await,
                Event::StartTls => return Ok(Flow::StartTls),
            }
        }
    }

    /// Has the credentials of the completed exchange checked on the control thread. Failures
    /// are logged there, with the client and user name, where the failure count lives.
    async fn authenticate(&mut self) {
        self.input_is_secret = true;
        let Some(credentials) = self.session.take_credentials() else {
            debug_assert!(false, "Authenticate without credentials");
            self.session.authentication_result(Verdict::Unavailable);
            return;
        };
        let username = credentials.username.clone();
        let verdict = self
            .context
            .control
            .authenticate(self.peer.ip(), credentials, AUTH_PATIENCE)
            .await;
        let counters = &self.context.counters;
        let counter = match verdict {
            Verdict::Accepted => {
                info!(auth_user = ?username, "authenticated");
                &counters.auth_successes
            }
            Verdict::Rejected => &counters.auth_failures,
            Verdict::RateLimited => &counters.auth_temporary_failures,
            Verdict::Unavailable => {
                warn!(auth_user = ?username, "AUTH could not be verified in time: answered 454");
                &counters.auth_temporary_failures
            }
        };
        counter.set(counter.get() + 1);
        self.session.authentication_result(verdict);
    }

    fn begin_message(&mut self) {
        self.queue_id = self.context.next_queue_id();
        let date = rfc5322_date(SystemTime::now());
        let received = self.session.received_header(&self.queue_id, &date);
        let message = SpoolMessage::begin(&self.context.spool, self.queue_id.clone(), &received);
        self.message = Some(message);

        self.verification = match &self.context.verification {
            Some(settings) if !self.session.is_trusted() => Some(MessageVerification::begin(
                &self.context.control,
                settings,
                self.session.envelope(),
                self.session.peer().ip(),
            )),
            _ => None,
        };

        if let Some(signer) = self.signer.as_mut() {
            if self.session.may_sign() {
                signer.begin();
            } else {
                signer.abandon();
            }
        }
    }

    async fn append_body(&mut self, body: &mut Vec<u8>) {
        match self.message.as_mut() {
            Some(message) => {
                // The signer sees the client's bytes only: our Received header went into the
                // message at `begin` and is not signed.
                if let Some(signer) = self.signer.as_mut() {
                    signer.update(body);
                }
                message.append(body).await
            }
            None => {
                // Body bytes outside a message would be a session bug; they belong to no
                // envelope that could ever be acknowledged.
                debug_assert!(false, "body bytes arrived outside a message");
                body.clear();
            }
        }
    }

    async fn commit_message(&mut self) {
        if let Some(refusal) = self.verify_message().await {
            self.message = None; // Never committed: its BODY records are garbage to recovery.
            self.session.message_stored(refusal);
            return;
        }

        let outcome = match self.message.take() {
            None => StoreOutcome::TemporaryFailure,
            Some(message) => {
                let (message, signed) = self.signed(message);
                match message.commit(self.session.envelope()).await {
                    Ok((record, location)) => {
                        let counters = &self.context.counters;
                        if signed {
                            counters
                                .messages_signed
                                .set(counters.messages_signed.get() + 1);
                        }
                        self.context.queue.accept(location, record);
                        StoreOutcome::Stored {
                            queue_id: self.queue_id.clone(),
                        }
                    }
                    Err(failure) => store_failure(&self.queue_id, &failure),
                }
            }
        };
        if let StoreOutcome::Stored { queue_id } = &outcome {
            self.messages_accepted += 1;
            let counters = &self.context.counters;
            counters
                .messages_accepted
                .set(counters.messages_accepted.get() + 1);
            let envelope = self.session.envelope();
            info!(
                queue_id = %queue_id,
                from = %envelope.mail_from,
                recipients = envelope.rcpt_to.len(),
                auth_user = self.session.authenticated_user(),
                "message accepted"
            );
        }
        self.session.message_stored(outcome);
    }

    /// Adds the DKIM signatures, if this message gets any, in front of the stored content.
    // LIMITATION(L16): signing runs here, on the shard; an RSA signature holds it up to ~1 ms.
    /// Returns whether it was signed, for the counter once it is stored.
    fn signed(&mut self, mut message: SpoolMessage) -> (SpoolMessage, bool) {
        let mut signed = false;
        if let Some(signer) = self.signer.as_mut() {
            let signatures = signer.finish(unix_ms(SystemTime::now()) / 1000);
            if !signatures.is_empty() {
                message.prepend_header(signatures);
                signed = true;
            }
        }
        (message, signed)
    }

    /// Runs the TLS handshake on the session's socket, bounded by the command timeout and the
    /// shutdown deadline. On success the stream is encrypted and the session told so; on
    /// failure the session is over (nothing useful can be said in clear after a STARTTLS).
    async fn handshake(&mut self, stream: &mut SessionStream) -> Result<(), Ending> {
        let Some(tls) = self.context.tls.as_ref() else {
            warn!("a TLS handshake was due but no [tls] is loaded; closing");
            return Err(Ending::IoError);
        };
        let SessionStream::Plain(tcp) = std::mem::replace(stream, SessionStream::Detached) else {
            debug_assert!(false, "a handshake on a stream that is not plain TCP");
            return Err(Ending::IoError);
        };
        let acceptor =
            futures_rustls::TlsAcceptor::from(tls.server_config(self.listener.client_certificates));

        let counters = &self.context.counters;
        let handshake = async {
            glommio::timer::timeout(self.context.command_timeout, async {
                acceptor
                    .accept(tcp)
                    .await
                    .map_err(glommio::GlommioError::from)
            })
            .await
            .map_err(|error| match error {
                glommio::GlommioError::TimedOut(_) => Ending::TimedOut,
                error => {
                    debug!(error = %io::Error::from(error), "TLS handshake failed");
                    Ending::IoError
                }
            })
        };
        let shutdown = async {
            self.context.wait_for_session_deadline().await;
            Err(Ending::ShutDown)
        };
        let encrypted = match future::or(handshake, shutdown).await {
            Ok(encrypted) => encrypted,
            Err(ending) => {
                counters
                    .tls_handshake_failures
                    .set(counters.tls_handshake_failures.get() + 1);
                return Err(ending);
            }
        };
        counters
            .tls_handshakes
            .set(counters.tls_handshakes.get() + 1);

        let details = tls_details(&encrypted);
        debug!(
            version = details.version,
            cipher = %details.cipher,
            sni = details.server_name.as_deref().unwrap_or(""),
            resumed = details.resumed,
            client_certificate = details.client_certificate.as_deref().unwrap_or(""),
            "TLS established"
        );
        *stream = SessionStream::Tls(Box::new(encrypted));
        match self.listener.tls {
            TlsMode::Implicit => self.session.tls_from_start(),
            _ => self.session.tls_established(),
        }
        self.session
            .tls_cipher(details.version, details.cipher.clone());
        if self.listener.client_certificates {
            if let Some(fingerprint) = &details.client_certificate {
                info!(
                    client_certificate = %fingerprint,
                    "client certificate verified: this session may relay"
                );
                self.session.trust_client_certificate();
            }
        }
        self.tls = Some(details);
        Ok(())
    }

    /// Ends the session's stream: TLS sends its close_notify, and unread input is drained so
    /// the kernel closes normally (see `discard_unread_input`).
    async fn close(&mut self, stream: &mut SessionStream) {
        if stream.is_tls() {
            let _ = glommio::timer::timeout(TLS_CLOSE_PATIENCE, async {
                stream.close().await.map_err(glommio::GlommioError::from)
            })
            .await;
        }
        if let Some(fd) = stream.raw_fd() {
            discard_unread_input(fd);
        }
    }

    /// Completes the checks of an untrusted client's message and writes their verdict into it.
    /// Returns the refusal when the verdict keeps the message out of the store; trusted
    /// clients and verification switched off pass straight through.
    async fn verify_message(&mut self) -> Option<StoreOutcome> {
        let mut verification = self.verification.take()?;
        let settings = self.context.verification.as_ref()?;
        let message = self.message.as_mut()?;
        let mut held_back = Vec::new();
        verification.finish_content(&mut held_back);
        if !held_back.is_empty() {
            message.append(&mut held_back).await;
        }

        let verdict = verification.verdict(&self.context.control, settings).await;
        let refused = settings.dmarc_reject && verdict.dmarc_rejects;
        let counters = &self.context.counters;
        counters
            .messages_verified
            .set(counters.messages_verified.get() + 1);
        if refused {
            counters
                .messages_refused_dmarc
                .set(counters.messages_refused_dmarc.get() + 1);
        }
        debug!(queue_id = %self.queue_id, verdict = %verdict.summary, refused, "message verified");
        if refused {
            info!(
                queue_id = %self.queue_id,
                from = %self.session.envelope().mail_from,
                verdict = %verdict.summary,
                "message refused with 550 5.7.1: DMARC fail under p=reject"
            );
            return Some(StoreOutcome::DmarcRejected);
        }
        message.prepend_header(&verdict.header);
        None
    }

    async fn read(&mut self, stream: &mut SessionStream, input: &mut [u8]) -> Input {
        let phase_timeout = match self.session.phase() {
            crate::smtp::Phase::Command => self.context.command_timeout,
            crate::smtp::Phase::Data => self.context.data_timeout,
        };
        let read = async {
            match glommio::timer::timeout(phase_timeout, async {
                stream
                    .read(input)
                    .await
                    .map_err(glommio::GlommioError::from)
            })
            .await
            {
                Ok(0) => Input::Eof,
                Ok(length) => Input::Bytes(length),
                Err(glommio::GlommioError::TimedOut(_)) => Input::TimedOut,
                Err(error) => Input::Failed(io::Error::from(error)),
            }
        };
        let shutdown = async {
            self.context.wait_for_session_deadline().await;
            Input::ShutDown
        };
        future::or(read, shutdown).await
    }

    /// Writes everything the session has queued, bounded by the command timeout so a client
    /// that stops reading cannot hold the session forever.
    async fn flush(&mut self, stream: &mut SessionStream) -> io::Result<()> {
        let output = self.session.output();
        if output.is_empty() {
            return Ok(());
        }
        let length = output.len();
        let written = glommio::timer::timeout(self.context.command_timeout, async {
            stream.write_all(output).await?;
            // TLS holds written bytes until flushed; on plain TCP this returns at once.
            stream.flush().await.map_err(glommio::GlommioError::from)
        })
        .await;
        self.session.consume_output(length);
        written.map_err(io::Error::from)
    }

    /// Waits the configured greeting delay, then looks (without consuming) whether the client
    /// has already sent something. RFC 5321 §3.1: the client must wait for the greeting.
    async fn client_talked_first(&self, stream: &SessionStream) -> bool {
        let delay = self.context.greeting_delay;
        if !delay.is_zero() {
            let shutdown = async {
                self.context.wait_for_session_deadline().await;
            };
            future::or(glommio::timer::sleep(delay), shutdown).await;
        }
        let Some(fd) = stream.raw_fd() else {
            return false;
        };
        let mut probe = [0u8; 1];
        let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
        matches!(nix::sys::socket::recv(fd, &mut probe, flags), Ok(n) if n > 0)
    }
}

fn store_failure(queue_id: &str, error: &SpoolFailure) -> StoreOutcome {
    if error.no_space {
        warn!(%queue_id, %error, "spool full: message refused with 452, nothing was acknowledged");
        StoreOutcome::InsufficientStorage
    } else {
        warn!(%queue_id, %error, "spool write failed: message refused with 451");
        StoreOutcome::TemporaryFailure
    }
}

/// Reads and drops whatever the client sent that the session will never read. Closing a socket
/// with unread input makes the kernel send a reset instead of a normal close, and a reset can
/// make the client's kernel throw away our last reply (the 221, 421 or 554 that explains why)
/// before the client reads it. Bounded: a client still sending gets its reset.
fn discard_unread_input(fd: RawFd) {
    let mut scratch = [0u8; 4096];
    for _ in 0..DISCARD_READS_MAX {
        match nix::sys::socket::recv(fd, &mut scratch, MsgFlags::MSG_DONTWAIT) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// How long a closing TLS session waits to send its close_notify to a client that stopped
/// reading.
const TLS_CLOSE_PATIENCE: Duration = Duration::from_secs(1);

/// At most this many 4 KiB reads are discarded at close (64 KiB).
const DISCARD_READS_MAX: usize = 16;

/// Writes the over-limit reply without waiting: the socket is fresh, so its send buffer has room,
/// and a client that does not read does not deserve a task.
pub(crate) fn refuse_over_limit(stream: &TcpStream, reply: &[u8]) {
    use std::os::fd::AsRawFd;
    let _ = nix::sys::socket::send(stream.as_raw_fd(), reply, MsgFlags::MSG_DONTWAIT);
}

/// How long a shard waits for sessions to write their `421` after the deadline.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);
