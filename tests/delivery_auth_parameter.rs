//! Scenario: RFC 4954 §5 `AUTH=` travels with the message. A trusted client's `AUTH=` is kept
//! in the spool, and delivery passes it on to a next hop that offers AUTH: here a second
//! postern, which offers AUTH after STARTTLS and records what it was given.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::certificates::Authority;
use common::{eventually, postern_binary, smarthost_route, Options, Relay};

#[test]
fn a_trusted_clients_auth_parameter_reaches_a_hop_that_offers_auth() {
    let directory = tempfile::tempdir().unwrap();
    let authority = Authority::new(directory.path(), "ca");
    let server = authority.server("server", &["relay.test"]);
    let users = directory.path().join("users");
    let status = Command::new(postern_binary())
        .args([
            "user",
            "add",
            "nobody-needed",
            "--password-stdin",
            "--users-file",
        ])
        .arg(&users)
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            writeln!(child.stdin.take().unwrap(), "unused password")?;
            child.wait()
        })
        .unwrap();
    assert!(status.success());

    // The last hop trusts loopback (the harness default), so it keeps the AUTH= it is sent.
    let last = Relay::start(Options {
        listener: "tls = \"starttls\"\nauth = \"optional\"".into(),
        extra: format!(
            "[tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n\n[auth]\nusers_file = \"{}\"\n",
            server.certificate.display(),
            server.private_key.display(),
            users.display()
        ),
        ..Options::default()
    });
    let route = smarthost_route(last.address).replace("tls = \"none\"", "tls = \"opportunistic\"");
    let first = Relay::start(Options {
        routes: Some(route),
        ..Options::default()
    });

    let mut client = first.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    let mail = client.command("MAIL FROM:<s@client.test> AUTH=submitter+2Bx@client.test");
    assert_eq!(mail.code, 250, "{mail:?}");
    assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);
    assert_eq!(client.command("DATA").code, 354);
    client.send(b"Subject: auth parameter\r\n\r\nbody\r\n.\r\n");
    assert_eq!(client.reply().code, 250);

    assert!(
        eventually(Duration::from_secs(20), || last.stored().len() == 1),
        "not delivered:\nfirst:\n{}\nlast:\n{}",
        first.log(),
        last.log()
    );
    let stored = &last.stored()[0];
    assert!(
        stored.envelope[0].contains(" AUTH=submitter+2Bx@client.test"),
        "{:?}",
        stored.envelope
    );
    assert!(first.log().contains("tls=\"TLSv1.3\""), "{}", first.log());
}
