//! Scenario: environmental dead ends at start-up exit with their own code and one line that
//! names the cause and the fix: an address already in use (12), an unwritable spool (14) and a
//! spool another relay is running on (17).

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, postern_binary, Options, Relay};

const ROUTE: &str = "\n[[route]]\ndomains = [\"*\"]\nmx = true\n";

fn serve_with(config: &str) -> (Option<i32>, String) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("postern.toml");
    std::fs::write(
        &path,
        config.replace("{dir}", &directory.path().display().to_string()),
    )
    .expect("write config");
    let output = Command::new(postern_binary())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run serve");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn address_in_use_exits_12_with_a_fix() {
    // Held without SO_REUSEPORT, so postern's bind must fail.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("address").port();
    let (code, stderr) = serve_with(&format!(
        "[server]\nspool = \"{{dir}}/spool\"\nshards = 1\n\n\
         [[listener]]\naddress = \"127.0.0.1:{port}\"\n{ROUTE}"
    ));
    assert_eq!(code, Some(12), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains("fix"), "{stderr}");
}

#[test]
fn unwritable_spool_exits_14_with_a_fix() {
    // A spool under a regular file cannot be created, even by root.
    let (code, stderr) = serve_with(&format!(
        "[server]\nspool = \"{{dir}}/postern.toml/spool\"\nshards = 1\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\n{ROUTE}"
    ));
    assert_eq!(code, Some(14), "{stderr}");
    assert!(stderr.contains("spool"), "{stderr}");
}

#[test]
fn a_second_relay_on_a_running_spool_exits_17_and_the_first_serves_on() {
    let first = Relay::start(Options::default());

    // Its own listener and no admin endpoint, so only the spool is shared.
    let config = std::fs::read_to_string(&first.config_path).expect("read config");
    let first_address = first.address.to_string();
    let second_address = format!("127.0.0.1:{}", free_port());
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("second.toml");
    std::fs::write(&path, config.replace(&first_address, &second_address)).expect("write config");
    let mut second = Command::new(postern_binary())
        .args(["serve", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run serve");
    let exited = common::eventually(Duration::from_secs(20), || {
        second.try_wait().expect("wait").is_some()
    });
    if !exited {
        let _ = second.kill();
    }
    let output = second.wait_with_output().expect("collect output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        exited,
        "the second relay kept running on the same spool:\n{stderr}"
    );
    assert_eq!(output.status.code(), Some(17), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");
    assert!(stderr.contains("fix"), "{stderr}");

    let mut client = first.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
}

#[test]
fn a_killed_relay_leaves_no_lock_behind() {
    let mut relay = Relay::start(Options::default());
    relay.kill_hard();
    relay.restart();
    relay.connect();
}
