//! The outbound SMTP client: one session with a next hop, over any byte stream.
//!
//! It speaks RFC 5321 with the extensions delivery relies on: EHLO with a HELO fallback,
//! PIPELINING (RFC 2920: the whole envelope, and DATA, in one write), SIZE (RFC 1870), 8BITMIME
//! (RFC 6152), SMTPUTF8 (RFC 6531), CHUNKING (RFC 3030: BDAT spares the dot-stuffing copy) and
//! DSN (RFC 3461: NOTIFY, ORCPT, RET and ENVID passed on), and STARTTLS (RFC 3207: the caller
//! runs the handshake on the stream between `request_tls` and `hello_again`). Every wait has
//! the timeout of its phase (RFC 5321 §4.5.3.2). A connection is reused for the next message
//! with RSET.
//!
//! The result of a transaction is a verdict per recipient. Anything that breaks the session
//! (a timeout, a reset, a garbled reply) is a `SessionError`: the caller defers whatever was not
//! answered and drops the connection. This file knows no executor: the stream and the timer
//! are given to it, so it runs on a shard and in tests alike.

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::reply::{parse_reply, Extensions, RemoteReply, ReplyError};
use crate::smtp::{BodyType, Envelope};

/// Bytes read from the next hop at a time; replies are short.
const READ_CHUNK_BYTES: usize = 4096;

/// Sleeps for a while: the one thing the client needs from the executor it runs on.
pub trait Timer {
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()>;
}

/// One timeout per phase of the dialogue (RFC 5321 §4.5.3.2).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// The greeting and the replies to EHLO, HELO, RSET, MAIL, RCPT and QUIT.
    pub command: Duration,
    /// The reply to DATA, and each write of message data.
    pub data: Duration,
    /// The reply after the end of the message.
    pub data_done: Duration,
}

/// Where in the dialogue something happened, for logs and bounces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Rset,
    Mail,
    Rcpt,
    Data,
    Body,
    DataDone,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Greeting => "the greeting",
            Stage::Ehlo => "EHLO",
            Stage::Helo => "HELO",
            Stage::StartTls => "STARTTLS",
            Stage::Rset => "RSET",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Body => "the message data",
            Stage::DataDone => "the end of data",
            Stage::Quit => "QUIT",
        })
    }
}

/// The session cannot go on. Every recipient without a verdict is deferred.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("timed out waiting during {0}")]
    Timeout(Stage),
    #[error("connection failed during {stage}: {error}")]
    Io { stage: Stage, error: io::Error },
    #[error("connection closed by the next hop during {0}")]
    Closed(Stage),
    #[error("unreadable reply during {stage}: {error}")]
    Protocol { stage: Stage, error: ReplyError },
    #[error("the next hop refused the session at {stage}: {reply}")]
    Refused { stage: Stage, reply: RemoteReply },
}

/// One message for one next hop: some of the envelope's recipients and the stored content
/// (headers and body, CRLF line endings, not dot-stuffed).
pub struct Message<'a> {
    pub envelope: &'a Envelope,
    /// Indices into `envelope.rcpt_to`.
    pub recipients: &'a [u32],
    pub content: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Deferred,
    Failed,
}

/// What happened to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    pub index: u32,
    pub verdict: Verdict,
    /// RFC 3463 enhanced status, from the reply when it carries one.
    pub status: String,
    /// The next hop's reply (`550 5.1.1 ...`) or the local reason.
    pub detail: String,
}

impl RecipientResult {
    fn from_reply(index: u32, reply: &RemoteReply) -> RecipientResult {
        let verdict = if reply.is_positive() {
            Verdict::Delivered
        } else if reply.is_transient() {
            Verdict::Deferred
        } else {
            Verdict::Failed
        };
        let status = reply
            .enhanced_status()
            .map_or_else(|| format!("{}.0.0", reply.code / 100), str::to_owned);
        RecipientResult {
            index,
            verdict,
            status,
            detail: reply.to_string(),
        }
    }
}

