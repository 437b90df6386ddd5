//! Scenario: the safe-by-default rule. `send` must refuse a target outside 127.0.0.0/8 and ::1
//! without --allow-remote, and `sink` a non-loopback listen address, before touching the
//! network, with an error that names the flag.

mod common;

use std::process::Command;

use common::BINARY;

#[test]
fn send_refuses_a_remote_target_without_the_flag() {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never routed, so nothing is hit even on failure.
    let output = Command::new(BINARY)
        .args([
            "send",
            "--to",
            "192.0.2.1:25",
            "--messages",
            "1",
            "--timeout",
            "1s",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
    assert!(output.stdout.is_empty(), "no run happened");
}

#[test]
fn send_refuses_when_any_of_several_targets_is_remote() {
    let output = Command::new(BINARY)
        .args([
            "send",
            "--to",
            "127.0.0.1:9,192.0.2.1:25",
            "--messages",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("192.0.2.1"));
}

#[test]
fn sink_refuses_a_wildcard_listen_address_without_the_flag() {
    let output = Command::new(BINARY)
        .args(["sink", "--listen", "0.0.0.0:0", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--allow-remote"));
}
