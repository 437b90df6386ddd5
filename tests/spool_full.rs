//! Scenario: a small spool fills up. Once it reserves more than `server.spool_size_max`, new
//! mail is refused with `452 4.3.1` at MAIL or RCPT (the client keeps it and retries later);
//! every message acknowledged before that is still in the spool.

mod common;

use std::time::Duration;

use common::{Client, Options, Relay};

#[test]
fn a_full_spool_refuses_new_mail_with_452_and_keeps_what_it_acknowledged() {
    let relay = Relay::start(Options {
        server: "spool_segment_size = \"2MiB\"\nspool_size_max = \"6MiB\"",
        ..Options::default()
    });

    let chunk = "0123456789".repeat(10) + "\r\n";
    let body = format!("Subject: filler\r\n\r\n{}", chunk.repeat(1000)); // about 100 KiB
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    for n in 0..400 {
        let mail = client.command("MAIL FROM:<s@client.test>");
        if mail.code != 250 {
            refusal = Some(mail);
            break;
        }
        // The spool may fill between MAIL and RCPT: RCPT is refused the same way then.
        let rcpt = client.command("RCPT TO:<r@example.com>");
        if rcpt.code != 250 {
            refusal = Some(rcpt);
            break;
        }
        assert_eq!(client.command("DATA").code, 354);
        client.send(format!("X-Test-Id: fill-{n}\r\n{body}").as_bytes());
        client.send(b".\r\n");
        let done = client.reply();
        assert_eq!(done.code, 250, "{done:?}");
        acknowledged.push(format!("fill-{n}"));
        std::thread::sleep(Duration::from_millis(10));
    }

    let refusal = refusal.expect("the spool never filled up");
    assert_eq!(
        (refusal.code, refusal.enhanced()),
        (452, "4.3.1"),
        "{refusal:?}"
    );
    assert!(relay.log().contains("spool full"), "{}", relay.log());

    // A new connection is refused the same way; the session itself stays usable.
    let mut another = Client::connect(relay.address);
    assert_eq!(another.reply().code, 220);
    assert_eq!(another.command("EHLO client.test").code, 250);
    assert_eq!(another.command("MAIL FROM:<s@client.test>").code, 452);
    assert_eq!(another.command("NOOP").code, 250);

    let stored: Vec<String> = relay
        .stored()
        .iter()
        .filter_map(|m| {
            m.message_text()
                .lines()
                .find_map(|line| line.strip_prefix("X-Test-Id: ").map(str::to_owned))
        })
        .collect();
    for id in &acknowledged {
        assert!(
            stored.contains(id),
            "{id} was acknowledged but is not in the spool"
        );
    }
}
