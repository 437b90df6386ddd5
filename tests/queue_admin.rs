//! Scenario: queue administration of a running relay with `postern queue …`: list, show, hold,
//! release, delete, flush, requeue and stats, in tables and JSON; a hold survives a restart,
//! and a bad queue id gets a clear error and its own exit code.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{free_port, postern_binary, Options, Relay};

fn queue(admin: SocketAddr, args: &[&str]) -> (i32, String) {
    let output = Command::new(postern_binary())
        .arg("queue")
        .args(args)
        .args(["--admin", &admin.to_string()])
        .env("USER", "tester")
        .output()
        .expect("run postern queue");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

fn json(admin: SocketAddr, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    let (code, text) = queue(admin, &args);
    assert_eq!(code, 0, "{text}");
    serde_json::from_str(&text).expect("JSON from postern queue --json")
}

fn queue_ids(admin: SocketAddr) -> Vec<(String, bool)> {
    json(admin, &["list"])["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["queue_id"].as_str().unwrap().to_owned(),
                m["held"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn queue_commands_act_on_the_running_relay() {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut relay = Relay::start(Options {
        shards: Some(2),
        extra: format!("[admin]\naddress = \"{admin}\"\n"),
        ..Options::default()
    });

    let mut client = relay.connect();
    for n in 0..3 {
        let body = format!("Subject: admin {n}\r\n\r\nbody\r\n");
        let reply = client.send_message("s@client.test", &["r@example.com"], body.as_bytes());
        assert_eq!(reply.code, 250);
    }
    let ids = queue_ids(admin);
    assert_eq!(ids.len(), 3, "{ids:?}");
    let (first, second, third) = (&ids[0].0, &ids[1].0, &ids[2].0);

    let (code, table) = queue(admin, &["list"]);
    assert_eq!(code, 0);
    assert!(
        table.contains(first) && table.contains("r@example.com"),
        "{table}"
    );
    assert!(table.contains("in 3 message(s)"), "{table}");

    let (code, text) = queue(admin, &["hold", first]);
    assert_eq!((code, text.trim()), (0, "1 message(s) put on hold"));
    let (code, _) = queue(admin, &["hold", first]);
    assert_eq!(code, 3, "holding a held message changes nothing");
    let (_, table) = queue(admin, &["list"]);
    assert!(table.contains(&format!("{first}!")), "{table}");

    let shown = json(admin, &["show", second]);
    assert_eq!(shown["message"]["sender"], "s@client.test");
    assert_eq!(shown["message"]["recipients"][0], "r@example.com");

    let (code, text) = queue(admin, &["delete", second]);
    assert_eq!((code, text.trim()), (0, "1 message(s) deleted"));
    let (code, text) = queue(admin, &["show", second]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("no such message"), "{text}");
    let (code, _) = queue(admin, &["show", "not-a-queue-id"]);
    assert_eq!(code, 3);

    let flushed = json(admin, &["flush"]);
    assert_eq!(
        flushed["affected"], 1,
        "only the message neither held nor deleted"
    );
    let requeued = json(admin, &["requeue", third]);
    assert_eq!(requeued["affected"], 1);

    let stats = json(admin, &["stats"]);
    let shards = stats["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2);
    let total = |key: &str| shards.iter().map(|s| s[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!((total("messages"), total("held")), (2, 1));

    // The hold and the deletion are spool records: a restart replays them.
    relay.kill_hard();
    relay.restart();
    let after = queue_ids(admin);
    assert_eq!(after, vec![(first.clone(), true), (third.clone(), false)]);

    let (code, text) = queue(admin, &["release", first]);
    assert_eq!((code, text.trim()), (0, "1 message(s) released"));
    assert_eq!(queue_ids(admin)[0], (first.clone(), false));

    let log = relay.log();
    assert!(
        log.contains("queue administration") && log.contains("tester@127.0.0.1"),
        "{log}"
    );
}

#[test]
fn an_unreachable_admin_api_is_named() {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (code, text) = queue(admin, &["list"]);
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("cannot reach the admin API"), "{text}");
}
