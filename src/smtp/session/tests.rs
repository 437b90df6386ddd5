//! Dialogue fixtures for the session: whole SMTP conversations fed as bytes, split in every
//! way a socket could split them, with the replies and events checked against the RFCs.

use std::net::SocketAddr;
use std::sync::Arc;

use super::*;
use crate::smtp::envelope::{BodyType, Notify, Recipient, Ret};
use crate::smtp::{Limits, SessionParams};

const EHLO: &str = "EHLO client.example\r\n";
const MAIL: &str = "MAIL FROM:<sender@origin.example>\r\n";
const RCPT: &str = "RCPT TO:<user@example.com>\r\n";

fn params() -> SessionParams {
    SessionParams {
        hostname: Arc::from("mx.example.net"),
        peer: "192.0.2.7:40000".parse::<SocketAddr>().expect("literal"),
        local: "192.0.2.1:25".parse::<SocketAddr>().expect("literal"),
        limits: Limits::default(),
        relay_allowed: false,
        local_domains: Arc::from(vec!["example.com".to_owned(), "*.corp.example".to_owned()]),
        starttls_available: false,
        tls_active: false,
        auth_available: false,
        auth_required: false,
    }
}

fn with_limits(change: impl FnOnce(&mut Limits)) -> SessionParams {
    let mut params = params();
    change(&mut params.limits);
    params
}

/// What a driver saw during one conversation.
#[derive(Debug, Default)]
struct Transcript {
    output: String,
    events: Vec<Event>,
    /// Bodies answered with `message_stored(Stored)`, in order.
    stored: Vec<Vec<u8>>,
    /// The envelope at each MessageComplete.
    envelopes: Vec<Envelope>,
    /// The `Received:` header of the first stored message.
    received: Option<String>,
    closed: bool,
}

impl Transcript {
    /// The code and enhanced status of every final reply line, e.g. `"250 2.1.0"`; replies
    /// without a status give the code alone.
    fn replies(&self) -> Vec<String> {
        self.output
            .split("\r\n")
            .filter(|line| line.as_bytes().get(3) == Some(&b' '))
            .map(|line| {
                let mut words = line.split(' ');
                let code = words.next().unwrap_or_default();
                match words.next() {
                    Some(status) if status.starts_with(|c: char| c.is_ascii_digit()) => {
                        format!("{code} {status}")
                    }
                    _ => code.to_owned(),
                }
            })
            .collect()
    }

    fn count(&self, event: Event) -> usize {
        self.events.iter().filter(|&&e| e == event).count()
    }
}

/// Drives a session as the shard driver does, feeding `input` in pieces of `piece` bytes.
fn converse(params: SessionParams, input: &[u8], piece: usize) -> Transcript {
    converse_verifying(params, input, piece, &mut |_| {
        panic!("no AUTH exchange was expected to complete")
    })
}

/// `converse`, with `verify` standing in for the control thread's verdict on AUTH credentials.
fn converse_verifying(
    params: SessionParams,
    input: &[u8],
    piece: usize,
    verify: &mut dyn FnMut(&crate::sasl::Credentials) -> crate::sasl::Verdict,
) -> Transcript {
    let mut session = Session::new(params);
    session.greet();
    let mut transcript = Transcript::default();
    let mut body = Vec::new();
    'pieces: for piece in input.chunks(piece.max(1)) {
        let mut offset = 0;
        loop {
            let (used, event) = session.feed(&piece[offset..], &mut body);
            offset += used;
            transcript.events.push(event);
            match event {
                Event::NeedInput => {
                    assert_eq!(
                        offset,
                        piece.len(),
                        "NeedInput before the input was used up"
                    );
                    break;
                }
                Event::MessageBegin => assert!(body.is_empty()),
                Event::MessageComplete => {
                    assert_eq!(session.phase(), Phase::Data);
                    let number = transcript.stored.len() + 1;
                    let queue_id = format!("Q{number}");
                    transcript.envelopes.push(session.envelope().clone());
                    if transcript.received.is_none() {
                        let date = "Thu, 1 Jan 2026 00:00:00 +0000";
                        transcript.received = Some(session.received_header(&queue_id, date));
                    }
                    transcript.stored.push(std::mem::take(&mut body));
                    session.message_stored(StoreOutcome::Stored { queue_id });
                }
                Event::MessageAborted => body.clear(),
                Event::Authenticate => {
                    let credentials = session.take_credentials().expect("credentials");
                    assert!(session.take_credentials().is_none(), "taken once");
                    let verdict = verify(&credentials);
                    session.authentication_result(verdict);
                }
                Event::StartTls => {
                    // RFC 3207 §4.2: the rest of what was read is dropped.
                    session.tls_established();
                    break;
                }
                Event::Close => {
                    assert!(session.wants_close());
                    transcript.closed = true;
                    break 'pieces;
                }
            }
        }
    }
    transcript.output = String::from_utf8_lossy(session.output()).into_owned();
    transcript
}

fn dialogue(parts: &[&str]) -> Vec<u8> {
    parts.concat().into_bytes()
}

