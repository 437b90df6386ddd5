//! One SMTP client connection of `send`: connect, greeting, EHLO, transactions, QUIT. It owns
//! the wire side of a transaction: the envelope in one write when the server offers PIPELINING
//! (RFC 2920; DATA ends the group because its 354 must be awaited before the body), the
//! headers, the pre-rendered dot-stuffed body and its terminator in a second write, and the
//! classification of every reply. It reuses its buffers across messages, so the hot path does
//! not allocate once they have grown. It never decides which message to send or when.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::message::{self, Body};
use crate::reply::{parse_reply, ParsedReply};
use crate::tls::{TlsMode, Wire};

/// How `send` does TLS, fixed for the run.
pub struct ClientTls {
    pub mode: TlsMode,
    /// Present unless `mode` is `None`.
    pub connector: Option<futures_rustls::TlsConnector>,
    pub name: rustls::pki_types::ServerName<'static>,
}

/// Read buffer per connection; replies are short, so this only grows for a huge EHLO reply.
const INPUT_BYTES: usize = 4096;

/// Longest reply accepted, so a peer that never ends a line cannot grow memory.
const REPLY_MAX_BYTES: usize = 64 * 1024;

/// Why a connection ended badly. Each maps to one `ConnectionErrors` field.
#[derive(Debug)]
pub enum SessionError {
    Connect(io::Error),
    Timeout,
    Closed,
    Protocol(String),
    Io(io::Error),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Connect(error) => write!(f, "cannot connect: {error}"),
            SessionError::Timeout => f.write_str("no reply within --timeout"),
            SessionError::Closed => f.write_str("the server closed the connection"),
            SessionError::Protocol(what) => write!(f, "protocol error: {what}"),
            SessionError::Io(error) => write!(f, "socket error: {error}"),
        }
    }
}

impl From<io::Error> for SessionError {
    fn from(error: io::Error) -> SessionError {
        match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => SessionError::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => SessionError::Closed,
            _ => SessionError::Io(error),
        }
    }
}

/// How a transaction ended, when the connection survived it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    TemporarilyRefused,
    Refused,
}

/// What one accepted or refused transaction measured.
pub struct Transaction {
    pub outcome: Outcome,
    /// From writing the end of data to its reply.
    pub data_reply: Option<Duration>,
    /// Octets of message (headers and body) written.
    pub message_bytes: usize,
    pub recipients_refused: u64,
}

/// The envelope and header parameters that stay fixed for a run.
pub struct Envelope<'a> {
    pub run: &'a str,
    pub from: &'a str,
    /// One address per recipient.
    pub recipients: &'a [String],
    pub helo: &'a str,
}

pub struct Connection {
    stream: Wire,
    input: Vec<u8>,
    /// `input[start..end]` is read but not yet parsed.
    start: usize,
    end: usize,
    pipelining: bool,
    output: Vec<u8>,
    /// The RCPT replies of the current transaction, kept to reuse the allocation.
    rcpt_codes: Vec<u16>,
}

impl Connection {
    /// Connects, reads the greeting and says EHLO. Returns the ready connection.
    pub async fn open(
        target: SocketAddr,
        timeout: Duration,
        envelope: &Envelope<'_>,
        use_pipelining: bool,
        tls: &ClientTls,
    ) -> Result<Connection, SessionError> {
        let stream = TcpStream::connect_timeout(target, timeout)
            .await
            .map_err(|error| SessionError::Connect(io::Error::other(error.to_string())))?;
        stream.set_nodelay(true).map_err(io::Error::from)?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io::Error::from)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(io::Error::from)?;
        let mut connection = Connection {
            stream: Wire::Plain(stream),
            input: vec![0; INPUT_BYTES],
            start: 0,
            end: 0,
            pipelining: false,
            output: Vec::with_capacity(INPUT_BYTES),
            rcpt_codes: Vec::with_capacity(envelope.recipients.len()),
        };

