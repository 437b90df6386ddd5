//! The admin API: a small HTTP/1.1 server on `[admin] address`, on the control thread.
//!
//! It serves the queue administration that `postern queue …` uses, as JSON:
//!
//! | method and path | action |
//! |---|---|
//! | `GET /metrics` | Prometheus counters and gauges, labelled by shard |
//! | `GET /queue` | every queued message |
//! | `GET /queue/ID` | one message |
//! | `GET /queue/stats` | counts per shard |
//! | `POST /queue/flush` | try every deferred message now |
//! | `POST /queue/requeue` or `/queue/ID/requeue` | route afresh, try now, lift pauses |
//! | `POST /queue/ID/hold`, `/release`, `/delete` | hold, release or delete one message |
//! | `POST /reload` | re-read the TLS certificates and the AUTH users file, as SIGHUP does |
//!
//! The owning shard of one message is read from its queue id; requests about all messages go
//! to every shard and the answers are merged. Each request is bounded: its size, the time to
//! read it, and the wait for the shards. The actor of a change is the `X-Postern-Actor` header
//! (the CLI sends the user name) and the client address, for the audit log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::reload::Reloadable;
use crate::histogram::DurationHistogram;
use crate::shard::link::{AdminReply, AdminRequest, QueueEntry, ShardCommand, ShardMetrics};

/// Largest request accepted: a request line and a few headers; there is never a body.
const REQUEST_MAX_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_PATIENCE: Duration = Duration::from_secs(5);
/// How long the API waits for the shards to answer.
const SHARD_PATIENCE: Duration = Duration::from_secs(10);

/// Serves the admin API until the listener fails; each connection in its own task.
pub async fn serve(
    listener: TcpListener,
    shards: Vec<flume::Sender<ShardCommand>>,
    reloadable: Arc<Reloadable>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "admin API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shards = shards.clone();
        let reloadable = Arc::clone(&reloadable);
        tokio::spawn(async move {
            if let Err(error) = connection(stream, peer, &shards, &reloadable).await {
                debug!(%peer, %error, "admin API connection ended with an error");
            }
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shards: &[flume::Sender<ShardCommand>],
    reloadable: &Reloadable,
) -> std::io::Result<()> {
    let request = match tokio::time::timeout(READ_PATIENCE, read_request(&mut stream)).await {
        Ok(Ok(Some(request))) => request,
        Ok(Ok(None)) => return respond(&mut stream, 400, &json!({"error": "bad request"})).await,
        Ok(Err(error)) => return Err(error),
        Err(_) => return respond(&mut stream, 408, &json!({"error": "request timeout"})).await,
    };
    let actor = format!("{}@{peer}", request.actor.as_deref().unwrap_or("unknown"));

    if (request.method.as_str(), request.path.as_str()) == ("POST", "/reload") {
        info!(%actor, "admin API request: reload");
        let report = reloadable.reload(&actor);
        let status = if report.ok { 200 } else { 422 };
        return respond(&mut stream, status, &report.details).await;
    }

    let Some((admin, target)) = route(&request.method, &request.path, &actor) else {
        let body =
            json!({"error": format!("no such endpoint: {} {}", request.method, request.path)});
        return respond(&mut stream, 404, &body).await;
    };
    if admin_changes_state(&admin) {
        info!(%actor, method = %request.method, path = %request.path, "admin API request");
    }
    let metrics = admin == AdminRequest::Metrics;
    let (status, body) = match ask(admin, target, shards).await {
        Err(failure) => failure,
        Ok(replies) if metrics => {
            let text = render_metrics(&replies);
            return write_response(&mut stream, 200, "text/plain; version=0.0.4", &text).await;
        }
        Ok(replies) => merge(replies),
    };
    respond(&mut stream, status, &body).await
}

/// The request line and the one header the API reads.
struct Request {
    method: String,
    path: String,
    actor: Option<String>,
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buffer.windows(4).any(|window| window == b"\r\n\r\n") {
        if buffer.len() > REQUEST_MAX_BYTES {
            return Ok(None);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }

    let text = String::from_utf8_lossy(&buffer);
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(path)) = (request_line.next(), request_line.next()) else {
        return Ok(None);
    };
    let actor = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-postern-actor"))
        .map(|(_, value)| {
            value
                .trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect()
        });
    Ok(Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        actor,
    }))
}

/// Which shards a request goes to.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    All,
    /// The shard that owns this queue id.
    Owner(usize),
}

