//! Scenario: every socket the relay holds, listening or accepted, is close-on-exec, so that a
//! program the relay starts (the next binary of a hot upgrade, above all) inherits only the
//! descriptors handed to it on purpose. An inherited client socket would stay open in the child
//! after the relay closed it, and the client would wait for an end that never comes.
//!
//! Connections are opened in a burst so that most of them are already waiting when the shard
//! accepts: that is the path where the relay calls accept4 itself rather than through io_uring.

mod common;

use std::fs;

use common::{open_flags, Client, Options, Relay};

#[test]
fn every_socket_of_the_relay_is_close_on_exec() {
    let relay = Relay::start(Options::default());
    let mut clients: Vec<Client> = (0..32).map(|_| Client::connect(relay.address)).collect();
    for client in &mut clients {
        assert_eq!(client.reply().code, 220);
    }

    let pid = relay.pid();
    let mut sockets = 0;
    let mut inheritable = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).expect("the relay's descriptors") {
        let entry = entry.expect("a descriptor entry");
        // A descriptor closed since the listing has no link and no fdinfo any more.
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let fd = entry.file_name().to_string_lossy().into_owned();
        let Some(flags) = open_flags(pid, &fd) else {
            continue;
        };
        sockets += 1;
        if flags & libc::O_CLOEXEC == 0 {
            inheritable.push(fd);
        }
    }

    // 32 sessions and the listener at least.
    assert!(sockets > 32, "found only {sockets} sockets");
    assert!(
        inheritable.is_empty(),
        "sockets without close-on-exec: descriptors {inheritable:?}"
    );
}
