//! Scenario: SIGTERM. New connections stop, sessions may finish within `shutdown_timeout`,
//! the rest hear `421 4.3.2`, and the process exits 0.

mod common;

use std::time::Duration;

use common::{Options, Relay};

#[test]
fn idle_sessions_hear_421_after_the_grace_and_the_process_exits_cleanly() {
    let mut relay = Relay::start(Options {
        server: "shutdown_timeout = \"1s\"",
        ..Options::default()
    });
    let mut idle = relay.connect();
    assert_eq!(idle.command("EHLO idle.test").code, 250);

    let mut busy = relay.connect();
    assert_eq!(busy.command("EHLO busy.test").code, 250);
    assert_eq!(busy.command("MAIL FROM:<s@client.test>").code, 250);

    let pid = relay.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    std::thread::sleep(Duration::from_millis(200));

    // Within the grace, a session in progress can still finish its transaction.
    assert_eq!(busy.command("RCPT TO:<r@example.com>").code, 250);
    assert_eq!(busy.command("DATA").code, 354);
    busy.send(b"finished in the grace period\r\n.\r\n");
    assert_eq!(busy.reply().code, 250);

    let reply = idle.reply();
    assert_eq!(reply.code, 421, "{reply:?}");
    assert_eq!(reply.enhanced(), "4.3.2");

    let status = relay.wait(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}: {}", relay.log());
    assert_eq!(relay.stored().len(), 1);
    assert!(relay.log().contains("postern stopped"));
}

#[test]
fn sigterm_with_no_sessions_exits_at_once() {
    let mut relay = Relay::start(Options::default());
    let status = relay.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
}
