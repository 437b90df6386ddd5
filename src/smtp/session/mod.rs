//! The SMTP server session: one state machine per connection, fed bytes by the shard driver.
//! This file owns the input framing (command lines, DATA bodies, BDAT chunks), the events
//! handed to the driver and the output buffer; `verbs.rs` owns what each command does and
//! `refusal.rs` the replies to refused ones, `auth.rs` the SASL exchange of AUTH. It guarantees
//! that commands are answered in the order they arrived (RFC 2920 §3.1), that a partial command
//! line never holds more than `command_line_max_bytes` (an AUTH line, 12,288: RFC 4954 §4),
//! and that nothing is read from the input
//! between an event that needs the driver (MessageComplete, StartTls, Authenticate, Close) and
//! the driver's answer. It never performs I/O, reads a clock or blocks.

mod auth;
mod refusal;
#[cfg(test)]
mod tests;
mod verbs;

pub use refusal::Refusal;

use super::command::parse_command;
use super::data::{BodyFault, DataDecoder};
use super::envelope::Envelope;
use super::received::{self, Trace};
use super::reply::{EnhancedStatus, Reply};
use super::SessionParams;
use crate::sasl::Credentials;

/// What the driver must do after `feed` returns. After any event but `NeedInput` and `Close`,
/// the driver acts on it and calls `feed` again with the rest of its input, even when that
/// rest is empty: a zero-length BDAT chunk, for one, completes without further input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Every complete command in the input was handled (any partial line is kept inside the
    /// session); the driver writes `output()` and reads more.
    NeedInput,
    /// A DATA or first BDAT chunk started a message body; the driver opens storage for it.
    /// Unstuffed body bytes arrive in the `body` Vec passed to `feed`.
    MessageBegin,
    /// The body is complete and acceptable; the driver makes it durable, then calls
    /// `message_stored`. The driver must not call `feed` until it has done so.
    MessageComplete,
    /// The body being received was abandoned (oversize, bare CR/LF, NUL, line too long, BDAT
    /// then RSET, ...); the reply is already queued and the driver discards what it stored.
    /// It only ever follows a `MessageBegin`.
    MessageAborted,
    /// `220 2.0.0 Ready to start TLS` is queued: the driver flushes it, discards any input after
    /// the STARTTLS line (RFC 3207 §4.2), handshakes, then calls `tls_established`.
    StartTls,
    /// A SASL exchange is complete: the driver takes the credentials with `take_credentials`,
    /// has them verified off the shard, and reports with `authentication_result`. The driver
    /// must not call `feed` until it has done so: AUTH is not pipelinable (RFC 4954 §4).
    Authenticate,
    /// Flush the output, then close the connection (QUIT, too many errors, 421, early talker).
    /// A message begun and not completed is abandoned with the connection.
    Close,
}

/// What became of a completed message, as the driver reports it to `message_stored`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored {
        queue_id: String,
    },
    TemporaryFailure,
    InsufficientStorage,
    /// The sender's domain asks receivers to refuse mail that fails its DMARC check
    /// (RFC 7489 §6.3 `p=reject`) and the operator chose to honour that; nothing was stored.
    DmarcRejected,
}

/// Which RFC 5321 §4.5.3.2 timeout applies to the next read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a command (§4.5.3.2.7, server timeout, 5 minutes).
    Command,
    /// Inside a message body (§4.5.3.2.5, data block, 3 minutes).
    Data,
}

/// Which greeting the client used; it decides the extensions and the WITH protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hello {
    Helo,
    Ehlo,
}

/// What the session is reading.
#[derive(Clone, Debug)]
enum Mode {
    Command,
    Data(DataDecoder),
    Chunk(Chunk),
    /// MessageComplete was returned; waiting for `message_stored`.
    AwaitingStore,
    /// StartTls was returned; waiting for `tls_established`.
    AwaitingTls,
    /// A 334 challenge was sent; the next line is the client's SASL response.
    AuthResponse(auth::Stage),
    /// Authenticate was returned; waiting for `authentication_result`.
    AwaitingVerdict {
        username: String,
    },
    Closed,
}