/// A message this next hop cannot take as it is, decided from its EHLO reply before sending.
pub fn preflight(extensions: &Extensions, message: &Message<'_>) -> Option<(&'static str, String)> {
    let envelope = message.envelope;
    if envelope.smtputf8 && !extensions.smtputf8 {
        // RFC 6531 §3.2: without SMTPUTF8 at the next hop the message cannot be delivered.
        return Some((
            "5.6.7",
            "the next hop does not support SMTPUTF8, which this message needs".into(),
        ));
    }
    if envelope.body == BodyType::EightBitMime && !extensions.eight_bit_mime {
        // RFC 6152 §3: an 8-bit message must not be sent to a server without 8BITMIME; postern
        // does not downgrade to 7-bit encodings, so the message is returned.
        return Some((
            "5.6.3",
            "the next hop does not support 8BITMIME, and the message is 8-bit".into(),
        ));
    }
    if extensions.refuses_size(message.content.len() as u64) {
        return Some((
            "5.3.4",
            format!(
                "message of {} bytes exceeds the next hop's SIZE limit of {}",
                message.content.len(),
                extensions.size.unwrap_or(0)
            ),
        ));
    }
    None
}

/// An open session with a next hop, after its greeting and EHLO.
pub struct Client<S, T> {
    stream: S,
    timer: T,
    timeouts: Timeouts,
    /// Received bytes not yet parsed: `buffer[start..]`.
    buffer: Vec<u8>,
    start: usize,
    extensions: Extensions,
    /// A transaction already ran on this connection, so the next one starts with RSET.
    reused: bool,
    /// Our name in EHLO, kept to introduce us again after STARTTLS.
    helo_name: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin, T: Timer> Client<S, T> {
    /// Reads the greeting and introduces us with EHLO (HELO if the next hop refuses EHLO).
    pub async fn open(
        stream: S,
        timer: T,
        timeouts: Timeouts,
        helo_name: &str,
    ) -> Result<Self, SessionError> {
        let mut client = Client {
            stream,
            timer,
            timeouts,
            buffer: Vec::with_capacity(READ_CHUNK_BYTES),
            start: 0,
            extensions: Extensions::default(),
            reused: false,
            helo_name: helo_name.to_owned(),
        };

        let greeting = client.reply(Stage::Greeting, timeouts.command).await?;
        if greeting.code != 220 {
            return Err(SessionError::Refused {
                stage: Stage::Greeting,
                reply: greeting,
            });
        }

        client
            .write(format!("EHLO {helo_name}\r\n").as_bytes(), Stage::Ehlo)
            .await?;
        let ehlo = client.reply(Stage::Ehlo, timeouts.command).await?;
        if ehlo.is_positive() {
            client.extensions = Extensions::from_ehlo(&ehlo);
            return Ok(client);
        }
        if ehlo.is_transient() {
            return Err(SessionError::Refused {
                stage: Stage::Ehlo,
                reply: ehlo,
            });
        }

        // RFC 5321 §3.2: a server that does not know EHLO answers 5xx; HELO still works.
        client
            .write(format!("HELO {helo_name}\r\n").as_bytes(), Stage::Helo)
            .await?;
        let helo = client.reply(Stage::Helo, timeouts.command).await?;
        if !helo.is_positive() {
            return Err(SessionError::Refused {
                stage: Stage::Helo,
                reply: helo,
            });
        }
        Ok(client)
    }

    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Sends STARTTLS and waits for its `220`. After it, the caller runs the TLS handshake on
    /// `stream_mut()` and then calls `hello_again`. Replies the next hop sent before the
    /// handshake are thrown away unread (RFC 3207 §4.2): nothing said in clear is trusted.
    pub async fn request_tls(&mut self) -> Result<(), SessionError> {
        self.write(b"STARTTLS\r\n", Stage::StartTls).await?;
        let reply = self.reply(Stage::StartTls, self.timeouts.command).await?;
        if reply.code != 220 {
            return Err(SessionError::Refused {
                stage: Stage::StartTls,
                reply,
            });
        }
        self.buffer.clear();
        self.start = 0;
        Ok(())
    }

    /// The stream under the session, for the TLS handshake after `request_tls`.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// EHLO again once TLS is up: the extensions offered in clear are forgotten, and those
    /// offered over TLS replace them (RFC 3207 §4.2).
    pub async fn hello_again(&mut self) -> Result<(), SessionError> {
        self.extensions = Extensions::default();
        let ehlo = format!("EHLO {}\r\n", self.helo_name);
        self.write(ehlo.as_bytes(), Stage::Ehlo).await?;
        let reply = self.reply(Stage::Ehlo, self.timeouts.command).await?;
        if !reply.is_positive() {
            return Err(SessionError::Refused {
                stage: Stage::Ehlo,
                reply,
            });
        }
        self.extensions = Extensions::from_ehlo(&reply);
        Ok(())
    }

    /// Sends one message and returns a verdict for each of its recipients, in the order given.
    pub async fn send(
        &mut self,
        message: &Message<'_>,
    ) -> Result<Vec<RecipientResult>, SessionError> {
        if let Some((status, detail)) = preflight(&self.extensions, message) {
            return Ok(message
                .recipients
                .iter()
                .map(|&index| RecipientResult {
                    index,
                    verdict: Verdict::Failed,
                    status: status.to_owned(),
                    detail: detail.clone(),
                })
                .collect());
        }

        let chunking = self.extensions.chunking;
        let commands = self.envelope_commands(message, !chunking);
        let replies = if self.extensions.pipelining {
            self.write(commands.text.as_bytes(), Stage::Mail).await?;
            if chunking {
                self.write_bdat(message.content).await?;
            }
            self.pipelined_replies(&commands.stages).await?
        } else {
            self.lockstep(&commands, chunking, message.content).await?
        };
        self.reused = true;

        let mut replies = replies.into_iter();
        if commands.stages.first() == Some(&Stage::Rset) {
            let rset = replies.next().expect("one reply per command");
            if !rset.is_positive() {
                return Err(SessionError::Refused {
                    stage: Stage::Rset,
                    reply: rset,
                });
            }
        }
        let mail = replies.next().expect("one reply per command");
        let rcpts: Vec<RemoteReply> = replies.by_ref().take(message.recipients.len()).collect();
        let after_rcpts = replies.next();

        if !mail.is_positive() {
            // MAIL refused: every RCPT reply is a consequence; the MAIL reply decides for all.
            if !chunking {
                self.abandon_data(after_rcpts.as_ref()).await?;
            }
            return Ok(message
                .recipients
                .iter()
                .map(|&index| RecipientResult::from_reply(index, &mail))
                .collect());
        }

        let accepted = rcpts.iter().filter(|reply| reply.is_positive()).count();
        let final_reply = match (chunking, after_rcpts) {
            (true, Some(bdat)) => Some(bdat),
            (false, Some(data)) if data.is_intermediate() && accepted > 0 => {
                Some(self.send_data_body(message.content).await?)
            }
            (false, Some(data)) => {
                self.abandon_data(Some(&data)).await?;
                (!data.is_intermediate()).then_some(data)
            }
            (_, None) => None,
        };

        let results = message
            .recipients
            .iter()
            .zip(&rcpts)
            .map(|(&index, rcpt)| match (&final_reply, rcpt.is_positive()) {
                (Some(done), true) => RecipientResult::from_reply(index, done),
                _ => RecipientResult::from_reply(index, rcpt),
            })
            .collect();
        Ok(results)
    }

    /// Ends the session politely; errors do not matter any more.
    pub async fn quit(mut self) {
        if self.write(b"QUIT\r\n", Stage::Quit).await.is_ok() {
            let _ = self.reply(Stage::Quit, self.timeouts.command).await;
        }
        let _ = self.stream.close().await;
    }

    /// RSET (on a reused connection), MAIL, each RCPT, and DATA when the body goes by DATA.
    fn envelope_commands(&self, message: &Message<'_>, with_data: bool) -> Commands {
        let envelope = message.envelope;
        let mut commands = Commands::default();
        if self.reused {
            commands.push(Stage::Rset, "RSET\r\n".into());
        }

        let mut mail = format!("MAIL FROM:<{}>", envelope.mail_from);
        if self.extensions.size.is_some() {
            mail.push_str(&format!(" SIZE={}", message.content.len()));
        }
        if envelope.body == BodyType::EightBitMime {
            mail.push_str(" BODY=8BITMIME");
        }
        if envelope.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.extensions.dsn {
            mail.push_str(&envelope.dsn_mail_parameters());
        }
        if self.extensions.auth {
            // RFC 4954 §5: a relay passes AUTH= on to hops that offer AUTH.
            mail.push_str(&envelope.auth_mail_parameter());
        }
        commands.push(Stage::Mail, mail + "\r\n");

        for &index in message.recipients {
            let recipient = &envelope.rcpt_to[index as usize];
            let mut rcpt = format!("RCPT TO:<{}>", recipient.address);
            if self.extensions.dsn {
                rcpt.push_str(&recipient.dsn_rcpt_parameters());
            }
            commands.push(Stage::Rcpt, rcpt + "\r\n");
        }

        if with_data {
            commands.push(Stage::Data, "DATA\r\n".into());
        }
        commands
    }

    /// Without PIPELINING: one command, one reply, in turn (RFC 5321 §4.1.4).
    async fn lockstep(
        &mut self,
        commands: &Commands,
        chunking: bool,
        content: &[u8],
    ) -> Result<Vec<RemoteReply>, SessionError> {
        let mut replies = Vec::with_capacity(commands.stages.len() + 1);
        for (stage, line) in commands.stages.iter().zip(&commands.lines) {
            self.write(line.as_bytes(), *stage).await?;
            replies.push(self.reply(*stage, self.timeout_for(*stage)).await?);
        }
        if chunking {
            // BDAT only when MAIL and at least one RCPT were accepted; otherwise there is no
            // transaction to carry the content (RFC 3030 §2).
            let accepted = |wanted: Stage| {
                commands
                    .stages
                    .iter()
                    .zip(&replies)
                    .any(|(stage, reply)| *stage == wanted && reply.is_positive())
            };
            if accepted(Stage::Mail) && accepted(Stage::Rcpt) {
                self.write_bdat(content).await?;
                replies.push(self.reply(Stage::DataDone, self.timeouts.data_done).await?);
            }
        }
        Ok(replies)
    }

    /// Reads one reply per pipelined command, in order (RFC 2920 §3.1), plus the BDAT reply.
    async fn pipelined_replies(
        &mut self,
        stages: &[Stage],
    ) -> Result<Vec<RemoteReply>, SessionError> {
        let mut replies = Vec::with_capacity(stages.len() + 1);
        for stage in stages {
            replies.push(self.reply(*stage, self.timeout_for(*stage)).await?);
        }
        if self.extensions.chunking {
            replies.push(self.reply(Stage::DataDone, self.timeouts.data_done).await?);
        }
        Ok(replies)
    }

    /// `BDAT <size> LAST` and the content as it is: no stuffing, no terminator (RFC 3030 §2).
    async fn write_bdat(&mut self, content: &[u8]) -> Result<(), SessionError> {
        let command = format!("BDAT {} LAST\r\n", content.len());
        self.write(command.as_bytes(), Stage::Body).await?;
        self.write(content, Stage::Body).await
    }

    /// After `354`: the dot-stuffed content and the terminator; returns the final reply.
    async fn send_data_body(&mut self, content: &[u8]) -> Result<RemoteReply, SessionError> {
        let stuffed = dot_stuff(content);
        self.write(&stuffed, Stage::Body).await?;
        self.reply(Stage::DataDone, self.timeouts.data_done).await
    }

    /// A `354` that must not be followed by a message (no recipient was accepted): end the
    /// empty message at once so the session stays in step. Other DATA replies need nothing.
    async fn abandon_data(&mut self, data: Option<&RemoteReply>) -> Result<(), SessionError> {
        if data.is_some_and(RemoteReply::is_intermediate) {
            self.write(b".\r\n", Stage::Body).await?;
            self.reply(Stage::DataDone, self.timeouts.data_done).await?;
        }
        Ok(())
    }

    fn timeout_for(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Data | Stage::Body => self.timeouts.data,
            Stage::DataDone => self.timeouts.data_done,
            _ => self.timeouts.command,
        }
    }

