//! `postern queue …`: queue administration of a running relay through its admin API.
//!
//! The commands and their meaning follow Postfix's `mailq`, `postqueue -f` and
//! `postsuper -h/-H/-d/-r`. Each one is one HTTP request to `[admin] address` (from the
//! configuration file, or `--admin`), with the user name as the actor for the audit log; the
//! answer is printed as a table, or as the API's JSON with `--json`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::fatal::{ExitReason, Fatal};
use crate::time::rfc5322_date;

/// How long the CLI waits for the relay.
const PATIENCE: Duration = Duration::from_secs(15);

/// One queue command, as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    List,
    Show(String),
    Flush,
    Hold(String),
    Release(String),
    Delete(String),
    Requeue(Option<String>),
    Stats,
}

impl Action {
    fn method_and_path(&self) -> (&'static str, String) {
        match self {
            Action::List => ("GET", "/queue".into()),
            Action::Show(id) => ("GET", format!("/queue/{id}")),
            Action::Stats => ("GET", "/queue/stats".into()),
            Action::Flush => ("POST", "/queue/flush".into()),
            Action::Requeue(None) => ("POST", "/queue/requeue".into()),
            Action::Requeue(Some(id)) => ("POST", format!("/queue/{id}/requeue")),
            Action::Hold(id) => ("POST", format!("/queue/{id}/hold")),
            Action::Release(id) => ("POST", format!("/queue/{id}/release")),
            Action::Delete(id) => ("POST", format!("/queue/{id}/delete")),
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            Action::Flush => "scheduled for delivery now",
            Action::Requeue(_) => "requeued",
            Action::Hold(_) => "put on hold",
            Action::Release(_) => "released",
            Action::Delete(_) => "deleted",
            _ => "",
        }
    }
}

/// Runs one command against the admin API at `admin` and prints the answer.
pub fn run(admin: SocketAddr, action: &Action, json: bool) -> Result<(), Fatal> {
    let (method, path) = action.method_and_path();
    let (status, body) = request(admin, method, &path)?;
    if json {
        println!("{body}");
    }
    if status == 404 {
        return Err(Fatal::new(
            ExitReason::NotFound,
            format!("no such message ({path})"),
            "list the queue with `postern queue list`; queue ids are 16 hex digits",
        ));
    }
    if status != 200 {
        return Err(Fatal::new(
            ExitReason::AdminUnavailable,
            format!("the admin API answered {status}: {}", body["error"]),
            "see the relay's log; a stopping relay no longer answers queue commands",
        ));
    }
    if json {
        return Ok(());
    }

    match action {
        Action::List => print_list(&body["messages"]),
        Action::Show(_) => print_message(&body["message"]),
        Action::Stats => print_stats(&body["shards"]),
        _ => {
            let affected = body["affected"].as_u64().unwrap_or(0);
            if affected == 0
                && matches!(
                    action,
                    Action::Hold(_) | Action::Release(_) | Action::Delete(_)
                )
            {
                return Err(Fatal::new(
                    ExitReason::NotFound,
                    "no message was changed (no such message, or already in that state)",
                    "list the queue with `postern queue list`",
                ));
            }
            println!("{affected} message(s) {}", action.verb());
        }
    }
    Ok(())
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and the JSON body.
fn request(admin: SocketAddr, method: &str, path: &str) -> Result<(u16, Value), Fatal> {
    let unavailable = |error: std::io::Error| {
        Fatal::new(
            ExitReason::AdminUnavailable,
            format!("cannot reach the admin API at {admin}: {error}"),
            "is postern running with an [admin] section? pass --config FILE or --admin ADDR",
        )
    };
    let mut stream = TcpStream::connect_timeout(&admin, PATIENCE).map_err(unavailable)?;
    stream
        .set_read_timeout(Some(PATIENCE))
        .map_err(unavailable)?;
    let actor = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nX-Postern-Actor: {actor}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).map_err(unavailable)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(unavailable)?;

    let text = String::from_utf8_lossy(&response);
    let malformed = || {
        Fatal::new(
            ExitReason::AdminUnavailable,
            format!("the admin API at {admin} sent a malformed answer"),
            "check that [admin] address points at postern and not another service",
        )
    };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(malformed)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(malformed)?;
    let body = serde_json::from_str(body).map_err(|_| malformed())?;
    Ok((status, body))
}