/// One BDAT chunk being read (RFC 3030 §2): exactly `size` octets, no unstuffing.
#[derive(Clone, Debug)]
struct Chunk {
    size: u64,
    remaining: u64,
    last: bool,
    fate: ChunkFate,
}

/// What happens to a chunk's octets. They are consumed in every case, since a BDAT's octets are
/// never commands (RFC 3030 §2).
#[derive(Clone, Debug, PartialEq, Eq)]
enum ChunkFate {
    Store,
    /// Over `message_size_max_bytes`: read and dropped, then 552.
    Oversize,
    /// Out of sequence: read and dropped, then this refusal.
    Refused(Refusal),
}

/// Where the BDAT side of a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bdat {
    Unused,
    Receiving {
        received_bytes: u64,
    },
    /// A chunk was refused as too big; RFC 3030 §2 has the client stop, and further chunks
    /// of this transaction are refused until RSET or a new MAIL.
    Failed,
}

/// A partial command line kept between `feed` calls, never longer than the line limit.
#[derive(Clone, Debug, Default)]
struct LineBuffer {
    bytes: Vec<u8>,
    /// The line already exceeded the limit; its remaining octets are dropped up to the LF.
    overflowed: bool,
}

/// One SMTP server session.
#[derive(Debug)]
pub struct Session {
    params: SessionParams,
    mode: Mode,
    greeted: bool,
    hello: Option<Hello>,
    envelope: Envelope,
    /// MAIL was accepted and the transaction has not ended.
    mail_given: bool,
    bdat: Bdat,
    /// MessageBegin was returned and neither MessageComplete nor MessageAborted yet.
    message_open: bool,
    line: LineBuffer,
    output: Vec<u8>,
    bad_commands: u32,
    /// The store is over its limits: new transactions get `452 4.3.1` at MAIL and RCPT.
    storage_full: bool,
    /// A reply held back by `timed_out`/`shutting_down` while a message is being stored, so
    /// that the client still learns its message was queued.
    close_after_store: Option<Reply>,
    /// The user name AUTH succeeded for; it grants relaying (RFC 4954 §6).
    /// The TLS version and suite the session negotiated, for the `Received:` header.
    tls_cipher: Option<(&'static str, String)>,
    authenticated: Option<String>,
    /// AUTH attempts refused in this session; reaching the limit closes it.
    auth_failures: u32,
    /// Credentials of the exchange just completed, until the driver takes them.
    credentials: Option<Credentials>,
}

impl Session {
    /// A session that has queued nothing yet.
    pub fn new(params: SessionParams) -> Session {
        Session {
            params,
            mode: Mode::Command,
            greeted: false,
            hello: None,
            envelope: Envelope::default(),
            mail_given: false,
            bdat: Bdat::Unused,
            message_open: false,
            line: LineBuffer::default(),
            output: Vec::new(),
            bad_commands: 0,
            storage_full: false,
            close_after_store: None,
            tls_cipher: None,
            authenticated: None,
            auth_failures: 0,
            credentials: None,
        }
    }

    /// Queues the `220` greeting (RFC 5321 §4.3.1); no enhanced status, per RFC 2034 §3.
    pub fn greet(&mut self) {
        debug_assert!(!self.greeted, "greeted twice");
        self.greeted = true;
        let text = format!("{} ESMTP postern", self.params.hostname);
        self.queue(&Reply::new(220, None, text));
    }