#[test]
fn full_transaction() {
    let input = dialogue(&[
        EHLO,
        MAIL,
        RCPT,
        "DATA\r\n",
        "Subject: hi\r\n\r\nhello\r\n.\r\n",
        "QUIT\r\n",
    ]);
    let t = converse(params(), &input, usize::MAX);
    assert_eq!(
        t.replies(),
        [
            "220",
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    assert!(t.output.starts_with("220 mx.example.net ESMTP postern\r\n"));
    assert!(t
        .output
        .contains("250-mx.example.net greets [192.0.2.7]\r\n"));
    for keyword in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(
            t.output.contains(&format!("250-{keyword}\r\n")),
            "{keyword}"
        );
    }
    assert!(t.output.contains("250-CHUNKING\r\n250 DSN\r\n"));
    assert!(!t.output.contains("STARTTLS"));
    assert!(t.output.contains("250 2.0.0 Ok: queued as Q1\r\n"));
    assert_eq!(t.stored, [b"Subject: hi\r\n\r\nhello\r\n".to_vec()]);
    assert_eq!(
        t.events,
        [Event::MessageBegin, Event::MessageComplete, Event::Close]
    );
    assert!(t.closed);
    assert_eq!(t.envelopes[0].mail_from, "sender@origin.example");
    assert_eq!(t.envelopes[0].helo, "client.example");
}

#[test]
fn pipelined_input_splits_the_same_everywhere() {
    let input = dialogue(&[
        EHLO,
        MAIL,
        RCPT,
        "RCPT TO:<other@a.corp.example>\r\n",
        "DATA\r\n",
        "line one\r\n..dot\r\n.\r\n",
        "MAIL FROM:<>\r\n",
        RCPT,
        "BDAT 3\r\nabcBDAT 0 LAST\r\n",
        "NOOP\r\nQUIT\r\n",
    ]);
    let whole = converse(params(), &input, usize::MAX);
    assert_eq!(
        whole.stored,
        [b"line one\r\n.dot\r\n".to_vec(), b"abc".to_vec()]
    );
    assert!(whole.closed);
    for piece in [1, 2, 3, 5, 7, 13, 64] {
        let split = converse(params(), &input, piece);
        assert_eq!(split.output, whole.output, "pieces of {piece}");
        assert_eq!(split.stored, whole.stored, "pieces of {piece}");
    }
}

#[test]
fn bdat_chunks_and_zero_length_last() {
    let input = dialogue(&[EHLO, MAIL, RCPT, "BDAT 5\r\nhelloBDAT 0\r\nBDAT 0 LAST\r\n"]);
    let t = converse(params(), &input, usize::MAX);
    assert!(t.output.contains("250 2.0.0 5 octets received\r\n"));
    assert!(t.output.contains("250 2.0.0 0 octets received\r\n"));
    assert!(t.output.ends_with("250 2.0.0 Ok: queued as Q1\r\n"));
    assert_eq!(t.stored, [b"hello".to_vec()]);

    let empty = dialogue(&[EHLO, MAIL, RCPT, "BDAT 0 LAST\r\n"]);
    for piece in [1, usize::MAX] {
        let t = converse(params(), &empty, piece);
        assert_eq!(t.stored, [Vec::<u8>::new()]);
        assert_eq!(t.count(Event::MessageBegin), 1);
    }
}

#[test]
fn bdat_octets_are_never_commands() {
    let chunk = "hi\r\n.\r\nMAIL FROM:<evil@origin.example>\r\n";
    let bdat = format!("BDAT {} LAST\r\n{chunk}", chunk.len());
    let input = dialogue(&[EHLO, MAIL, RCPT, &bdat, "QUIT\r\n"]);
    for piece in [1, 4, usize::MAX] {
        let t = converse(params(), &input, piece);
        assert_eq!(t.stored, [chunk.as_bytes().to_vec()]);
        assert_eq!(t.replies().last().map(String::as_str), Some("221 2.0.0"));
        assert_eq!(t.count(Event::MessageComplete), 1);
    }
}

#[test]
fn bdat_without_recipients_still_swallows_its_octets() {
    let input = dialogue(&[EHLO, MAIL, "BDAT 6 LAST\r\nQUIT\r\n", "NOOP\r\n"]);
    let t = converse(params(), &input, usize::MAX);
    assert_eq!(
        t.replies(),
        ["220", "250", "250 2.1.0", "554 5.5.1", "250 2.0.0"]
    );
    assert!(!t.closed);
    assert_eq!(t.count(Event::MessageBegin), 0);
}

/// A full conversation where `variant` follows the first body line, then a hidden transaction,
/// then a second honest transaction.
fn smuggling_attempt(variant: &str) -> Vec<u8> {
    let smuggled = format!(
        "hello{variant}MAIL FROM:<evil@origin.example>\r\nRCPT TO:<victim@example.com>\r\n\
         DATA\r\nsmuggled\r\n.\r\n"
    );
    dialogue(&[
        EHLO,
        MAIL,
        RCPT,
        "DATA\r\n",
        &smuggled,
        MAIL,
        RCPT,
        "DATA\r\nsecond\r\n.\r\n",
    ])
}

const SMUGGLING_VARIANTS: [&str; 6] =
    ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\r", "\r\n.\n", "\r.\r\n"];

#[test]
fn smuggling_variants_are_refused_by_default() {
    for variant in SMUGGLING_VARIANTS {
        for piece in [1, 3, usize::MAX] {
            let t = converse(params(), &smuggling_attempt(variant), piece);
            assert_eq!(
                t.stored,
                [b"second\r\n".to_vec()],
                "{variant:?} in pieces of {piece}"
            );
            assert_eq!(t.count(Event::MessageComplete), 1);
            assert_eq!(t.count(Event::MessageAborted), 1);
            assert!(t
                .output
                .contains("550 5.6.0 message refused: bare CR or LF"));
        }
    }
}

#[test]
fn smuggling_variants_stay_one_message_when_lenient() {
    let lenient = || with_limits(|l| l.accept_bare_line_endings = true);
    for variant in SMUGGLING_VARIANTS {
        let t = converse(lenient(), &smuggling_attempt(variant), usize::MAX);
        assert_eq!(t.stored.len(), 2, "{variant:?}");
        let first = String::from_utf8_lossy(&t.stored[0]);
        assert!(first.contains("MAIL FROM:<evil@origin.example>") && first.contains("smuggled"));
        assert_eq!(t.stored[1], b"second\r\n");
    }
}

#[test]
fn oversize_declared_with_size() {
    let params = with_limits(|l| l.message_size_max_bytes = 100);
    let input = dialogue(&[EHLO, "MAIL FROM:<a@origin.example> SIZE=101\r\n", MAIL]);
    let t = converse(params, &input, usize::MAX);
    assert!(t.output.contains("SIZE 100\r\n"));
    assert_eq!(t.replies()[2..], ["552 5.3.4", "250 2.1.0"]);
}

#[test]
fn oversize_while_streaming_data() {
    let params = || with_limits(|l| l.message_size_max_bytes = 100);
    let big = format!("{}\r\n.\r\n", "x".repeat(150));
    let input = dialogue(&[
        EHLO,
        MAIL,
        RCPT,
        "DATA\r\n",
        &big,
        MAIL,
        RCPT,
        "DATA\r\nok\r\n.\r\n",
    ]);
    for piece in [7, usize::MAX] {
        let t = converse(params(), &input, piece);
        assert!(t
            .output
            .contains("552 5.3.4 message refused: message size exceeds"));
        assert_eq!(t.stored, [b"ok\r\n".to_vec()]);
        assert_eq!(t.count(Event::MessageAborted), 1);
    }
}

#[test]
fn oversize_bdat_fails_the_transaction() {
    let params = || with_limits(|l| l.message_size_max_bytes = 10);
    // Too big in the first chunk: no message ever begins.
    let input = dialogue(&[
        EHLO,
        MAIL,
        RCPT,
        "BDAT 11\r\n01234567890BDAT 1 LAST\r\nx",
        "RSET\r\n",
    ]);
    let t = converse(params(), &input, usize::MAX);
    assert_eq!(t.replies()[4..], ["552 5.3.4", "503 5.5.1", "250 2.0.0"]);
    assert_eq!(t.count(Event::MessageBegin), 0);
    assert_eq!(t.count(Event::MessageAborted), 0);

    // Too big in a later chunk: the begun message is aborted; a new MAIL starts over.
    let input = dialogue(&[
        EHLO,
        MAIL,
        RCPT,
        "BDAT 6\r\n012345BDAT 6\r\n012345",
        MAIL,
        RCPT,
    ]);
    let t = converse(params(), &input, 1);
    assert_eq!(
        t.replies()[4..],
        ["250 2.0.0", "552 5.3.4", "250 2.1.0", "250 2.1.5"]
    );
    assert_eq!(t.count(Event::MessageBegin), 1);
    assert_eq!(t.count(Event::MessageAborted), 1);
}

#[test]
fn data_after_bdat_and_rset_between_chunks() {
    let input = dialogue(&[EHLO, MAIL, RCPT, "BDAT 2\r\nabDATA\r\nRSET\r\n", MAIL, RCPT]);
    let t = converse(params(), &input, usize::MAX);
    assert_eq!(
        t.replies()[4..],
        [
            "250 2.0.0",
            "503 5.5.1",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.1.5"
        ]
    );
    assert_eq!(
        t.events,
        [Event::MessageBegin, Event::MessageAborted, Event::NeedInput]
    );
}

#[test]
fn command_line_too_long_is_bounded_and_recovers() {
    let long = format!("NOOP {}\r\n", "x".repeat(600));
    let input = dialogue(&[&long, "NOOP\r\n"]);
    for piece in [1, 100, usize::MAX] {
        let t = converse(params(), &input, piece);
        assert_eq!(
            t.replies(),
            ["220", "500 5.5.2", "250 2.0.0"],
            "pieces of {piece}"
        );
    }
    // Exactly at the limit, CRLF included, is fine.
    let fits = format!("NOOP {}\r\n", "x".repeat(512 - 7));
    assert_eq!(
        converse(params(), fits.as_bytes(), 9).replies(),
        ["220", "250 2.0.0"]
    );

    let mut session = Session::new(params());
    session.greet();
    let (used, event) = session.feed(&long.as_bytes()[..400], &mut Vec::new());
    assert_eq!((used, event), (400, Event::NeedInput));
    assert_eq!(
        session.line.bytes.capacity(),
        512,
        "one allocation of the limit"
    );
    session.feed(&long.as_bytes()[400..600], &mut Vec::new());
    // Past the limit the partial line is dropped, not kept.
    assert!(session.line.overflowed && session.line.bytes.capacity() == 0);
}

#[test]
fn text_line_too_long_and_nul() {
    let long = format!("{}\r\n.\r\n", "y".repeat(1000));
    let input = dialogue(&[
        EHLO,
        MAIL,
        RCPT,
        "DATA\r\n",
        &long,
        MAIL,
        RCPT,
        "DATA\r\na\0b\r\n.\r\n",
    ]);
    let t = converse(params(), &input, usize::MAX);
    assert!(t.output.contains(
        "550 5.6.0 message refused: text line longer than 1000 octets (RFC 5321 section \
         4.5.3.1.6)\r\n"
    ));
    assert!(t.output.contains("550 5.6.0 message refused: NUL octet"));
    assert!(t.stored.is_empty());
    assert_eq!(t.count(Event::MessageAborted), 2);

    let t = converse(params(), b"NO\0OP\r\n", usize::MAX);
    assert_eq!(t.replies(), ["220", "500 5.5.2"]);
}

#[test]
fn relay_policy() {
    let input = dialogue(&[
        EHLO,
        MAIL,
        "RCPT TO:<user@EXAMPLE.com>\r\n",
        "RCPT TO:<user@deep.a.corp.example>\r\n",
        "RCPT TO:<user@elsewhere.example>\r\n",
        "RCPT TO:<Postmaster>\r\n",
    ]);
    let t = converse(params(), &input, usize::MAX);
    assert_eq!(
        t.replies()[3..],
        ["250 2.1.5", "250 2.1.5", "554 5.7.1", "250 2.1.5"]
    );
    assert!(t
        .output
        .contains("554 5.7.1 <user@elsewhere.example>: relay access denied\r\n"));

    let mut relaying = params();
    relaying.relay_allowed = true;
    let t = converse(relaying, &input, usize::MAX);
    assert_eq!(
        t.replies()[3..],
        ["250 2.1.5", "250 2.1.5", "250 2.1.5", "250 2.1.5"]
    );
}

#[test]
fn recipients_max() {
    let params = with_limits(|l| l.recipients_max = 2);
    let input = dialogue(&[EHLO, MAIL, RCPT, RCPT, RCPT, "DATA\r\nx\r\n.\r\n"]);
    let t = converse(params, &input, usize::MAX);
    assert_eq!(
        t.replies()[3..],
        ["250 2.1.5", "250 2.1.5", "452 4.5.3", "354", "250 2.0.0"]
    );
    assert_eq!(t.envelopes[0].rcpt_to.len(), 2);
}

#[test]
fn bad_commands_max_closes() {
    let params = with_limits(|l| l.bad_commands_max = 3);
    let input = dialogue(&[
        "FOO\r\n",
        "NOOP\r\n",
        "MAIL FROM:<a@b.example>\r\n",
        "BAR\r\n",
        "NOOP\r\n",
    ]);
    let t = converse(params, &input, usize::MAX);
    assert_eq!(
        t.replies(),
        [
            "220",
            "500 5.5.2",
            "250 2.0.0",
            "503 5.5.1",
            "500 5.5.2",
            "421 4.7.0"
        ]
    );
    assert!(t.closed);
}

#[test]
fn after_close_everything_is_swallowed() {
    let mut session = Session::new(params());
    session.greet();
    let (used, event) = session.feed(b"QUIT\r\nNOOP\r\n", &mut Vec::new());
    assert_eq!((used, event), (12, Event::Close));
    assert_eq!(
        session.feed(b"NOOP\r\n", &mut Vec::new()),
        (6, Event::Close)
    );
    assert!(session
        .output()
        .ends_with(b"221 2.0.0 mx.example.net closing connection\r\n"));
}

#[test]
fn smtputf8_addresses() {
    let utf8_rcpt = "RCPT TO:<jöran@example.com>\r\n";
    let with = dialogue(&[
        EHLO,
        "MAIL FROM:<ünï@origin.example> SMTPUTF8\r\n",
        utf8_rcpt,
    ]);
    let t = converse(params(), &with, usize::MAX);
    assert_eq!(t.replies()[2..], ["250 2.1.0", "250 2.1.5"]);

    let without = dialogue(&[EHLO, "MAIL FROM:<ünï@origin.example>\r\n", MAIL, utf8_rcpt]);
    let t = converse(params(), &without, usize::MAX);
    assert_eq!(t.replies()[2..], ["553 5.6.7", "250 2.1.0", "553 5.6.7"]);

    let t = converse(
        params(),
        &dialogue(&[EHLO, MAIL, "RCPT TO:<a\u{ff}@x>\r\n"]),
        1,
    );
    assert_eq!(t.replies()[3], "553 5.6.7");
    let invalid = [
        dialogue(&[EHLO, MAIL]),
        b"RCPT TO:<a\xff@example.com>\r\n".to_vec(),
    ]
    .concat();
    assert_eq!(
        converse(params(), &invalid, usize::MAX).replies()[3],
        "501 5.1.3"
    );
}

#[test]
fn esmtp_parameters_land_in_the_envelope() {
    let input = dialogue(&[
        EHLO,
        "MAIL FROM:<s@origin.example> SIZE=20 BODY=8BITMIME RET=HDRS ENVID=id+2B1 AUTH=<>\r\n",
        "RCPT TO:<a@example.com> NOTIFY=FAILURE,DELAY ORCPT=rfc822;a@example.com\r\n",
        "RCPT TO:<b@example.com> NOTIFY=NEVER\r\n",
        "DATA\r\nx\r\n.\r\n",
    ]);
    let t = converse(params(), &input, usize::MAX);
    let envelope = &t.envelopes[0];
    assert_eq!(envelope.body, BodyType::EightBitMime);
    assert_eq!(envelope.declared_size, Some(20));
    assert_eq!(envelope.ret, Some(Ret::Headers));
    assert_eq!(envelope.envid.as_deref(), Some("id+1"));
    assert!(!envelope.smtputf8);
    assert_eq!(
        envelope.rcpt_to,
        [
            Recipient {
                address: "a@example.com".into(),
                notify: Some(Notify {
                    failure: true,
                    delay: true,
                    ..Notify::default()
                }),
                orcpt: Some("rfc822;a@example.com".into()),
            },
            Recipient {
                address: "b@example.com".into(),
                notify: Some(Notify {
                    never: true,
                    ..Notify::default()
                }),
                orcpt: None,
            },
        ]
    );
    let received = t.received.expect("one message");
    assert!(
        received.contains("with ESMTP id Q1;\r\n\tThu, 1 Jan 2026"),
        "{received}"
    );
}

#[test]
fn helo_has_no_extensions() {
    let input = dialogue(&[
        "HELO client.example\r\n",
        "MAIL FROM:<a@origin.example> BODY=8BITMIME\r\n",
        MAIL,
        "RCPT TO:<user@example.com> NOTIFY=NEVER\r\n",
        RCPT,
        "DATA\r\nx\r\n.\r\n",
    ]);
    let t = converse(params(), &input, usize::MAX);
    assert!(t.output.contains("\r\n250 mx.example.net\r\n"));
    assert_eq!(
        t.replies()[2..],
        [
            "555 5.5.4",
            "250 2.1.0",
            "555 5.5.4",
            "250 2.1.5",
            "354",
            "250 2.0.0"
        ]
    );
    let received = t.received.expect("one message");
    assert!(received.starts_with("Received: from client.example ([192.0.2.7])\r\n"));
    assert!(received.contains("with SMTP id Q1\r\n\tfor <user@example.com>; Thu"));
}

#[test]
fn sequence_errors() {
    let input = dialogue(&[
        MAIL,
        EHLO,
        RCPT,
        "DATA\r\n",
        MAIL,
        MAIL,
        "DATA\r\n",
        "EHLO\r\n",
        "EHLO again.example\r\n",
        RCPT,
    ]);
    let t = converse(params(), &input, usize::MAX);
    assert_eq!(
        t.replies(),
        [
            "220",
            "503 5.5.1",
            "250",
            "503 5.5.1",
            "503 5.5.1",
            "250 2.1.0",
            "503 5.5.1",
            "554 5.5.1",
            "501 5.5.4",
            "250",
            "503 5.5.1"
        ]
    );
}

#[test]
fn informational_verbs() {
    let input = dialogue(&[
        "VRFY root\r\n",
        "EXPN staff\r\n",
        "HELP\r\n",
        "NOOP hello\r\n",
        "RSET\r\n",
        "AUTH PLAIN AGFAAGI=\r\n",
        "STARTTLS\r\n",
        "QUIT\r\n",
    ]);
    let t = converse(params(), &input, usize::MAX);
    assert_eq!(
        t.replies(),
        [
            "220",
            "252 2.5.2",
            "502 5.5.1",
            "214 2.0.0",
            "250 2.0.0",
            "250 2.0.0",
            "502 5.5.1",
            "502 5.5.1",
            "221 2.0.0"
        ]
    );
}

#[test]
fn bare_lf_ends_command_lines() {
    let t = converse(
        params(),
        b"EHLO c.example\nMAIL FROM:<a@b.example>\nNOOP\r\n",
        1,
    );
    assert_eq!(t.replies()[2..], ["250 2.1.0", "250 2.0.0"]);
}

#[test]
fn early_talker_is_refused() {
    let mut session = Session::new(params());
    session.refuse_early_talker();
    assert!(session.wants_close());
    assert_eq!(
        session.feed(b"EHLO x\r\n", &mut Vec::new()),
        (8, Event::Close)
    );
    assert_eq!(
        session.output(),
        b"554 5.5.1 mx.example.net protocol error: talked before the greeting\r\n"
    );
}

#[test]
fn starttls_advertised_and_resets() {
    let mut offering = params();
    offering.starttls_available = true;
    let mut session = Session::new(offering);
    session.greet();
    let input = b"EHLO c.example\r\nSTARTTLS\r\nMAIL FROM:<injected@b.example>\r\n";
    let (used, event) = session.feed(input, &mut Vec::new());
    assert_eq!((used, event), (26, Event::StartTls));
    let output = String::from_utf8_lossy(session.output()).into_owned();
    assert!(output.contains("250 STARTTLS\r\n"));
    assert!(output.ends_with("220 2.0.0 Ready to start TLS\r\n"));
    session.consume_output(session.output().len());

    session.tls_established();
    let (_, event) = session.feed(
        b"MAIL FROM:<a@b.example>\r\nEHLO c.example\r\n",
        &mut Vec::new(),
    );
    assert_eq!(event, Event::NeedInput);
    let output = String::from_utf8_lossy(session.output()).into_owned();
    assert!(output.starts_with("503 5.5.1 send EHLO or HELO first\r\n"));
    assert!(!output.contains("STARTTLS"));
    assert!(output.ends_with("250 DSN\r\n"));
    session.consume_output(session.output().len());

    session.feed(b"STARTTLS\r\n", &mut Vec::new());
    assert_eq!(session.output(), b"502 5.5.1 STARTTLS not offered\r\n");
}

#[test]
fn starttls_needs_ehlo_and_no_arguments() {
    let mut offering = params();
    offering.starttls_available = true;
    let input = dialogue(&[
        "STARTTLS\r\n",
        EHLO,
        "STARTTLS now\r\n",
        MAIL,
        "STARTTLS\r\n",
    ]);
    let t = converse(offering, &input, usize::MAX);
    assert_eq!(
        t.replies(),
        [
            "220",
            "503 5.5.1",
            "250",
            "501 5.5.4",
            "250 2.1.0",
            "503 5.5.1"
        ]
    );
}

#[test]
fn implicit_tls_is_esmtps_without_starttls() {
    let mut implicit = params();
    implicit.starttls_available = true;
    implicit.tls_active = true;
    let input = dialogue(&[EHLO, MAIL, RCPT, "DATA\r\nx\r\n.\r\n"]);
    let t = converse(implicit, &input, usize::MAX);
    assert!(!t.output.contains("STARTTLS"));
    assert!(t.received.expect("stored").contains("with ESMTPS id Q1"));
}

#[test]
fn timeouts_and_shutdown() {
    let mut session = Session::new(params());
    session.greet();
    session.feed(
        dialogue(&[EHLO, MAIL, RCPT, "DATA\r\npartial"]).as_slice(),
        &mut Vec::new(),
    );
    let mut body = Vec::new();
    assert_eq!(session.feed(b"", &mut body), (0, Event::NeedInput));
    assert_eq!(session.phase(), Phase::Data);
    session.timed_out();
    assert!(session.wants_close());
    assert!(session
        .output()
        .ends_with(b"421 4.4.2 mx.example.net timeout exceeded, closing connection\r\n"));
    assert_eq!(session.feed(b".\r\n", &mut body), (3, Event::Close));

    // While a message is being stored, the 421 waits for the store's answer.
    let mut session = Session::new(params());
    session.greet();
    let input = dialogue(&[EHLO, MAIL, RCPT, "DATA\r\nx\r\n.\r\n"]);
    let mut body = Vec::new();
    assert_eq!(session.feed(&input, &mut body).1, Event::MessageBegin);
    assert_eq!(
        session.feed(b"x\r\n.\r\n", &mut body).1,
        Event::MessageComplete
    );
    session.shutting_down();
    assert!(!session.wants_close());
    session.message_stored(StoreOutcome::TemporaryFailure);
    assert!(session.wants_close());
    assert!(session.output().ends_with(
        b"451 4.3.0 temporary failure storing the message, try again later\r\n\
          421 4.3.2 mx.example.net shutting down, try again later\r\n"
    ));
}

#[test]
fn store_failures_reset_the_transaction() {
    let mut session = Session::new(params());
    session.greet();
    let mut body = Vec::new();
    let input = dialogue(&[EHLO, MAIL, RCPT, "DATA\r\nx\r\n.\r\n", RCPT]);
    let (used, event) = session.feed(&input, &mut body);
    assert_eq!(event, Event::MessageBegin);
    let (more, event) = session.feed(&input[used..], &mut body);
    assert_eq!(event, Event::MessageComplete);
    session.message_stored(StoreOutcome::InsufficientStorage);
    assert_eq!(session.envelope().helo, "client.example");
    assert!(session.envelope().rcpt_to.is_empty());
    session.feed(&input[used + more..], &mut body);
    assert!(session.output().ends_with(
        b"452 4.3.1 insufficient system storage, try again later\r\n503 5.5.1 send MAIL first\r\n"
    ));
}

#[test]
fn a_full_store_refuses_new_transactions_with_452() {
    let mut session = Session::new(params());
    session.greet();
    let mut body = Vec::new();
    let mut feed = |session: &mut Session, line: &str| {
        let (used, _) = session.feed(line.as_bytes(), &mut body);
        assert_eq!(used, line.len());
    };

    feed(&mut session, EHLO);
    feed(&mut session, MAIL);
    session.set_storage_full(true);
    feed(&mut session, RCPT);
    feed(&mut session, "RSET\r\n");
    feed(&mut session, MAIL);
    session.set_storage_full(false);
    feed(&mut session, MAIL);
    feed(&mut session, RCPT);

    let output = String::from_utf8_lossy(session.output()).into_owned();
    let finals: Vec<&str> = output
        .split("\r\n")
        .filter(|line| line.as_bytes().get(3) == Some(&b' '))
        .map(|line| line.get(..9).unwrap_or(line))
        .collect();
    assert_eq!(
        finals[2..],
        [
            "250 2.1.0",
            "452 4.3.1",
            "250 2.0.0",
            "452 4.3.1",
            "250 2.1.0",
            "250 2.1.5"
        ]
    );
}

#[test]
fn a_dmarc_rejection_is_550_5_7_1_and_the_session_goes_on() {
    let mut session = Session::new(params());
    assert!(!session.is_trusted());
    session.greet();
    let mut body = Vec::new();
    let input = dialogue(&[EHLO, MAIL, RCPT, "DATA\r\nx\r\n.\r\n", MAIL]);
    let (used, event) = session.feed(&input, &mut body);
    assert_eq!(event, Event::MessageBegin);
    let (more, event) = session.feed(&input[used..], &mut body);
    assert_eq!(event, Event::MessageComplete);
    session.message_stored(StoreOutcome::DmarcRejected);
    session.feed(&input[used + more..], &mut body);
    let output = String::from_utf8_lossy(session.output()).into_owned();
    assert!(
        output.ends_with(
            "550 5.7.1 message rejected: the sender's DMARC policy is reject and it failed\r\n\
             250 2.1.0 Ok\r\n"
        ),
        "{output}"
    );

    let mut trusted = params();
    trusted.relay_allowed = true;
    assert!(Session::new(trusted).is_trusted());
}

mod auth {
    //! AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN: every reply code of the exchange.

    use super::*;
    use crate::sasl::{Credentials, Verdict};

    /// `\0alice\0secret`
    const PLAIN_ALICE: &str = "AGFsaWNlAHNlY3JldA==";
    /// `alice` and `secret`
    const LOGIN_ALICE: &str = "YWxpY2U=";
    const LOGIN_SECRET: &str = "c2VjcmV0";

    fn auth_params(tls_active: bool) -> SessionParams {
        SessionParams {
            auth_available: true,
            tls_active,
            ..params()
        }
    }

    /// Accepts alice/secret, refuses everything else; records what it saw.
    fn alice_only(
        seen: &mut Vec<(Option<String>, String, String)>,
    ) -> impl FnMut(&Credentials) -> Verdict + '_ {
        move |credentials| {
            seen.push((
                credentials.authorization_identity.clone(),
                credentials.username.clone(),
                credentials.password.to_string(),
            ));
            if credentials.username == "alice" && credentials.password.as_str() == "secret" {
                Verdict::Accepted
            } else {
                Verdict::Rejected
            }
        }
    }

    fn run(
        params: SessionParams,
        parts: &[&str],
    ) -> (Transcript, Vec<(Option<String>, String, String)>) {
        let mut seen = Vec::new();
        let input = dialogue(parts);
        let transcript = converse_verifying(
            params.clone(),
            &input,
            usize::MAX,
            &mut alice_only(&mut seen),
        );
        // Every split of the input must give the same replies and the same credentials.
        for piece in [1, 3, 7] {
            let mut again = Vec::new();
            let split =
                converse_verifying(params.clone(), &input, piece, &mut alice_only(&mut again));
            assert_eq!(split.replies(), transcript.replies(), "piece {piece}");
            assert_eq!(again, seen, "piece {piece}");
        }
        (transcript, seen)
    }

    #[test]
    fn advertised_only_under_tls_and_538_before_it() {
        let plain_line = format!("AUTH PLAIN {PLAIN_ALICE}\r\n");
        let (t, seen) = run(auth_params(false), &[EHLO, &plain_line, "AUTH LOGIN\r\n"]);
        assert!(!t.output.contains("AUTH PLAIN LOGIN"));
        assert_eq!(t.replies(), ["220", "250", "538 5.7.11", "538 5.7.11"]);
        assert!(t
            .output
            .contains("538 5.7.11 Encryption required for requested authentication mechanism\r\n"));
        assert!(seen.is_empty());

        let (t, _) = run(auth_params(true), &[EHLO]);
        assert!(
            t.output.contains("250-AUTH PLAIN LOGIN\r\n")
                || t.output.contains("250 AUTH PLAIN LOGIN\r\n")
        );

        let (t, _) = run(params(), &[EHLO, &plain_line]);
        assert!(!t.output.contains("AUTH PLAIN"));
        assert_eq!(t.replies(), ["220", "250", "502 5.5.1"]);
    }

    #[test]
    fn plain_with_initial_response_grants_relay_and_esmtpsa() {
        let plain_line = format!("AUTH PLAIN {PLAIN_ALICE}\r\n");
        let (t, seen) = run(
            auth_params(true),
            &[
                EHLO,
                &plain_line,
                "MAIL FROM:<alice@origin.example> AUTH=alice@origin.example\r\n",
                "RCPT TO:<someone@elsewhere.example>\r\n",
                "DATA\r\nhi\r\n.\r\n",
            ],
        );
        assert_eq!(
            t.replies(),
            [
                "220",
                "250",
                "235 2.7.0",
                "250 2.1.0",
                "250 2.1.5",
                "354",
                "250 2.0.0"
            ]
        );
        assert!(t.output.contains("235 2.7.0 Authentication successful\r\n"));
        assert_eq!(seen, [(None, "alice".to_owned(), "secret".to_owned())]);
        let received = t.received.expect("a message was stored");
        assert!(received.contains(" with ESMTPSA id Q1"), "{received}");
        // RFC 4954 §5: an authenticated client's AUTH= is believed and carried on.
        assert_eq!(t.envelopes[0].auth.as_deref(), Some("alice@origin.example"));
    }

    #[test]
    fn an_untrusted_clients_auth_parameter_becomes_empty() {
        let (t, _) = run(
            auth_params(true),
            &[
                EHLO,
                "MAIL FROM:<x@origin.example> AUTH=boss@example.com\r\n",
                "RCPT TO:<user@example.com>\r\n",
                "DATA\r\nhi\r\n.\r\n",
            ],
        );
        assert_eq!(t.replies().last().map(String::as_str), Some("250 2.0.0"));
        assert_eq!(t.envelopes[0].auth.as_deref(), Some("<>"));
    }

    #[test]
    fn unauthenticated_relay_is_still_denied() {
        let (t, _) = run(
            auth_params(true),
            &[EHLO, MAIL, "RCPT TO:<someone@elsewhere.example>\r\n"],
        );
        assert_eq!(t.replies(), ["220", "250", "250 2.1.0", "554 5.7.1"]);
    }

    #[test]
    fn plain_without_initial_response_gets_an_empty_challenge() {
        let response = format!("{PLAIN_ALICE}\r\n");
        let (t, seen) = run(auth_params(true), &[EHLO, "AUTH PLAIN\r\n", &response]);
        assert_eq!(t.replies(), ["220", "250", "334", "235 2.7.0"]);
        assert!(t.output.contains("\r\n334 \r\n"));
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn login_prompts_for_username_then_password() {
        let user = format!("{LOGIN_ALICE}\r\n");
        let password = format!("{LOGIN_SECRET}\r\n");
        let (t, seen) = run(
            auth_params(true),
            &[EHLO, "auth login\r\n", &user, &password],
        );
        assert_eq!(t.replies(), ["220", "250", "334", "334", "235 2.7.0"]);
        assert!(t
            .output
            .contains("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"));
        assert_eq!(seen, [(None, "alice".to_owned(), "secret".to_owned())]);

        // Some clients send the user name as an initial response.
        let with_user = format!("AUTH LOGIN {LOGIN_ALICE}\r\n");
        let (t, _) = run(auth_params(true), &[EHLO, &with_user, &password]);
        assert_eq!(t.replies(), ["220", "250", "334", "235 2.7.0"]);
    }

    #[test]
    fn exchange_errors() {
        let (t, seen) = run(
            auth_params(true),
            &[
                EHLO,
                "AUTH LOGIN\r\n",
                "*\r\n",
                "AUTH PLAIN\r\n",
                "not base64!\r\n",
                "AUTH PLAIN =\r\n",
                "AUTH CRAM-MD5\r\n",
                "AUTH PLAIN AGFsaWNl\r\n",
                "NOOP\r\n",
            ],
        );
        assert_eq!(
            t.replies(),
            [
                "220",
                "250",
                "334",
                "501 5.0.0",
                "334",
                "501 5.5.2",
                "501 5.5.2",
                "504 5.5.4",
                "501 5.5.2",
                "250 2.0.0"
            ]
        );
        assert!(seen.is_empty(), "malformed exchanges are never verified");
    }

    #[test]
    fn sequence_errors() {
        let plain_line = format!("AUTH PLAIN {PLAIN_ALICE}\r\n");
        let (t, _) = run(auth_params(true), &["HELO client.example\r\n", &plain_line]);
        assert_eq!(t.replies(), ["220", "250", "503 5.5.1"]);

        let (t, _) = run(auth_params(true), &[EHLO, MAIL, &plain_line]);
        assert_eq!(t.replies(), ["220", "250", "250 2.1.0", "503 5.5.1"]);

        let (t, _) = run(auth_params(true), &[EHLO, &plain_line, &plain_line]);
        assert_eq!(t.replies(), ["220", "250", "235 2.7.0", "503 5.5.1"]);
    }

    #[test]
    fn failures_answer_535_then_close_with_421() {
        // `\0alice\0wrong`
        let wrong = "AUTH PLAIN AGFsaWNlAHdyb25n\r\n";
        let (t, seen) = run(auth_params(true), &[EHLO, wrong, wrong, wrong, "NOOP\r\n"]);
        assert_eq!(
            t.replies(),
            [
                "220",
                "250",
                "535 5.7.8",
                "535 5.7.8",
                "535 5.7.8",
                "421 4.7.0"
            ]
        );
        assert!(t
            .output
            .contains("535 5.7.8 Authentication credentials invalid\r\n"));
        assert!(t.closed);
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn rate_limited_and_unavailable_are_temporary() {
        let plain_line = format!("AUTH PLAIN {PLAIN_ALICE}\r\n");
        for verdict in [Verdict::RateLimited, Verdict::Unavailable] {
            let input = dialogue(&[EHLO, &plain_line, "NOOP\r\n"]);
            let t = converse_verifying(auth_params(true), &input, usize::MAX, &mut |_| verdict);
            assert_eq!(
                t.replies(),
                ["220", "250", "454 4.7.0", "250 2.0.0"],
                "{verdict:?}"
            );
        }
    }

    #[test]
    fn plain_authorization_identity_reaches_the_verifier() {
        // `bob\0alice\0secret`: alice asks to act as bob.
        let (_, seen) = run(
            auth_params(true),
            &[EHLO, "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n"],
        );
        assert_eq!(
            seen,
            [(
                Some("bob".to_owned()),
                "alice".to_owned(),
                "secret".to_owned()
            )]
        );
    }

    #[test]
    fn required_auth_refuses_mail_with_530_until_it_succeeds() {
        let params = SessionParams {
            auth_required: true,
            ..auth_params(true)
        };
        let plain_line = format!("AUTH PLAIN {PLAIN_ALICE}\r\n");
        let input = dialogue(&[EHLO, MAIL, &plain_line, MAIL]);
        let t = converse_verifying(params, &input, usize::MAX, &mut alice_only(&mut Vec::new()));
        assert_eq!(
            t.replies(),
            ["220", "250", "530 5.7.0", "235 2.7.0", "250 2.1.0"]
        );
        assert!(t.output.contains("530 5.7.0 Authentication required\r\n"));
    }

    #[test]
    fn pipelined_input_waits_for_the_verdict() {
        let mut session = Session::new(auth_params(true));
        session.greet();
        let mut body = Vec::new();
        let (used, event) = session.feed(EHLO.as_bytes(), &mut body);
        assert_eq!((used, event), (EHLO.len(), Event::NeedInput));

        let auth_line = format!("AUTH PLAIN {PLAIN_ALICE}\r\n");
        let input = format!("{auth_line}{MAIL}");
        let (used, event) = session.feed(input.as_bytes(), &mut body);
        assert_eq!((used, event), (auth_line.len(), Event::Authenticate));
        assert!(!String::from_utf8_lossy(session.output()).contains("2.1.0"));
        assert_eq!(session.phase(), Phase::Command);

        let credentials = session.take_credentials().expect("credentials");
        assert!(!format!("{credentials:?}").contains("secret"));
        assert!(!session.is_trusted());
        session.authentication_result(Verdict::Accepted);
        assert_eq!(session.authenticated_user(), Some("alice"));
        assert!(
            session.is_trusted(),
            "authenticated mail is not verified (SPF, DKIM, DMARC)"
        );
        let (used, event) = session.feed(&input.as_bytes()[auth_line.len()..], &mut body);
        assert_eq!((used, event), (MAIL.len(), Event::NeedInput));
        assert!(String::from_utf8_lossy(session.output()).ends_with("250 2.1.0 Ok\r\n"));
    }

    #[test]
    fn exchange_lines_may_reach_12288_octets() {
        // A PLAIN message with a long password: longer than a command line, within RFC 4954's.
        use base64::Engine as _;
        let password = "p".repeat(4000);
        let message = format!("\0alice\0{password}");
        let encoded = base64::engine::general_purpose::STANDARD.encode(message);
        let long_initial = format!("AUTH PLAIN {encoded}\r\n");
        let long_response = format!("{encoded}\r\n");
        let (t, seen) = run(
            auth_params(true),
            &[EHLO, &long_initial, "AUTH PLAIN\r\n", &long_response],
        );
        assert_eq!(t.replies(), ["220", "250", "535 5.7.8", "334", "535 5.7.8"]);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].2.len(), 4000);

        let too_long = format!("{}\r\n", "A".repeat(AUTH_LINE_MAX));
        let (t, seen) = run(
            auth_params(true),
            &[EHLO, "AUTH PLAIN\r\n", &too_long, "NOOP\r\n"],
        );
        assert_eq!(t.replies(), ["220", "250", "334", "500 5.5.6", "250 2.0.0"]);
        assert!(seen.is_empty());

        // Other commands keep the ordinary limit.
        let long_noop = format!("NOOP {}\r\n", "x".repeat(600));
        let (t, _) = run(auth_params(true), &[EHLO, &long_noop]);
        assert_eq!(t.replies(), ["220", "250", "500 5.5.2"]);
    }

    const AUTH_LINE_MAX: usize = super::super::auth::AUTH_LINE_MAX_BYTES;
}