    async fn write(&mut self, bytes: &[u8], stage: Stage) -> Result<(), SessionError> {
        let timeout = self.timeout_for(stage).max(self.timeouts.data);
        let Client { stream, timer, .. } = self;
        let written = within(timer, timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await;
        match written {
            None => Err(SessionError::Timeout(stage)),
            Some(Err(error)) => Err(SessionError::Io { stage, error }),
            Some(Ok(())) => Ok(()),
        }
    }

    async fn reply(
        &mut self,
        stage: Stage,
        timeout: Duration,
    ) -> Result<RemoteReply, SessionError> {
        loop {
            match parse_reply(&self.buffer[self.start..]) {
                Ok(Some((reply, used))) => {
                    self.start += used;
                    if self.start == self.buffer.len() {
                        self.buffer.clear();
                        self.start = 0;
                    }
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(error) => return Err(SessionError::Protocol { stage, error }),
            }

            let filled = self.buffer.len();
            self.buffer.resize(filled + READ_CHUNK_BYTES, 0);
            let Client {
                stream,
                timer,
                buffer,
                ..
            } = self;
            let read = within(timer, timeout, stream.read(&mut buffer[filled..])).await;
            match read {
                None => return Err(SessionError::Timeout(stage)),
                Some(Err(error)) => return Err(SessionError::Io { stage, error }),
                Some(Ok(0)) => return Err(SessionError::Closed(stage)),
                Some(Ok(count)) => self.buffer.truncate(filled + count),
            }
        }
    }
}

/// Commands of one transaction, with the stage each belongs to.
#[derive(Default)]
struct Commands {
    text: String,
    lines: Vec<String>,
    stages: Vec<Stage>,
}

impl Commands {
    fn push(&mut self, stage: Stage, line: String) {
        self.text.push_str(&line);
        self.lines.push(line);
        self.stages.push(stage);
    }
}

/// The content as DATA carries it (RFC 5321 §4.5.2): a `.` doubled at the start of every line,
/// a final CRLF if the content lacks one, and the `.` line that ends the data.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 64 + 5);
    let mut line_start = 0;
    while line_start < content.len() {
        let line_end = memchr::memchr(b'\n', &content[line_start..])
            .map_or(content.len(), |newline| line_start + newline + 1);
        if content[line_start] == b'.' {
            out.push(b'.');
        }
        out.extend_from_slice(&content[line_start..line_end]);
        line_start = line_end;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// `future`, unless `timeout` passes first.
async fn within<F: Future>(timer: &impl Timer, timeout: Duration, future: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(future.await) }, async {
        timer.sleep(timeout).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(dot_stuff(b"a"), b"a\r\n.\r\n");
        assert_eq!(
            dot_stuff(b".a\r\n..b\r\nc.\r\n."),
            b"..a\r\n...b\r\nc.\r\n..\r\n.\r\n"
        );
    }

    #[test]
    fn preflight_refuses_what_the_hop_cannot_take() {
        let mut envelope = Envelope {
            smtputf8: true,
            ..Envelope::default()
        };
        let message = |envelope: &Envelope| {
            preflight(
                &Extensions {
                    size: Some(10),
                    ..Extensions::default()
                },
                &Message {
                    envelope,
                    recipients: &[],
                    content: b"0123456789",
                },
            )
            .map(|(status, _)| status)
        };
        assert_eq!(message(&envelope), Some("5.6.7"));
        envelope.smtputf8 = false;
        envelope.body = BodyType::EightBitMime;
        assert_eq!(message(&envelope), Some("5.6.3"));
        envelope.body = BodyType::SevenBit;
        assert_eq!(message(&envelope), None);
    }
}
