//! One SMTP server session of `sink`: a small, fast responder for the commands a relay or
//! `send` uses (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), with PIPELINING (RFC 2920:
//! replies to a pipelined group go out in one write, flushed before reading more and at 354).
//! DATA is decoded by the relay's own decoder (`postern::smtp::DataDecoder`), so only
//! `<CRLF>.<CRLF>` ends the data and unstuffing matches the relay's exactly. At end of data the
//! message is verified (`message::verify`), the fault plan is consulted, and the outcome is
//! counted. It owns no global state; counters and the id log belong to its thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use postern::smtp::{BodyFault, DataDecoder};

use super::{Fault, ThreadState};
use crate::dkim::DkimVerdict;
use crate::message::{verify, Verdict};
use crate::tls::{TlsMode, Wire};

/// Read buffer per session.
const INPUT_BYTES: usize = 64 * 1024;

/// Longest command line accepted; RFC 5321 §4.5.3.1.4 sets 512, extensions may add to it.
const COMMAND_LINE_MAX_BYTES: usize = 4096;

/// Text lines are not limited by the sink: it measures, and a relay's line policy is not its
/// business. Size is bounded so memory stays bounded.
const TEXT_LINE_MAX_BYTES: usize = usize::MAX;

enum Phase {
    Command,
    Data(DataDecoder),
}

struct Session {
    stream: Wire,
    input: Vec<u8>,
    start: usize,
    end: usize,
    output: Vec<u8>,
    body: Vec<u8>,
    greeted: bool,
    mail: bool,
    recipients: usize,
    /// Set while STARTTLS may still be offered.
    acceptor: Option<futures_rustls::TlsAcceptor>,
    state: Rc<RefCell<ThreadState>>,
}

/// Runs the server side of a TLS handshake on a plain stream.
async fn handshake(
    stream: &mut Wire,
    acceptor: Option<&futures_rustls::TlsAcceptor>,
) -> Result<(), ()> {
    let acceptor = acceptor.ok_or(())?;
    let plain = stream.take_plain().map_err(|_| ())?;
    let encrypted = acceptor.accept(plain).await.map_err(|_| ())?;
    *stream = Wire::Server(Box::new(encrypted));
    Ok(())
}

/// Why a session ends.
enum End {
    /// QUIT, or the client closed between transactions.
    Clean,
    /// The client vanished or broke the protocol inside a transaction.
    Aborted,
    /// Cut on purpose by `--drop` (counted as an injected drop, not as aborted).
    Dropped,
}