/// Maps a method and path to a request; `None` for an unknown endpoint.
fn route(method: &str, path: &str, actor: &str) -> Option<(AdminRequest, Target)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let actor = actor.to_owned();
    let owner = |queue_id: &str| Some(Target::Owner(owning_shard(queue_id)?));
    let request = match (method, segments.as_slice()) {
        ("GET", ["metrics"]) => (AdminRequest::Metrics, Target::All),
        ("GET", ["queue"]) => (AdminRequest::List, Target::All),
        ("GET", ["queue", "stats"]) => (AdminRequest::Stats, Target::All),
        ("POST", ["queue", "flush"]) => (AdminRequest::Flush, Target::All),
        ("POST", ["queue", "requeue"]) => (
            AdminRequest::Requeue {
                queue_id: None,
                actor,
            },
            Target::All,
        ),
        ("GET", ["queue", id]) => (
            AdminRequest::Show {
                queue_id: (*id).to_owned(),
            },
            owner(id)?,
        ),
        ("POST", ["queue", id, action]) => {
            let queue_id = (*id).to_owned();
            let request = match *action {
                "hold" => AdminRequest::Hold { queue_id, actor },
                "release" => AdminRequest::Release { queue_id, actor },
                "delete" => AdminRequest::Delete { queue_id, actor },
                "requeue" => AdminRequest::Requeue {
                    queue_id: Some(queue_id),
                    actor,
                },
                _ => return None,
            };
            (request, owner(id)?)
        }
        _ => return None,
    };
    Some(request)
}

/// Queue ids are `GGGGGGSSCCCCCCCC` in hex: generation, shard, counter.
fn owning_shard(queue_id: &str) -> Option<usize> {
    if queue_id.len() != 16 || !queue_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    usize::from_str_radix(&queue_id[6..8], 16).ok()
}

fn admin_changes_state(request: &AdminRequest) -> bool {
    !matches!(
        request,
        AdminRequest::List
            | AdminRequest::Show { .. }
            | AdminRequest::Stats
            | AdminRequest::Metrics
    )
}

/// Sends the request to its shards and collects their answers, in shard order.
async fn ask(
    request: AdminRequest,
    target: Target,
    shards: &[flume::Sender<ShardCommand>],
) -> Result<Vec<AdminReply>, (u16, serde_json::Value)> {
    let chosen: Vec<&flume::Sender<ShardCommand>> = match target {
        Target::All => shards.iter().collect(),
        Target::Owner(shard) => match shards.get(shard) {
            Some(sender) => vec![sender],
            None => return Err((404, json!({"error": "no such message"}))),
        },
    };

    let mut replies = Vec::with_capacity(chosen.len());
    for sender in chosen {
        let (reply, replied) = flume::bounded(1);
        let command = ShardCommand::Admin {
            request: request.clone(),
            reply,
        };
        if sender.send_async(command).await.is_err() {
            return Err((503, json!({"error": "a shard is stopping"})));
        }
        match tokio::time::timeout(SHARD_PATIENCE, replied.recv_async()).await {
            Ok(Ok(answer)) => replies.push(answer),
            _ => return Err((504, json!({"error": "a shard did not answer in time"}))),
        }
    }
    Ok(replies)
}

