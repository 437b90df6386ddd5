//! Fuzzes whole SMTP dialogues: arbitrary client bytes, split at arbitrary points, must never
//! panic the session, and every event must obey the driver contract. AUTH is offered under TLS
//! in half the runs, and verdicts alternate between accepted and rejected.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use postern::sasl::Verdict;
use postern::smtp::{Event, Limits, Session, SessionParams, StoreOutcome};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let params = SessionParams {
        hostname: Arc::from("mx.example.net"),
        peer: "192.0.2.7:40000".parse().expect("literal"),
        local: "192.0.2.1:25".parse().expect("literal"),
        limits: Limits {
            message_size_max_bytes: 256,
            recipients_max: 4,
            accept_bare_line_endings: control & 0x80 != 0,
            ..Limits::default()
        },
        relay_allowed: control & 0x40 != 0,
        local_domains: Arc::from(vec!["example.com".to_owned(), "*.corp.example".to_owned()]),
        starttls_available: control & 0x20 != 0,
        tls_active: control & 0x10 != 0,
        auth_available: control & 0x10 != 0,
        auth_required: control & 0x08 != 0,
    };
    let piece = usize::from(control & 0x07) * 3 + 1;
    let mut verdicts = 0u32;

    let mut session = Session::new(params);
    session.greet();
    let mut body = Vec::new();
    let mut open = false;
    for chunk in input.chunks(piece) {
        let mut offset = 0;
        loop {
            let (used, event) = session.feed(&chunk[offset..], &mut body);
            offset += used;
            assert!(offset <= chunk.len());
            match event {
                Event::NeedInput => {
                    assert_eq!(offset, chunk.len());
                    break;
                }
                Event::MessageBegin => {
                    assert!(!open);
                    open = true;
                }
                Event::MessageComplete => {
                    assert!(open && !session.envelope().rcpt_to.is_empty());
                    open = false;
                    body.clear();
                    let _ = session.received_header("Q1", "Thu, 1 Jan 2026 00:00:00 +0000");
                    session.message_stored(StoreOutcome::Stored {
                        queue_id: "Q1".into(),
                    });
                }
                Event::MessageAborted => {
                    assert!(open);
                    open = false;
                    body.clear();
                }
                Event::StartTls => {
                    session.tls_established();
                    break;
                }
                Event::Authenticate => {
                    assert!(!open);
                    let credentials = session.take_credentials().expect("credentials");
                    assert!(!credentials.username.is_empty());
                    verdicts += 1;
                    let verdict = if verdicts % 2 == 0 {
                        Verdict::Accepted
                    } else {
                        Verdict::Rejected
                    };
                    session.authentication_result(verdict);
                }
                Event::Close => return,
            }
            assert!(body.len() <= 256);
        }
    }
    let output = session.output();
    assert!(output.is_empty() || output.ends_with(b"\r\n"));
});