    /// The client sent bytes before the greeting, which RFC 5321 §4.3.1 forbids and spam
    /// engines do to save time; it gets a 554 and the session closes.
    pub fn refuse_early_talker(&mut self) {
        debug_assert!(!self.greeted, "early talker after the greeting");
        self.greeted = true;
        let text = format!(
            "{} protocol error: talked before the greeting",
            self.params.hostname
        );
        self.queue(&Reply::new(554, Some(EnhancedStatus::new(5, 5, 1)), text));
        self.mode = Mode::Closed;
    }

    /// Consumes a prefix of `input` and stops at the first event; see `Event`. Unstuffed body
    /// octets are appended to `body`; replies accumulate in `output()`.
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> (usize, Event) {
        debug_assert!(self.greeted, "feed before greet or refuse_early_talker");
        let mut consumed = 0;
        loop {
            debug_assert!(consumed <= input.len());
            let rest = &input[consumed..];
            let (used, event) = match self.mode {
                Mode::Closed => return (input.len(), Event::Close),
                Mode::AwaitingStore => {
                    debug_assert!(false, "feed called before message_stored");
                    return (consumed, Event::MessageComplete);
                }
                Mode::AwaitingTls => {
                    // RFC 3207 §4.2: anything sent before the handshake is discarded.
                    debug_assert!(false, "feed called before tls_established");
                    return (input.len(), Event::NeedInput);
                }
                Mode::AwaitingVerdict { .. } => {
                    debug_assert!(false, "feed called before authentication_result");
                    return (consumed, Event::Authenticate);
                }
                Mode::Command | Mode::AuthResponse(_) => self.command_step(rest),
                Mode::Data(_) => self.data_step(rest, body),
                Mode::Chunk(_) => self.chunk_step(rest, body),
            };
            consumed += used;
            match event {
                None => continue,
                Some(Event::Close) => return (input.len(), Event::Close),
                Some(event) => {
                    debug_assert!(event != Event::NeedInput || consumed == input.len());
                    return (consumed, event);
                }
            }
        }
    }

    /// The driver's answer to MessageComplete. Queues the final reply of the transaction and
    /// resets it; the EHLO/HELO state stays (RFC 5321 §4.1.1.4).
    pub fn message_stored(&mut self, outcome: StoreOutcome) {
        debug_assert!(
            matches!(self.mode, Mode::AwaitingStore),
            "no message was complete"
        );
        debug_assert!(self.message_open);
        let reply = match outcome {
            StoreOutcome::Stored { queue_id } => {
                debug_assert!(queue_id.bytes().all(|b| b.is_ascii_graphic()));
                let text = format!("Ok: queued as {queue_id}");
                Reply::new(250, Some(EnhancedStatus::new(2, 0, 0)), text)
            }
            // RFC 3463 X.3.0 and X.3.1: mail system status, storage full. Both are temporary,
            // as every local storage problem must be.
            StoreOutcome::TemporaryFailure => Reply::new(
                451,
                Some(EnhancedStatus::new(4, 3, 0)),
                "temporary failure storing the message, try again later",
            ),
            StoreOutcome::InsufficientStorage => Reply::new(
                452,
                Some(EnhancedStatus::new(4, 3, 1)),
                "insufficient system storage, try again later",
            ),
            // RFC 7489 §10.3 suggests 550 with a reason; RFC 3463 X.7.1: delivery not
            // authorised, message refused.
            StoreOutcome::DmarcRejected => Reply::new(
                550,
                Some(EnhancedStatus::new(5, 7, 1)),
                "message rejected: the sender's DMARC policy is reject and it failed",
            ),
        };
        self.queue(&reply);
        self.message_open = false;
        self.end_transaction();
        self.mode = Mode::Command;
        if let Some(close) = self.close_after_store.take() {
            self.queue(&close);
            self.mode = Mode::Closed;
        }
    }

