//! Delivery status notifications from the shard: the original message read back, the report
//! rendered by `delivery::bounce`, and the result queued as a new message like any other.
//!
//! A bounce is durable (its COMMIT synced) before the caller records the recipients as failed,
//! so a crash between the two can repeat a notification but never lose one. Bounces go out with
//! the null reverse-path, so a bounce that fails is never bounced again (RFC 5321 §6.1).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{error, info};

use super::message::SpoolMessage;
use super::queue::{Outcome, Queue};
use crate::delivery::bounce::{render, Action, RecipientReport, Report};
use crate::smtp::{BodyType, Envelope, Recipient};
use crate::spool::BodyLocation;
use crate::time::rfc5322_date;

impl Queue {
    /// Tells the sender of `queue_id` what happened to these recipients, if their NOTIFY
    /// settings and the reverse-path allow a report at all.
    pub(super) async fn bounce(&self, queue_id: &str, outcomes: &[Outcome], action: Action) {
        let original = self.with_index(|index| {
            index.get(queue_id).map(|message| {
                let commit = &message.commit;
                (
                    commit.envelope.clone(),
                    commit.header_prefix.clone(),
                    commit.body.clone(),
                    commit.received_at_unix_ms,
                )
            })
        });
        let Some((envelope, header_prefix, body, received)) = original else {
            return;
        };
        if envelope.mail_from.is_empty() {
            return; // A bounce itself: never answered (RFC 5321 §6.1).
        }
        let mut content = header_prefix;
        match body {
            BodyLocation::Inline(bytes) => content.extend_from_slice(&bytes),
            BodyLocation::Extents(extents) => match self.spool.read_extents(&extents).await {
                Ok(body) => content.extend_from_slice(&body),
                Err(error) => {
                    error!(
                        %queue_id,
                        %error,
                        "cannot read the message back to report on it; the sender is not notified"
                    );
                    return;
                }
            },
        };

        let now = SystemTime::now();
        let retry_until = UNIX_EPOCH + Duration::from_millis(self.expires_unix_ms(received));
        let remote_hosts: Vec<String> = outcomes.iter().map(|o| remote_host(&o.relay)).collect();
        let reports: Vec<RecipientReport<'_>> = outcomes
            .iter()
            .zip(&remote_hosts)
            .map(|(outcome, host)| {
                let result = &outcome.result;
                let recipient = &envelope.rcpt_to[result.index as usize];
                let mut report = RecipientReport::new(recipient, action, &result.status);
                // Only a next hop's reply is passed on; local reasons stay in our log.
                let remote = !host.is_empty();
                report.remote_mta = remote.then_some(host.as_str());
                report.diagnostic = remote.then_some(result.detail.as_str());
                report.last_attempt = Some(now);
                report.will_retry_until = (action == Action::Delayed).then_some(retry_until);
                report
            })
            .collect();
        let rendered = render(&Report {
            reporting_mta: &self.hostname,
            envelope: &envelope,
            queue_id,
            arrival: UNIX_EPOCH + Duration::from_millis(received),
            now,
            message: &content,
            recipients: &reports,
        });
        let Some(mut notification) = rendered else {
            return; // NOTIFY asked for no report of this kind.
        };
        self.queue_notification(queue_id, &envelope, &mut notification, action)
            .await;
    }

    /// Commits a rendered notification as a new message to the original sender.
    async fn queue_notification(
        &self,
        original: &str,
        envelope: &Envelope,
        notification: &mut Vec<u8>,
        action: Action,
    ) {
        let eight_bit = notification.iter().any(|&byte| byte >= 0x80);
        let bounce_envelope = Envelope {
            helo: self.hostname.clone(),
            mail_from: String::new(),
            rcpt_to: vec![Recipient {
                address: envelope.mail_from.clone(),
                notify: None,
                orcpt: None,
            }],
            body: if eight_bit {
                BodyType::EightBitMime
            } else {
                BodyType::SevenBit
            },
            smtputf8: envelope.smtputf8 && eight_bit,
            declared_size: None,
            ret: None,
            envid: None,
            // RFC 4954 §5: a message the relay writes itself was submitted by nobody.
            auth: Some("<>".to_owned()),
        };

        let queue_id = self.next_queue_id();
        let received = format!(
            "Received: by {} (postern) id {queue_id};\r\n\t{}\r\n",
            self.hostname,
            rfc5322_date(SystemTime::now())
        );
        let mut message = SpoolMessage::begin(&self.spool, queue_id.clone(), &received);
        message.append(notification).await;
        match message.commit(&bounce_envelope).await {
            Ok((record, location)) => {
                self.accept(location, record);
                let notifications = &self.outcomes.notifications;
                notifications.set(notifications.get() + 1);
                info!(
                    %original,
                    notification = %queue_id,
                    to = %envelope.mail_from,
                    action = action.as_str(),
                    "delivery status notification queued"
                );
            }
            Err(failure) => error!(
                %original,
                %failure,
                "cannot queue the delivery status notification; the sender is not notified"
            ),
        }
    }
}

/// The host part of a relay address (`192.0.2.25:25` → `192.0.2.25`); empty when no next hop
/// answered (`-`).
fn remote_host(relay: &str) -> String {
    if relay == "-" {
        return String::new();
    }
    relay
        .parse::<std::net::SocketAddr>()
        .map(|address| address.ip().to_string())
        .unwrap_or_else(|_| relay.to_owned())
}