        if tls.mode == TlsMode::Implicit {
            connection.handshake(tls).await?;
        }
        let greeting = connection.reply(|_| {}).await?;
        if greeting != 220 {
            return Err(SessionError::Protocol(format!("greeting {greeting}")));
        }
        let starttls = connection.ehlo(envelope, use_pipelining).await?;
        if tls.mode == TlsMode::StartTls {
            if !starttls {
                return Err(SessionError::Protocol(
                    "the server does not offer STARTTLS".into(),
                ));
            }
            connection.output.extend_from_slice(b"STARTTLS\r\n");
            connection.flush().await?;
            let ready = connection.reply(|_| {}).await?;
            if ready != 220 {
                return Err(SessionError::Protocol(format!("STARTTLS answered {ready}")));
            }
            // RFC 3207 §4.2: nothing read before the handshake may be used after it.
            connection.start = 0;
            connection.end = 0;
            connection.handshake(tls).await?;
            connection.ehlo(envelope, use_pipelining).await?;
        }
        Ok(connection)
    }

    async fn handshake(&mut self, tls: &ClientTls) -> Result<(), SessionError> {
        let Some(connector) = &tls.connector else {
            return Err(SessionError::Protocol(
                "TLS asked for without a configuration".into(),
            ));
        };
        let plain = self.stream.take_plain()?;
        let encrypted = connector
            .connect(tls.name.clone(), plain)
            .await
            .map_err(|error| SessionError::Protocol(format!("TLS handshake failed: {error}")))?;
        self.stream = Wire::Client(Box::new(encrypted));
        Ok(())
    }

    /// Says EHLO; learns PIPELINING, returns whether STARTTLS is offered.
    async fn ehlo(
        &mut self,
        envelope: &Envelope<'_>,
        use_pipelining: bool,
    ) -> Result<bool, SessionError> {
        let connection = self;
        connection.output.clear();
        connection.output.extend_from_slice(b"EHLO ");
        connection
            .output
            .extend_from_slice(envelope.helo.as_bytes());
        connection.output.extend_from_slice(b"\r\n");
        connection.flush().await?;
        let mut pipelining = false;
        let mut starttls = false;
        let ehlo = connection
            .reply(|line| {
                let keyword = line.split(|&octet| octet == b' ').next().unwrap_or(&[]);
                pipelining |= keyword.eq_ignore_ascii_case(b"PIPELINING");
                starttls |= keyword.eq_ignore_ascii_case(b"STARTTLS");
            })
            .await?;
        if ehlo != 250 {
            return Err(SessionError::Protocol(format!("EHLO answered {ehlo}")));
        }
        connection.pipelining = pipelining && use_pipelining;
        Ok(starttls)
    }

    /// Sends message `n` and classifies the result. With `quit_after`, QUIT rides along after
    /// the end of data and the connection is done afterwards.
    pub async fn transaction(
        &mut self,
        envelope: &Envelope<'_>,
        n: u64,
        body: &Body,
        quit_after: bool,
    ) -> Result<Transaction, SessionError> {
        let (mail, data) = self.envelope(envelope).await?;
        let rcpt_codes = std::mem::take(&mut self.rcpt_codes);
        let result = self
            .finish(envelope, n, body, quit_after, mail, &rcpt_codes, data)
            .await;
        self.rcpt_codes = rcpt_codes;
        result
    }

    /// The rest of a transaction, once the envelope's replies are in.
    #[allow(clippy::too_many_arguments)] // One call site; a struct would only rename them.
    async fn finish(
        &mut self,
        envelope: &Envelope<'_>,
        n: u64,
        body: &Body,
        quit_after: bool,
        mail: u16,
        rcpt_codes: &[u16],
        data: u16,
    ) -> Result<Transaction, SessionError> {
        let recipients_accepted = rcpt_codes.iter().filter(|&&code| code / 100 == 2).count();
        let recipients_refused = (rcpt_codes.len() - recipients_accepted) as u64;

        if mail / 100 != 2 {
            // Without a transaction, the pipelined RCPTs and DATA were refused too (503).
            return Ok(refusal(class(mail), 0));
        }
        if data != 354 {
            self.reset().await?;
            let outcome = if recipients_accepted == 0 {
                recipients_outcome(rcpt_codes)
            } else {
                class(data)
            };
            return Ok(refusal(outcome, recipients_refused));
        }
        if recipients_accepted == 0 {
            // A server that says 354 with no recipient (RFC 2920 §3.1 allows it): end the data
            // at once; nothing is delivered whatever it answers.
            self.output.clear();
            self.output.extend_from_slice(b".\r\n");
            self.flush().await?;
            self.reply(|_| {}).await?;
            return Ok(refusal(recipients_outcome(rcpt_codes), recipients_refused));
        }

        self.output.clear();
        message::write_headers(
            &mut self.output,
            envelope.run,
            n,
            envelope.from,
            &envelope.recipients[0],
            body,
        );
        let message_bytes = self.output.len() + body.bytes;
        self.output.extend_from_slice(&body.wire);
        if quit_after {
            self.output.extend_from_slice(b"QUIT\r\n");
        }
        let data_started = Instant::now();
        self.flush().await?;
        let end_of_data = self.reply(|_| {}).await?;
        let data_reply = data_started.elapsed();
        if quit_after {
            // The 221 is courtesy; the message's fate is already known.
            let _ = self.reply(|_| {}).await;
        }

        let outcome = class(end_of_data);
        if outcome != Outcome::Accepted && !quit_after {
            self.reset().await?;
        }
        Ok(Transaction {
            outcome,
            data_reply: Some(data_reply),
            message_bytes,
            recipients_refused,
        })
    }

    /// MAIL, RCPT… and DATA: one write with PIPELINING, one round trip each without.
    async fn envelope(&mut self, envelope: &Envelope<'_>) -> Result<(u16, u16), SessionError> {
        self.rcpt_codes.clear();
        self.output.clear();
        self.command(b"MAIL FROM:<", envelope.from);
        if !self.pipelining {
            self.flush().await?;
            let mail = self.reply(|_| {}).await?;
            if mail / 100 != 2 {
                return Ok((mail, 503));
            }
            for recipient in envelope.recipients {
                self.command(b"RCPT TO:<", recipient);
                self.flush().await?;
                let code = self.reply(|_| {}).await?;
                self.rcpt_codes.push(code);
            }
            if !self.rcpt_codes.iter().any(|&code| code / 100 == 2) {
                return Ok((mail, 503));
            }
            self.output.extend_from_slice(b"DATA\r\n");
            self.flush().await?;
            let data = self.reply(|_| {}).await?;
            return Ok((mail, data));
        }

        for recipient in envelope.recipients {
            self.command(b"RCPT TO:<", recipient);
        }
        self.output.extend_from_slice(b"DATA\r\n");
        self.flush().await?;
        let mail = self.reply(|_| {}).await?;
        for _ in envelope.recipients {
            let code = self.reply(|_| {}).await?;
            self.rcpt_codes.push(code);
        }
        let data = self.reply(|_| {}).await?;
        Ok((mail, data))
    }

    /// Ends the session politely. Errors are ignored: the run's figures are already recorded.
    pub async fn quit(mut self) {
        self.output.clear();
        self.output.extend_from_slice(b"QUIT\r\n");
        if self.flush().await.is_ok() {
            let _ = self.reply(|_| {}).await;
        }
        let _ = self.stream.close().await;
    }

    async fn reset(&mut self) -> Result<(), SessionError> {
        self.output.clear();
        self.output.extend_from_slice(b"RSET\r\n");
        self.flush().await?;
        let code = self.reply(|_| {}).await?;
        if code / 100 != 2 {
            return Err(SessionError::Protocol(format!("RSET answered {code}")));
        }
        Ok(())
    }

    fn command(&mut self, verb: &[u8], address: &str) {
        self.output.extend_from_slice(verb);
        self.output.extend_from_slice(address.as_bytes());
        self.output.extend_from_slice(b">\r\n");
    }

    async fn flush(&mut self) -> Result<(), SessionError> {
        self.stream.write_all(&self.output).await?;
        self.output.clear();
        Ok(())
    }

    /// Reads until one complete reply is buffered and returns its code. `on_line` may see a
    /// line more than once when a reply arrives in pieces; callers only set flags from it.
    async fn reply(&mut self, mut on_line: impl FnMut(&[u8])) -> Result<u16, SessionError> {
        loop {
            let parsed = parse_reply(&self.input[self.start..self.end], &mut on_line)
                .map_err(|_| SessionError::Protocol("a reply that is not SMTP".into()))?;
            if let Some(ParsedReply { code, length }) = parsed {
                self.start += length;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                return Ok(code);
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Result<(), SessionError> {
        if self.end == self.input.len() {
            if self.start > 0 {
                self.input.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.input.len() < REPLY_MAX_BYTES {
                self.input.resize(self.input.len() * 2, 0);
            } else {
                return Err(SessionError::Protocol(format!(
                    "a reply longer than {REPLY_MAX_BYTES} octets"
                )));
            }
        }
        let read = self.stream.read(&mut self.input[self.end..]).await?;
        if read == 0 {
            return Err(SessionError::Closed);
        }
        self.end += read;
        Ok(())
    }
}

/// The outcome a reply code stands for (RFC 5321 §4.2.1): 2xx accepted, 4xx try again later,
/// anything else refused.
fn class(code: u16) -> Outcome {
    match code / 100 {
        2 | 3 => Outcome::Accepted,
        4 => Outcome::TemporarilyRefused,
        _ => Outcome::Refused,
    }
}

/// With no recipient accepted: temporary if any refusal was temporary, since a retry may work.
fn recipients_outcome(codes: &[u16]) -> Outcome {
    if codes.iter().any(|&code| code / 100 == 4) {
        Outcome::TemporarilyRefused
    } else {
        Outcome::Refused
    }
}

fn refusal(outcome: Outcome, recipients_refused: u64) -> Transaction {
    let outcome = match outcome {
        // A 2xx or 3xx where a refusal was expected (e.g. 354 but no recipient) is no delivery.
        Outcome::Accepted => Outcome::Refused,
        other => other,
    };
    Transaction {
        outcome,
        data_reply: None,
        message_bytes: 0,
        recipients_refused,
    }
}
