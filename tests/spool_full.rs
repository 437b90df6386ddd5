//! Scenario: a small spool fills up. Once it reserves more than `server.spool_size_max`, new
//! mail is refused with `452 4.3.1` at MAIL or RCPT (the client keeps it and retries later);
//! every message acknowledged before that is still in the spool. A burst that fills it faster
//! than the once-a-second check is stopped as soon as the segment crossing the limit is made.

mod common;

use std::time::Duration;

use common::{shard_0_segment_count, Client, Options, Relay};

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

#[test]
fn a_burst_is_refused_once_the_segment_crossing_the_limit_is_created() {
    let relay = Relay::start(Options {
        server: "spool_segment_size = \"2MiB\"\nspool_size_max = \"6MiB\"",
        ..Options::default()
    });

    // About 100 KiB each, as fast as the relay takes them: some 20 MiB a second, ten segments,
    // which a check made only once a second would let through.
    let body = format!(
        "Subject: burst\r\n\r\n{}.\r\n",
        ("0123456789".repeat(10) + "\r\n").repeat(1000)
    );
    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    let mut refused = false;
    for _ in 0..200 {
        if client.command("MAIL FROM:<s@client.test>").code != 250 {
            refused = true;
            break;
        }
        if client.command("RCPT TO:<r@example.com>").code != 250 {
            refused = true;
            break;
        }
        assert_eq!(client.command("DATA").code, 354);
        client.send(body.as_bytes());
        assert_eq!(client.reply().code, 250);
    }
    assert!(refused, "the spool never filled up");

    // Three segments reach the limit; the message that was being written when the third one
    // was created may open a fourth.
    let segments = shard_0_segment_count(&relay.spool);
    assert!(segments <= 4, "{segments} segments for a 6 MiB limit");
}