/// The `mailq` layout: id (`!` held, `*` active), size, arrival, sender, then recipients.
fn print_list(messages: &Value) {
    let messages = messages.as_array().map(Vec::as_slice).unwrap_or_default();
    if messages.is_empty() {
        println!("Mail queue is empty");
        return;
    }
    println!(
        "{:<17} {:>9} {:<31} Sender/Recipient",
        "Queue ID", "Size", "Arrival Time"
    );
    let mut total_bytes = 0;
    for message in messages {
        let mark = if message["held"].as_bool() == Some(true) {
            "!"
        } else if message["active"].as_bool() == Some(true) {
            "*"
        } else {
            " "
        };
        let size = message["size_bytes"].as_u64().unwrap_or(0);
        total_bytes += size;
        println!(
            "{:<17} {:>9} {:<31} {}",
            format!("{}{mark}", text(&message["queue_id"])),
            size,
            date(&message["arrival_unix_ms"]),
            sender(&message["sender"])
        );
        for recipient in message["recipients"].as_array().into_iter().flatten() {
            println!("{:>60}{}", "", text(recipient));
        }
        if message["attempts"].as_u64().unwrap_or(0) > 0 {
            println!(
                "{:>60}(attempts: {}, next: {})",
                "",
                message["attempts"],
                date(&message["next_attempt_unix_ms"])
            );
        }
    }
    println!(
        "-- {} KiB in {} message(s).",
        total_bytes.div_ceil(1024),
        messages.len()
    );
}

fn print_message(message: &Value) {
    let fields = [
        ("queue id", text(&message["queue_id"])),
        ("shard", message["shard"].to_string()),
        ("arrival", date(&message["arrival_unix_ms"])),
        ("size", format!("{} bytes", message["size_bytes"])),
        ("sender", sender(&message["sender"])),
        ("held", message["held"].to_string()),
        ("active", message["active"].to_string()),
        ("attempts", message["attempts"].to_string()),
        ("next attempt", date(&message["next_attempt_unix_ms"])),
    ];
    for (name, value) in fields {
        println!("{name:>13}: {value}");
    }
    for recipient in message["recipients"].as_array().into_iter().flatten() {
        println!("{:>13}: {}", "recipient", text(recipient));
    }
}

fn print_stats(shards: &Value) {
    println!(
        "{:>5} {:>9} {:>10} {:>6} {:>6} {:>8} {:>8} {:>11} {:>6}  oldest arrival",
        "shard",
        "messages",
        "recipients",
        "held",
        "active",
        "deferred",
        "segments",
        "quarantined",
        "paused"
    );
    for shard in shards.as_array().into_iter().flatten() {
        let oldest = match shard["oldest_arrival_unix_ms"] {
            Value::Null => "-".to_owned(),
            ref value => date(value),
        };
        println!(
            "{:>5} {:>9} {:>10} {:>6} {:>6} {:>8} {:>8} {:>11} {:>6}  {oldest}",
            shard["shard"],
            shard["messages"],
            shard["recipients"],
            shard["held"],
            shard["active"],
            shard["deferred"],
            shard["segments"],
            shard["quarantined_segments"],
            shard["paused_destinations"],
        );
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn sender(value: &Value) -> String {
    match value.as_str() {
        Some("") | None => "<>".into(),
        Some(sender) => sender.to_owned(),
    }
}

fn date(unix_ms: &Value) -> String {
    let Some(ms) = unix_ms.as_u64() else {
        return "-".into();
    };
    rfc5322_date(UNIX_EPOCH + Duration::from_millis(ms))
}