/// The Prometheus text exposition of every shard's metrics, labelled by shard.
fn render_metrics(replies: &[AdminReply]) -> String {
    let shards: Vec<&ShardMetrics> = replies
        .iter()
        .filter_map(|reply| match reply {
            AdminReply::Metrics(metrics) => Some(metrics.as_ref()),
            _ => None,
        })
        .collect();
    type Read = fn(&ShardMetrics) -> u64;
    let families: [(&str, &str, &str, Read); 22] = [
        (
            "sessions_accepted_total",
            "counter",
            "SMTP sessions accepted.",
            |m| m.sessions_accepted,
        ),
        (
            "sessions_refused_total",
            "counter",
            "Connections refused with 421 over sessions_per_shard_max.",
            |m| m.sessions_refused_over_limit,
        ),
        (
            "early_talkers_total",
            "counter",
            "Clients that talked before the greeting.",
            |m| m.early_talkers,
        ),
        (
            "tls_handshakes_total",
            "counter",
            "Inbound TLS handshakes completed (implicit TLS and STARTTLS).",
            |m| m.tls_handshakes,
        ),
        (
            "tls_handshake_failures_total",
            "counter",
            "Inbound TLS handshakes that failed or timed out; the session was closed.",
            |m| m.tls_handshake_failures,
        ),
        (
            "auth_successes_total",
            "counter",
            "SMTP AUTH attempts answered 235.",
            |m| m.auth_successes,
        ),
        (
            "auth_failures_total",
            "counter",
            "SMTP AUTH attempts answered 535 (wrong password, unknown user).",
            |m| m.auth_failures,
        ),
        (
            "auth_temporary_failures_total",
            "counter",
            "SMTP AUTH attempts answered 454: the client was rate limited, or no check in time.",
            |m| m.auth_temporary_failures,
        ),
        (
            "messages_signed_total",
            "counter",
            "Messages stored with at least one DKIM signature of ours.",
            |m| m.messages_signed,
        ),
        (
            "messages_verified_total",
            "counter",
            "Messages of untrusted clients checked with SPF, DKIM and DMARC.",
            |m| m.messages_verified,
        ),
        (
            "messages_refused_dmarc_total",
            "counter",
            "Messages refused with 550 5.7.1: DMARC fail under p=reject, with dmarc_reject on.",
            |m| m.messages_refused_dmarc,
        ),
        ("sessions_active", "gauge", "SMTP sessions open now.", |m| {
            m.sessions_active
        }),
        (
            "messages_accepted_total",
            "counter",
            "Messages acknowledged with 250.",
            |m| m.messages_accepted,
        ),
        (
            "spool_syncs_total",
            "counter",
            "Spool batches written, each one durable (O_DSYNC) write.",
            |m| m.spool_batch_write.count(),
        ),
        (
            "recipients_delivered_total",
            "counter",
            "Recipients delivered to a next hop.",
            |m| m.recipients_delivered,
        ),
        (
            "recipients_deferred_total",
            "counter",
            "Recipient attempts deferred.",
            |m| m.recipients_deferred,
        ),
        (
            "recipients_failed_total",
            "counter",
            "Recipients failed for good.",
            |m| m.recipients_failed,
        ),
        (
            "notifications_queued_total",
            "counter",
            "Delivery status notifications queued.",
            |m| m.notifications_queued,
        ),
        ("queue_messages", "gauge", "Messages in the queue.", |m| {
            m.queue_messages
        }),
        (
            "spool_segments",
            "gauge",
            "Spool segment files held.",
            |m| m.spool_segments,
        ),
        (
            "spool_quarantined_segments",
            "gauge",
            "Damaged spool segments kept for inspection.",
            |m| m.spool_quarantined_segments,
        ),
        (
            "spool_full",
            "gauge",
            "1 while new mail is refused for lack of spool space.",
            |m| u64::from(m.spool_full),
        ),
    ];
    type ReadHistogram = fn(&ShardMetrics) -> &DurationHistogram;
    let histograms: [(&str, &str, ReadHistogram); 2] = [
        (
            "spool_commit_wait_seconds",
            "From a message's COMMIT reaching the spool until its session knows it is durable: \
             the spool's share of the wait for 250.",
            |m| &m.spool_commit_wait,
        ),
        (
            "spool_batch_write_seconds",
            "Each group commit, from its first write until the shard noticed it durable.",
            |m| &m.spool_batch_write,
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, read) in families {
        text.push_str(&format!(
            "# HELP postern_{name} {help}\n# TYPE postern_{name} {kind}\n"
        ));
        for shard in &shards {
            text.push_str(&format!(
                "postern_{name}{{shard=\"{}\"}} {}\n",
                shard.shard,
                read(shard)
            ));
        }
    }
    for (name, help, read) in histograms {
        text.push_str(&format!(
            "# HELP postern_{name} {help}\n# TYPE postern_{name} histogram\n"
        ));
        for shard in &shards {
            let labels = format!("shard=\"{}\"", shard.shard);
            read(shard).render(&format!("postern_{name}"), &labels, &mut text);
        }
    }
    text
}

fn merge(replies: Vec<AdminReply>) -> (u16, serde_json::Value) {
    let mut entries: Vec<QueueEntry> = Vec::new();
    let mut stats = Vec::new();
    let mut affected = 0;
    let mut found = None;
    let mut kind = "done";
    for reply in replies {
        match reply {
            AdminReply::Entries(more) => {
                kind = "entries";
                entries.extend(more);
            }
            AdminReply::Entry(entry) => {
                kind = "entry";
                found = entry;
            }
            AdminReply::Done { affected: count } => affected += count,
            AdminReply::Failed { reason } => {
                return (503, json!({ "error": format!("not recorded: {reason}") }));
            }
            AdminReply::Stats(shard) => {
                kind = "stats";
                stats.push(shard);
            }
            AdminReply::Metrics(_) => {}
        }
    }
    match kind {
        "entries" => {
            entries.sort_by(|a, b| {
                (a.arrival_unix_ms, &a.queue_id).cmp(&(b.arrival_unix_ms, &b.queue_id))
            });
            (200, json!({ "messages": entries }))
        }
        "entry" => match found {
            Some(entry) => (200, json!({ "message": entry })),
            None => (404, json!({"error": "no such message"})),
        },
        "stats" => (200, json!({ "shards": stats })),
        _ => (200, json!({ "affected": affected })),
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    body: &serde_json::Value,
) -> std::io::Result<()> {
    write_response(stream, status, "application/json", &body.to_string()).await
}

async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        503 => "Service Unavailable",
        _ => "Gateway Timeout",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_their_shard() {
        let id = "0000010100000007";
        assert_eq!(owning_shard(id), Some(1));
        assert_eq!(owning_shard("nothex0100000007"), None);
        assert_eq!(
            route("GET", "/queue", "a"),
            Some((AdminRequest::List, Target::All))
        );
        assert_eq!(
            route("POST", "/queue/0000010300000007/hold", "a"),
            Some((
                AdminRequest::Hold {
                    queue_id: "0000010300000007".into(),
                    actor: "a".into()
                },
                Target::Owner(3)
            ))
        );
        assert_eq!(route("POST", "/queue/0000010300000007/explode", "a"), None);
        assert_eq!(route("DELETE", "/queue", "a"), None);
        assert_eq!(route("GET", "/queue/short", "a"), None);
    }
}
