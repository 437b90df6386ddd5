//! Scenario: a second, independent verifier under load. `postern-loadgen send` offers mail from
//! a signing domain over many pipelined sessions, postern signs it and delivers it to
//! `postern-loadgen sink`, which verifies every message with mail-auth (a verifier we did not
//! write). Each algorithm gets its own round, and the sink holds only that algorithm's key, so a
//! message passes only if that very signature verifies.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::dkim::Keys;
use common::{eventually, free_port, smarthost_route, Options, Relay};

const MESSAGES: usize = 500;

fn signed_mail_passes_at_the_sink(algorithm: &str) {
    let loadgen = common::loadgen_binary();
    let keys = Keys::generate("example.com", &[("load", algorithm)]);
    let record_path = keys.directory.path().join("load.txt");
    std::fs::write(&record_path, &keys.records["load._domainkey.example.com"]).unwrap();
    let report_path = keys.directory.path().join("sink.json");

    let sink_address = format!("127.0.0.1:{}", free_port());
    let mut sink = Command::new(&loadgen)
        .args(["sink", "--listen", &sink_address, "--threads", "1"])
        .args(["--messages", &MESSAGES.to_string(), "--json"])
        .arg(&report_path)
        .arg("--dkim-key")
        .arg(format!(
            "load._domainkey.example.com={}",
            record_path.display()
        ))
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

    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let relay = Relay::start(Options {
        shards: Some(2),
        routes: Some(smarthost_route(sink_address.parse().expect("address"))),
        extra: format!("{}\n[admin]\naddress = \"{admin}\"\n", keys.config),
        ..Options::default()
    });
    let send = Command::new(&loadgen)
        .args(["send", "--quiet", "--threads", "1"])
        .args(["--to", &relay.address.to_string()])
        .args(["--from", "loadgen@example.com"])
        .args(["--messages", &MESSAGES.to_string(), "--concurrency", "8"])
        .args(["--size", "2k"])
        .output()
        .expect("run postern-loadgen send");
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );

    assert!(
        eventually(Duration::from_secs(60), || report_path.exists()),
        "the sink did not count {MESSAGES} messages:\n{}",
        relay.log()
    );
    let _ = sink.wait();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(
        (
            report["dkim_pass"].as_u64(),
            report["dkim_fail"].as_u64(),
            report["dkim_none"].as_u64()
        ),
        (Some(MESSAGES as u64), Some(0), Some(0)),
        "{algorithm}: {report}"
    );
    assert_eq!(
        common::metric_total(admin, "postern_messages_signed_total"),
        MESSAGES as u64
    );
}

#[test]
fn ed25519_signatures_pass_a_mail_auth_sink() {
    signed_mail_passes_at_the_sink("ed25519-sha256");
}

#[test]
fn rsa_signatures_pass_a_mail_auth_sink() {
    signed_mail_passes_at_the_sink("rsa-sha256");
}