pub async fn serve(stream: TcpStream, state: Rc<RefCell<ThreadState>>) {
    let (timeout, tls_mode, acceptor) = {
        let state = state.borrow();
        let options = &state.options;
        (
            options.timeout,
            options.tls_mode,
            options.tls.clone().map(futures_rustls::TlsAcceptor::from),
        )
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let mut stream = Wire::Plain(stream);
    if tls_mode == TlsMode::Implicit {
        match handshake(&mut stream, acceptor.as_ref()).await {
            Ok(()) => {}
            Err(()) => {
                state.borrow_mut().report.tls_failures += 1;
                return;
            }
        }
    }
    let mut session = Session {
        stream,
        acceptor: if tls_mode == TlsMode::StartTls {
            acceptor
        } else {
            None
        },
        input: vec![0; INPUT_BYTES],
        start: 0,
        end: 0,
        output: Vec::with_capacity(1024),
        body: Vec::new(),
        greeted: false,
        mail: false,
        recipients: 0,
        state,
    };
    let end = session.run().await;
    if matches!(end, End::Aborted) {
        session.state.borrow_mut().report.aborted_transactions += 1;
    }
    let _ = session.stream.close().await;
}

impl Session {
    async fn run(&mut self) -> End {
        self.output
            .extend_from_slice(b"220 postern-loadgen-sink ESMTP ready\r\n");
        let mut phase = Phase::Command;
        loop {
            if self.start == self.end {
                if self.flush().await.is_err() {
                    return self.ended();
                }
                match self.read().await {
                    Ok(0) | Err(_) => return self.ended(),
                    Ok(_) => {}
                }
            }
            phase = match phase {
                Phase::Data(decoder) => match self.data(decoder).await {
                    Ok(Some(phase)) => phase,
                    Ok(None) => return End::Dropped,
                    Err(()) => return End::Aborted,
                },
                Phase::Command => match self.command_line().await {
                    Step::Continue(phase) => phase,
                    Step::NeedMore => {
                        if self.flush().await.is_err() {
                            return self.ended();
                        }
                        match self.read().await {
                            Ok(0) | Err(_) => return self.ended(),
                            Ok(_) => Phase::Command,
                        }
                    }
                    Step::Quit => {
                        let _ = self.flush().await;
                        return End::Clean;
                    }
                    Step::Abort => {
                        let _ = self.flush().await;
                        return End::Aborted;
                    }
                },
            };
        }
    }

    fn ended(&self) -> End {
        if self.mail {
            End::Aborted
        } else {
            End::Clean
        }
    }

    /// Handles one command line, if a complete one is buffered.
    async fn command_line(&mut self) -> Step {
        let pending = &self.input[self.start..self.end];
        let Some(newline) = memchr::memchr(b'\n', pending) else {
            if pending.len() >= COMMAND_LINE_MAX_BYTES {
                self.output
                    .extend_from_slice(b"500 5.5.2 line too long, closing\r\n");
                return Step::Abort;
            }
            return Step::NeedMore;
        };
        let line_end = self.start + newline + 1;
        let line = trim_crlf(&self.input[self.start..line_end]);
        let verb: [u8; 4] = match line.get(..4) {
            Some(verb) => {
                [verb[0], verb[1], verb[2], verb[3]].map(|octet| octet.to_ascii_uppercase())
            }
            None => *b"    ",
        };
        self.start = line_end;

        match &verb {
            b"EHLO" => {
                self.greeted = true;
                self.reset();
                self.output.extend_from_slice(
                    b"250-postern-loadgen-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n\
                      250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n",
                );
                if self.acceptor.is_some() {
                    self.output.extend_from_slice(b"250-STARTTLS\r\n");
                }
                self.output.extend_from_slice(b"250 SIZE\r\n");
            }
            b"STAR" if self.acceptor.is_some() && !self.stream.is_tls() => {
                self.output
                    .extend_from_slice(b"220 2.0.0 ready to start TLS\r\n");
                if self.flush().await.is_err() {
                    return Step::Abort;
                }
                // RFC 3207 §4.2: forget the session and anything pipelined after STARTTLS.
                self.start = 0;
                self.end = 0;
                self.greeted = false;
                self.reset();
                let acceptor = self.acceptor.take();
                if handshake(&mut self.stream, acceptor.as_ref())
                    .await
                    .is_err()
                {
                    self.state.borrow_mut().report.tls_failures += 1;
                    return Step::Quit;
                }
            }
            b"HELO" => {
                self.greeted = true;
                self.reset();
                self.output
                    .extend_from_slice(b"250 postern-loadgen-sink\r\n");
            }
            b"MAIL" if !self.greeted => self.output.extend_from_slice(b"503 5.5.1 EHLO first\r\n"),
            b"MAIL" if self.mail => self
                .output
                .extend_from_slice(b"503 5.5.1 nested MAIL command\r\n"),
            b"MAIL" => {
                self.mail = true;
                self.output.extend_from_slice(b"250 2.1.0 Ok\r\n");
            }
            b"RCPT" if !self.mail => self.output.extend_from_slice(b"503 5.5.1 MAIL first\r\n"),
            b"RCPT" => {
                self.recipients += 1;
                self.output.extend_from_slice(b"250 2.1.5 Ok\r\n");
            }
            b"DATA" if self.recipients == 0 => self
                .output
                .extend_from_slice(b"554 5.5.1 no valid recipients\r\n"),
            b"DATA" => {
                self.output
                    .extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                self.body.clear();
                let size_max = self.state.borrow().options.message_size_max_bytes;
                // The 354 must reach the client before it sends the body (RFC 2920 §3.1).
                if self.flush().await.is_err() {
                    return Step::Abort;
                }
                return Step::Continue(Phase::Data(DataDecoder::new(
                    TEXT_LINE_MAX_BYTES,
                    size_max,
                    true,
                )));
            }
            b"RSET" => {
                self.reset();
                self.output.extend_from_slice(b"250 2.0.0 Ok\r\n");
            }
            b"NOOP" => self.output.extend_from_slice(b"250 2.0.0 Ok\r\n"),
            b"QUIT" => {
                self.output.extend_from_slice(b"221 2.0.0 Bye\r\n");
                return Step::Quit;
            }
            // LIMITATION(L14): no BDAT (CHUNKING is not offered), so it lands here too.
            _ => self
                .output
                .extend_from_slice(b"502 5.5.2 command not implemented\r\n"),
        }
        Step::Continue(Phase::Command)
    }

    /// Feeds buffered input to the decoder; at end of data, answers. `Ok(None)`: connection cut
    /// on purpose (an injected drop).
    async fn data(&mut self, mut decoder: DataDecoder) -> Result<Option<Phase>, ()> {
        let (used, verdict) = decoder.decode(&self.input[self.start..self.end], &mut self.body);
        self.start += used;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let Some(verdict) = verdict else {
            return Ok(Some(Phase::Data(decoder)));
        };
        let body_bytes = decoder.body_bytes();
        self.reset();

        // Only the size limit refuses a body: bare line endings are accepted, lines are
        // unlimited and NULs are let through, since the sink measures rather than polices.
        if verdict == Err(BodyFault::TooBig) {
            self.output
                .extend_from_slice(b"552 5.3.4 message exceeds the sink's --size-max\r\n");
            return Ok(Some(Phase::Command));
        }

        let (fault, delay) = {
            let mut state = self.state.borrow_mut();
            (state.draw_fault(), state.options.delay)
        };
        if delay > Duration::ZERO {
            glommio::timer::sleep(delay).await;
        }
        match fault {
            Fault::Drop => {
                self.state.borrow_mut().report.injected_drops += 1;
                return Ok(None);
            }
            Fault::Temporary => {
                self.state.borrow_mut().report.injected_4xx += 1;
                self.output
                    .extend_from_slice(b"451 4.3.0 injected temporary failure\r\n");
                return Ok(Some(Phase::Command));
            }
            Fault::Permanent => {
                self.state.borrow_mut().report.injected_5xx += 1;
                self.output
                    .extend_from_slice(b"554 5.3.0 injected permanent failure\r\n");
                return Ok(Some(Phase::Command));
            }
            Fault::None => {}
        }

        let dkim = self.state.borrow().options.dkim.clone();
        if let Some(dkim) = dkim {
            let verdict = dkim.verify(&self.body).await;
            let report = &mut self.state.borrow_mut().report;
            match verdict {
                DkimVerdict::Pass => report.dkim_pass += 1,
                DkimVerdict::Fail => report.dkim_fail += 1,
                DkimVerdict::None => report.dkim_none += 1,
            }
        }
        self.state
            .borrow_mut()
            .accept(verify(&self.body), body_bytes);
        self.output.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
        Ok(Some(Phase::Command))
    }

    fn reset(&mut self) {
        self.mail = false;
        self.recipients = 0;
    }

    async fn flush(&mut self) -> Result<(), ()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.output).await;
        self.output.clear();
        result.map_err(|_| ())
    }

    /// Reads more input; keeps unparsed octets, compacting the buffer when it is full.
    async fn read(&mut self) -> std::io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.input.len() {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let read = self.stream.read(&mut self.input[self.end..]).await?;
        self.end += read;
        Ok(read)
    }
}

enum Step {
    Continue(Phase),
    NeedMore,
    Quit,
    Abort,
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl ThreadState {
    /// Counts one accepted message and logs its id.
    fn accept(&mut self, verdict: Verdict<'_>, body_bytes: u64) {
        self.report.accepted += 1;
        self.report.bytes += body_bytes;
        match verdict {
            Verdict::Intact { id } => {
                self.report.intact += 1;
                self.note_id(id, false);
            }
            Verdict::Corrupted { id } => {
                self.report.corrupted += 1;
                self.note_id(id, true);
            }
            Verdict::Unidentified => self.report.unidentified += 1,
        }
        self.shared
            .accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn note_id(&mut self, id: &str, corrupt: bool) {
        if self.shared.seen_before(id) {
            self.report.duplicates += 1;
        }
        self.ids.record(id, corrupt);
    }
}