    /// The TLS handshake after STARTTLS succeeded. RFC 3207 §4.2: the server forgets
    /// everything it learnt from the client, which must send EHLO again.
    pub fn tls_established(&mut self) {
        if matches!(self.mode, Mode::Closed) {
            return;
        }
        debug_assert!(
            matches!(self.mode, Mode::AwaitingTls),
            "no STARTTLS was pending"
        );
        debug_assert!(!self.message_open && !self.mail_given);
        self.params.tls_active = true;
        self.hello = None;
        self.authenticated = None;
        self.envelope = Envelope::default();
        self.end_transaction();
        self.line = LineBuffer::default();
        self.mode = Mode::Command;
    }

    /// The session's listener speaks TLS from the first byte (RFC 8314) and the handshake has
    /// completed; called before `greet`, so STARTTLS is never offered.
    pub fn tls_from_start(&mut self) {
        debug_assert!(self.hello.is_none(), "implicit TLS after the greeting");
        self.params.tls_active = true;
    }

    /// Records the TLS version and suite for the `Received:` header (Postfix's `using ...`).
    pub fn tls_cipher(&mut self, version: &'static str, cipher: String) {
        self.tls_cipher = Some((version, cipher));
    }

    /// The client presented a certificate that verified against the configured client CA:
    /// it may relay like a client from `relay.allow_networks`.
    pub fn trust_client_certificate(&mut self) {
        debug_assert!(self.params.tls_active);
        self.params.relay_allowed = true;
    }

    /// The phase timeout fired (RFC 5321 §4.5.3.2); queues 421 and closes.
    pub fn timed_out(&mut self) {
        let text = format!(
            "{} timeout exceeded, closing connection",
            self.params.hostname
        );
        self.close_with(Reply::new(421, Some(EnhancedStatus::new(4, 4, 2)), text));
    }

    /// The shard is draining; queues 421 (RFC 5321 §3.8) and closes.
    pub fn shutting_down(&mut self) {
        let text = format!("{} shutting down, try again later", self.params.hostname);
        self.close_with(Reply::new(421, Some(EnhancedStatus::new(4, 3, 2)), text));
    }

    /// Bytes queued for the client.
    /// Tells the session whether the store can take new mail. While it cannot, MAIL and RCPT
    /// are answered `452 4.3.1` (a temporary refusal the client retries); a message already
    /// being received is not affected.
    pub fn set_storage_full(&mut self, full: bool) {
        self.storage_full = full;
    }

    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// The driver wrote the first `n` bytes of `output()`.
    pub fn consume_output(&mut self, n: usize) {
        debug_assert!(n <= self.output.len(), "consumed more output than queued");
        self.output.drain(..n.min(self.output.len()));
    }

    pub fn phase(&self) -> Phase {
        match self.mode {
            Mode::Data(_) | Mode::Chunk(_) | Mode::AwaitingStore => Phase::Data,
            Mode::Command
            | Mode::AwaitingTls
            | Mode::AuthResponse(_)
            | Mode::AwaitingVerdict { .. }
            | Mode::Closed => Phase::Command,
        }
    }

    /// The envelope of the current transaction; complete at MessageBegin and MessageComplete.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The `Received:` header for the current message (RFC 5321 §4.4).
    pub fn received_header(&self, queue_id: &str, date: &str) -> String {
        received::received_header(&Trace {
            hostname: &self.params.hostname,
            helo: &self.envelope.helo,
            peer: self.params.peer.ip(),
            esmtp: self.hello == Some(Hello::Ehlo),
            smtputf8: self.envelope.smtputf8,
            tls: self.params.tls_active,
            tls_cipher: self
                .tls_cipher
                .as_ref()
                .map(|(version, cipher)| (*version, cipher.as_str())),
            authenticated: self.authenticated.is_some(),
            queue_id,
            recipients: &self.envelope.rcpt_to,
            date,
        })
    }

    /// The client's address and port.
    pub fn peer(&self) -> std::net::SocketAddr {
        self.params.peer
    }

