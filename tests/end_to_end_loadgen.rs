//! Scenario: the end-to-end proof with the project's load generator. `postern-loadgen send`
//! offers mail to the relay, the relay delivers to `postern-loadgen sink`, and
//! `postern-loadgen check --strict` joins the two id logs: every accepted message delivered
//! exactly once, none corrupted.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, free_port, smarthost_route, Options, Relay};

const MESSAGES: usize = 2000;

fn lines(path: &PathBuf) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

#[test]
fn every_accepted_message_is_delivered_exactly_once() {
    let loadgen = common::loadgen_binary();
    let directory = tempfile::tempdir().expect("temporary directory");
    let sent = directory.path().join("sent.ids");
    let received = directory.path().join("received.ids");

    let sink_address = format!("127.0.0.1:{}", free_port());
    let mut sink = Command::new(&loadgen)
        .args([
            "sink",
            "--listen",
            &sink_address,
            "--threads",
            "1",
            "--ids-out",
        ])
        .arg(&received)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start postern-loadgen sink");
    assert!(
        eventually(Duration::from_secs(10), || std::net::TcpStream::connect(
            &sink_address
        )
        .is_ok()),
        "the sink did not listen"
    );

    let relay = Relay::start(Options {
        shards: Some(2),
        routes: Some(smarthost_route(sink_address.parse().expect("address"))),
        ..Options::default()
    });
    let send = Command::new(&loadgen)
        .args([
            "send",
            "--quiet",
            "--threads",
            "1",
            "--to",
            &relay.address.to_string(),
        ])
        .args([
            "--messages",
            &MESSAGES.to_string(),
            "--concurrency",
            "20",
            "--size",
            "4k",
        ])
        .arg("--ids-out")
        .arg(&sent)
        .output()
        .expect("run postern-loadgen send");
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    assert_eq!(lines(&sent), MESSAGES, "not every message was accepted");

    assert!(
        eventually(Duration::from_secs(60), || relay.stored().is_empty()),
        "the relay's queue did not drain:\n{}",
        relay.log()
    );
    let _ = Command::new("kill").arg(sink.id().to_string()).status();
    let _ = sink.wait();

    let check = Command::new(&loadgen)
        .args(["check", "--strict", "--sent"])
        .arg(&sent)
        .arg("--received")
        .arg(&received)
        .output()
        .expect("run postern-loadgen check");
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
