//! Scenario: a deliberately faulty relay between `send` and `sink`, and `check` must catch it.
//! The relay below acknowledges every message with 250 but, for every tenth message, either
//! forgets it (loss), forwards it twice (duplication) or flips a body octet on the way
//! (corruption). It does not offer PIPELINING, so send's one-command-at-a-time path is on the
//! way too. The figures must match the faults exactly: this is the end-to-end proof that the
//! durability tests rely on.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{check, id_log, number, send, Sink};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Lose,
    Duplicate,
    Corrupt,
}

/// Every tenth message (the 4th, 14th, …) suffers the fault.
fn faulty(n: u64) -> bool {
    n % 10 == 3
}

/// Starts the relay on a free loopback port; it forwards to `sink`.
fn start_relay(fault: Fault, sink: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let counter = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let sink = sink.clone();
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let _ = serve(stream, fault, &sink, &counter);
            });
        }
    });
    address
}

/// One inbound session: plain SMTP, no PIPELINING.
fn serve(stream: TcpStream, fault: Fault, sink: &str, counter: &AtomicU64) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 faulty relay\r\n")?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let verb = String::from_utf8_lossy(&line[..line.len().min(4)]).to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => writer.write_all(b"250-faulty\r\n250 8BITMIME\r\n")?,
            "MAIL" | "RCPT" | "RSET" | "NOOP" => writer.write_all(b"250 ok\r\n")?,
            "DATA" => {
                writer.write_all(b"354 go\r\n")?;
                let wire = read_data(&mut reader)?;
                let n = counter.fetch_add(1, Ordering::Relaxed);
                forward_with_fault(fault, faulty(n), wire, sink)?;
                writer.write_all(b"250 ok\r\n")?;
            }
            "QUIT" => {
                writer.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => writer.write_all(b"502 no\r\n")?,
        }
    }
}

/// The stuffed message up to and including the `.` line.
fn read_data(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut wire = Vec::new();
    loop {
        let start = wire.len();
        if reader.read_until(b'\n', &mut wire)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if &wire[start..] == b".\r\n" {
            return Ok(wire);
        }
    }
}

fn forward_with_fault(
    fault: Fault,
    hit: bool,
    mut wire: Vec<u8>,
    sink: &str,
) -> std::io::Result<()> {
    match (fault, hit) {
        (Fault::Lose, true) => Ok(()),
        (Fault::Duplicate, true) => {
            forward(&wire, sink)?;
            forward(&wire, sink)
        }
        (Fault::Corrupt, true) => {
            // Change one letter a few octets into the body (after the empty line ending the
            // header), keeping line structure intact so only the checksum can tell.
            let body = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let at = (body..wire.len())
                .find(|&i| wire[i].is_ascii_alphabetic())
                .unwrap();
            wire[at] ^= 0x20;
            forward(&wire, sink)
        }
        _ => forward(&wire, sink),
    }
}

/// Delivers one stuffed message to the sink over a fresh connection.
fn forward(wire: &[u8], sink: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(sink)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut replies = BufReader::new(stream.try_clone()?);
    let mut expect = |code: &str| -> std::io::Result<()> {
        loop {
            let mut line = String::new();
            replies.read_line(&mut line)?;
            assert!(
                line.starts_with(code),
                "the sink said {line:?}, expected {code}"
            );
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    };
    expect("220")?;
    stream.write_all(b"EHLO relay\r\n")?;
    expect("250")?;
    stream.write_all(b"MAIL FROM:<relay@localhost>\r\n")?;
    expect("250")?;
    stream.write_all(b"RCPT TO:<sink@localhost>\r\n")?;
    expect("250")?;
    stream.write_all(b"DATA\r\n")?;
    expect("354")?;
    stream.write_all(wire)?;
    expect("250")?;
    stream.write_all(b"QUIT\r\n")?;
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    Ok(())
}

/// Sends 100 messages through a relay with `fault`; returns check's exit code and report.
fn run(fault: Fault, name: &str) -> (i32, serde_json::Value, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::start(dir.path(), name, &[]);
    let relay = start_relay(fault, sink.address.clone());
    let (_, sent) = send(
        dir.path(),
        name,
        &relay,
        &[
            "--messages",
            "100",
            "--concurrency",
            "4",
            "--per-connection",
            "10",
        ],
    );
    assert_eq!(
        number(&sent, "accepted"),
        100,
        "the relay acknowledges everything"
    );
    let received = sink.stop();
    assert_eq!(id_log(&dir.path().join(format!("{name}.sent"))).len(), 100);
    let (code, report) = check(
        dir.path(),
        &dir.path().join(format!("{name}.sent")),
        &sink.ids,
        false,
    );
    (code, report, received)
}

#[test]
fn a_relay_that_loses_messages_is_caught() {
    let (code, report, received) = run(Fault::Lose, "lose");
    assert_eq!(code, 1, "{report}");
    assert_eq!(number(&report, "lost"), 10);
    assert_eq!(number(&report, "delivered"), 90);
    assert_eq!(number(&received, "intact"), 90);
}

#[test]
fn a_relay_that_duplicates_messages_is_caught() {
    let (code, report, received) = run(Fault::Duplicate, "dup");
    // Duplicates are allowed by at-least-once delivery, so only --strict fails on them; the
    // count must be exact all the same.
    assert_eq!(code, 0, "{report}");
    assert_eq!(number(&report, "duplicated"), 10);
    assert_eq!(number(&report, "lost"), 0);
    assert_eq!(number(&received, "duplicates"), 10);
}

#[test]
fn a_relay_that_corrupts_a_body_octet_is_caught() {
    let (code, report, received) = run(Fault::Corrupt, "corrupt");
    assert_eq!(code, 1, "{report}");
    assert_eq!(number(&report, "corrupted"), 10);
    assert_eq!(number(&report, "lost"), 0);
    assert_eq!(number(&received, "corrupted"), 10);
    assert_eq!(number(&received, "intact"), 90);
}