    /// Mail from this client is taken on trust: it is not verified (SPF, DKIM, DMARC) and its
    /// own `Authentication-Results:` fields are kept. That is a client inside `allow_networks`,
    /// one with a trusted client certificate, or a session that passed AUTH.
    pub fn is_trusted(&self) -> bool {
        self.params.relay_allowed || self.authenticated.is_some()
    }

    /// Whether messages of this session may be DKIM-signed: only those of trusted clients
    /// (allowed networks, a verified client certificate, or AUTH). Signing mail from anyone
    /// else would turn a forged From into a signed one.
    pub fn may_sign(&self) -> bool {
        self.is_trusted()
    }

    /// A Close is pending: the driver flushes the output and closes.
    pub fn wants_close(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// Frames one command line out of `rest`, or keeps a partial one.
    fn command_step(&mut self, rest: &[u8]) -> (usize, Option<Event>) {
        let sensitive = self.line_is_sensitive(rest);
        let max = self.line_max_bytes(sensitive);
        // A bare LF also ends a command line. RFC 5321 §2.3.8 asks for CRLF, but treating LF
        // alone as the end is what common servers do and cannot be abused here: unlike DATA,
        // a command line has no terminator whose recognition two hops could disagree on.
        let Some(newline) = memchr::memchr(b'\n', rest) else {
            self.line.absorb(rest, max);
            return (rest.len(), Some(Event::NeedInput));
        };
        let piece = &rest[..=newline];

        if self.line.bytes.is_empty() && !self.line.overflowed {
            let event = if piece.len() > max {
                self.line_too_long()
            } else {
                self.handle_line(strip_line_ending(piece))
            };
            return (piece.len(), event);
        }

        let mut buffered = std::mem::take(&mut self.line.bytes);
        let too_long =
            std::mem::take(&mut self.line.overflowed) || buffered.len() + piece.len() > max;
        let event = if too_long {
            self.line_too_long()
        } else {
            buffered.extend_from_slice(piece);
            self.handle_line(strip_line_ending(&buffered))
        };
        // Keep the allocation for the next partial line; it never exceeds `max`. A line of a
        // SASL exchange may hold a password, so its copy is wiped rather than just forgotten.
        if sensitive {
            zeroize::Zeroize::zeroize(&mut buffered);
        }
        buffered.clear();
        if self.line.bytes.is_empty() {
            self.line.bytes = buffered;
        }
        (piece.len(), event)
    }

    fn handle_line(&mut self, line: &[u8]) -> Option<Event> {
        if let Mode::AuthResponse(stage) = &self.mode {
            let stage = stage.clone();
            return self.exchange_line(stage, line);
        }
        match parse_command(line) {
            Ok(command) => self.dispatch(command),
            Err(error) => self.answer(error.reply()),
        }
    }

    fn data_step(&mut self, rest: &[u8], body: &mut Vec<u8>) -> (usize, Option<Event>) {
        let Mode::Data(decoder) = &mut self.mode else {
            unreachable!("data_step outside DATA");
        };
        let (used, verdict) = decoder.decode(rest, body);
        let event = match verdict {
            None => Event::NeedInput,
            Some(Ok(())) => {
                self.mode = Mode::AwaitingStore;
                Event::MessageComplete
            }
            Some(Err(fault)) => self.abort_message(fault),
        };
        (used, Some(event))
    }

    fn chunk_step(&mut self, rest: &[u8], body: &mut Vec<u8>) -> (usize, Option<Event>) {
        let Mode::Chunk(chunk) = &mut self.mode else {
            unreachable!("chunk_step outside BDAT");
        };
        let available = u64::try_from(rest.len()).unwrap_or(u64::MAX);
        let take = chunk.remaining.min(available);
        // `take` is at most `rest.len()`, so it fits a usize.
        let take_bytes = usize::try_from(take).unwrap_or(rest.len());
        if chunk.fate == ChunkFate::Store {
            body.extend_from_slice(&rest[..take_bytes]);
        }
        chunk.remaining -= take;
        if chunk.remaining > 0 {
            debug_assert_eq!(take_bytes, rest.len());
            return (take_bytes, Some(Event::NeedInput));
        }
        let chunk = chunk.clone();
        self.mode = Mode::Command;
        (take_bytes, self.finish_chunk(chunk))
    }

    /// The last octet of a chunk arrived.
    fn finish_chunk(&mut self, chunk: Chunk) -> Option<Event> {
        match chunk.fate {
            ChunkFate::Store => {
                let Bdat::Receiving { received_bytes } = self.bdat else {
                    unreachable!("a stored chunk belongs to a receiving BDAT transaction");
                };
                self.bdat = Bdat::Receiving {
                    received_bytes: received_bytes + chunk.size,
                };
                if chunk.last {
                    self.mode = Mode::AwaitingStore;
                    return Some(Event::MessageComplete);
                }
                let text = format!("{} octets received", chunk.size);
                self.answer(Reply::new(250, Some(EnhancedStatus::new(2, 0, 0)), text))
            }
            ChunkFate::Oversize => {
                self.queue(&Refusal::Body(BodyFault::TooBig).reply());
                self.bdat = Bdat::Failed;
                std::mem::take(&mut self.message_open).then_some(Event::MessageAborted)
            }
            ChunkFate::Refused(refusal) => self.refuse(refusal),
        }
    }

    /// A DATA body was refused after its terminator: reply, end the transaction.
    fn abort_message(&mut self, fault: BodyFault) -> Event {
        debug_assert!(self.message_open);
        self.queue(&Refusal::Body(fault).reply());
        self.message_open = false;
        self.end_transaction();
        self.mode = Mode::Command;
        Event::MessageAborted
    }

    /// Forgets the transaction, keeping the greeting (RFC 5321 §4.1.1.5).
    fn end_transaction(&mut self) {
        self.envelope.reset_transaction();
        self.mail_given = false;
        self.bdat = Bdat::Unused;
    }

    fn close_with(&mut self, reply: Reply) {
        match self.mode {
            Mode::Closed => {}
            Mode::AwaitingStore => self.close_after_store = Some(reply),
            _ => {
                self.queue(&reply);
                self.mode = Mode::Closed;
            }
        }
    }

    /// Queues a reply to a command. A 5xx counts toward `bad_commands_max`; reaching it queues
    /// `421 4.7.0` and closes, so a client cannot probe or loop for free.
    fn answer(&mut self, reply: Reply) -> Option<Event> {
        self.queue(&reply);
        if !reply.is_permanent_failure() {
            return None;
        }
        self.bad_commands = self.bad_commands.saturating_add(1);
        if self.bad_commands < self.params.limits.bad_commands_max {
            return None;
        }
        let text = format!(
            "{} too many errors, closing connection",
            self.params.hostname
        );
        self.queue(&Reply::new(421, Some(EnhancedStatus::new(4, 7, 0)), text));
        self.mode = Mode::Closed;
        Some(Event::Close)
    }

    fn refuse(&mut self, refusal: Refusal) -> Option<Event> {
        self.answer(refusal.reply())
    }

    fn queue(&mut self, reply: &Reply) {
        reply.write_to(&mut self.output);
    }
}

impl LineBuffer {
    /// Keeps a partial line, or drops it once it cannot fit in `max` octets.
    fn absorb(&mut self, partial: &[u8], max: usize) {
        if self.overflowed {
            return;
        }
        if self.bytes.len() + partial.len() > max {
            self.overflowed = true;
            self.bytes = Vec::new();
            return;
        }
        // One allocation of exactly the limit: the buffer then never grows past it.
        if self.bytes.capacity() < max {
            self.bytes.reserve_exact(max - self.bytes.len());
        }
        self.bytes.extend_from_slice(partial);
    }
}

/// Drops the LF and, when present, the CR before it.
fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
