//! Scenario: AUTH on a plaintext listener. With `auth = "optional"` the relay does not
//! advertise AUTH before TLS and answers it `538 5.7.11`, while mail without AUTH still flows;
//! with `auth = "required"`, MAIL is `530 5.7.0`. The users file is loaded at start (a missing
//! one stops start-up with exit 78, and `check-config` reports it too) and reloaded on SIGHUP,
//! keeping the old users when the new file is bad.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{eventually, postern_binary, Options, Relay};

/// A users file with one user, made by `postern user add` as an operator would.
fn users_file(directory: &Path) -> PathBuf {
    let users = directory.join("users");
    let mut child = Command::new(postern_binary())
        .args(["user", "add", "alice", "--password-stdin", "--users-file"])
        .arg(&users)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run postern user add");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"secret\n")
        .expect("write the password");
    assert!(child.wait().expect("wait").success());
    users
}

fn auth_relay(users: &Path, listener: &str) -> Relay {
    Relay::start(Options {
        listener: listener.to_owned(),
        extra: format!("[auth]\nusers_file = \"{}\"\n", users.display()),
        ..Options::default()
    })
}

#[test]
fn auth_before_tls_is_538_and_not_advertised() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let users = users_file(directory.path());
    let relay = auth_relay(&users, "auth = \"optional\"");
    assert!(relay.log().contains("AUTH users loaded"), "{}", relay.log());

    let mut client = relay.connect();
    let ehlo = client.command("EHLO client.test");
    assert_eq!(ehlo.code, 250);
    assert!(!ehlo.text().contains("AUTH"), "{ehlo:?}");

    // `\0alice\0secret`: the right password, refused all the same because it is in clear text.
    let plain = client.command("AUTH PLAIN AGFsaWNlAHNlY3JldA==");
    assert_eq!((plain.code, plain.enhanced()), (538, "5.7.11"), "{plain:?}");
    assert!(plain
        .text()
        .contains("Encryption required for requested authentication mechanism"));
    let login = client.command("AUTH LOGIN");
    assert_eq!((login.code, login.enhanced()), (538, "5.7.11"), "{login:?}");

    // Optional means mail without AUTH is still accepted.
    let reply = client.send_message("s@client.test", &["user@example.com"], b"hi\r\n");
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(
        !relay.log().contains("AGFsaWNl"),
        "AUTH data never reaches the log"
    );
}

#[test]
fn required_auth_refuses_mail_with_530() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let users = users_file(directory.path());
    let relay = auth_relay(&users, "auth = \"required\"");

    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    let mail = client.command("MAIL FROM:<s@client.test>");
    assert_eq!((mail.code, mail.enhanced()), (530, "5.7.0"), "{mail:?}");
    assert!(mail.text().contains("Authentication required"));
}

#[test]
fn a_missing_users_file_stops_start_up() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let config = directory.path().join("postern.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nspool = \"{dir}/spool\"\nshards = 1\n\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\nauth = \"optional\"\n\n\
             [[route]]\ndomains = [\"*\"]\nmx = true\n\n\
             [auth]\nusers_file = \"{dir}/no-such-users\"\n",
            dir = directory.path().display()
        ),
    )
    .expect("write config");
    let output = Command::new(postern_binary())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("no-such-users"), "{stderr}");

    // check-config reads the file as serve would.
    let checked = Command::new(postern_binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .expect("run check-config");
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("auth.users_file"), "{stderr}");
}

#[test]
fn sighup_reloads_the_users_and_a_bad_file_keeps_the_old_ones() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let users = users_file(directory.path());
    let relay = auth_relay(&users, "auth = \"optional\"");
    let hangup = || {
        let sent = Command::new("kill")
            .args(["-HUP", &relay.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
    };

    hangup();
    assert!(
        eventually(Duration::from_secs(10), || relay
            .log()
            .contains("AUTH users reloaded")),
        "{}",
        relay.log()
    );

    std::fs::write(&users, "alice:not-a-hash\n").expect("break the users file");
    hangup();
    assert!(
        eventually(Duration::from_secs(10), || relay
            .log()
            .contains("reload failed")),
        "{}",
        relay.log()
    );
    assert!(relay.log().contains("line 1"), "{}", relay.log());

    // Still serving after both signals.
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
}
