//! Scenario: the spool cannot create its next segment for a while. A directory squats on the
//! segment's file name, so the batch that needs the new segment fails: its message is refused
//! with a 4xx and the log moves on to a fresh segment. The squatter then goes away, more mail is
//! acknowledged, and after `kill -9` every message that got `250` is recovered. (Before the log
//! moved on after a failure, the next batch went into the failed segment behind a hole, where
//! recovery stops reading, and was lost in a crash.)

mod common;

use std::fs;

use common::{Client, Options, Relay};

/// About 100 KiB per message, so a 2 MiB segment holds about twenty.
fn send(client: &mut Client, id: &str) -> u16 {
    assert_eq!(client.command("MAIL FROM:<s@client.test>").code, 250);
    assert_eq!(client.command("RCPT TO:<r@example.com>").code, 250);
    assert_eq!(client.command("DATA").code, 354);
    let body = ("y".repeat(98) + "\r\n").repeat(1000);
    client.send(format!("X-Test-Id: {id}\r\n\r\n{body}.\r\n").as_bytes());
    client.reply().code
}

fn recovered_ids(relay: &Relay) -> Vec<String> {
    relay
        .stored()
        .iter()
        .filter_map(|message| {
            let text = message.message_text();
            let id = text
                .lines()
                .find_map(|line| line.strip_prefix("X-Test-Id: "))?;
            Some(id.trim().to_owned())
        })
        .collect()
}

#[test]
fn after_a_failed_batch_later_acknowledged_mail_survives_a_crash() {
    let mut relay = Relay::start(Options {
        server: "spool_segment_size = \"2MiB\"",
        ..Options::default()
    });
    let squatter = relay
        .spool
        .join("shard-0")
        .join("gen-00000001")
        .join("seg-00000003.log");
    fs::create_dir_all(squatter.join("in-the-way")).expect("squat on segment 3");

    let mut client = relay.connect();
    assert_eq!(client.command("EHLO client.test").code, 250);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for n in 0..200 {
        let id = format!("w-{n}");
        match send(&mut client, &id) {
            250 => acknowledged.push(id),
            code => {
                assert!(
                    (400..500).contains(&code),
                    "a failed write is temporary: {code}"
                );
                refused = Some(n);
                break;
            }
        }
    }
    let refused = refused.expect("the batch needing segment 3 fails");
    assert!(refused > 20, "segments 1 and 2 took mail first: {refused}");

    fs::remove_dir_all(&squatter).expect("remove the squatter");
    for n in 0..30 {
        let id = format!("after-{n}");
        assert_eq!(send(&mut client, &id), 250, "{}", relay.log());
        acknowledged.push(id);
    }
    drop(client);
    assert!(
        relay.log().contains("spool write failed"),
        "{}",
        relay.log()
    );

    relay.kill_hard();
    relay.restart();
    let recovered = recovered_ids(&relay);
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !recovered.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not recovered: {lost:?}\n{}",
        relay.log()
    );
}
