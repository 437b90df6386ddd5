//! The first two parts of a notification: the explanation for a person (part 1) and the
//! machine-readable `message/delivery-status` fields (part 2, RFC 3464 §2.2 and §2.3). The
//! person's text names recipients and remote replies, never internal details; every value from
//! outside passes through `fields` so it cannot break a line. Pure: no I/O.

use super::fields::{clean, field, host_name, paragraph, text_value, wrap, xtext};
use super::{Action, Kind, RecipientReport, Report, Returned};
use crate::time::rfc5322_date;

/// Part 1: what happened, for a person. It names recipients and the remote replies, never
/// internal details.
pub(super) fn explanation(
    report: &Report,
    reported: &[&RecipientReport],
    returned: &Returned,
) -> String {
    let mut text = String::new();
    paragraph(
        &mut text,
        &format!(
            "This is the mail system at {}.",
            clean(report.reporting_mta, true)
        ),
    );

    let failed: Vec<_> = reported
        .iter()
        .filter(|recipient| recipient.action == Action::Failed)
        .collect();
    let delayed: Vec<_> = reported
        .iter()
        .filter(|recipient| recipient.action == Action::Delayed)
        .collect();

    if !failed.is_empty() {
        paragraph(
            &mut text,
            "Your message could not be delivered to the recipients below. This is a permanent \
             error; the mail system has given up on them.",
        );
        for recipient in failed {
            recipient_line(&mut text, recipient);
        }
        text.push_str("\r\n");
    }
    if !delayed.is_empty() {
        paragraph(
            &mut text,
            "Your message has not yet been delivered to the recipients below. The mail system \
             will keep trying; you do not need to send it again.",
        );
        for recipient in delayed {
            recipient_line(&mut text, recipient);
        }
        text.push_str("\r\n");
    }

    let attached = match returned {
        Returned::Full(_) => "Your message is attached below.",
        Returned::Headers {
            too_large: false, ..
        } => "The headers of your message are attached below.",
        Returned::Headers {
            too_large: true, ..
        } => "Your message was too large to return whole; its headers are attached below.",
    };
    wrap(&mut text, attached, "");
    text
}

fn recipient_line(text: &mut String, recipient: &RecipientReport) {
    let reason = match (recipient.diagnostic, recipient.remote_mta) {
        (Some(diagnostic), Some(remote)) => {
            format!("{} said: {}", host_name(remote), clean(diagnostic, true))
        }
        (Some(diagnostic), None) => format!("the remote server said: {}", clean(diagnostic, true)),
        (None, _) => describe(recipient.status).to_owned(),
    };
    let mut line = format!("<{}>: {reason}", clean(recipient.address, true));
    if recipient.action == Action::Delayed {
        if let Some(until) = recipient.will_retry_until {
            line.push_str(&format!(" (retrying until {})", rfc5322_date(until)));
        }
    }
    wrap(text, &line, "    ");
}

/// A few words for the common enhanced status codes (RFC 3463 §3), else for the class.
fn describe(status: &str) -> &'static str {
    match status {
        "5.1.1" => "the mailbox does not exist",
        "5.1.2" => "the recipient's domain does not exist or cannot receive mail",
        "5.1.10" => "the recipient's domain accepts no mail (null MX)",
        "4.4.1" | "4.4.2" => "the recipient's mail server did not answer",
        "4.4.3" | "5.4.3" => "the recipient's mail server could not be looked up in the DNS",
        "4.4.7" | "5.4.7" => "delivery did not succeed in the time allowed",
        "5.2.2" | "4.2.2" => "the mailbox is full",
        "5.3.4" => "the message is too large for the recipient's mail server",
        _ if status.starts_with('5') => "permanent delivery failure",
        _ => "temporary delivery failure",
    }
}

/// Part 2: the machine-readable report (RFC 3464 §2.2 per-message and §2.3 per-recipient
/// fields), each group ending in an empty line except the last.
pub(super) fn delivery_status(
    report: &Report,
    reported: &[&RecipientReport],
    kind: Kind,
) -> String {
    let global = kind == Kind::Global;
    let mut status = String::new();
    if let Some(envid) = &report.envelope.envid {
        field(
            &mut status,
            "Original-Envelope-Id",
            &text_value(envid, global),
        );
    }
    field(
        &mut status,
        "Reporting-MTA",
        &format!("dns; {}", clean(report.reporting_mta, false)),
    );
    field(&mut status, "Arrival-Date", &rfc5322_date(report.arrival));

    // An extension field (RFC 3464 §2.2: after the standard ones), so that a postmaster handed
    // the report can find the message in `postern queue`.
    field(
        &mut status,
        "X-Postern-Queue-ID",
        &clean(report.queue_id, false),
    );

    for recipient in reported {
        status.push_str("\r\n");
        if let Some(orcpt) = recipient.orcpt {
            field(
                &mut status,
                "Original-Recipient",
                &text_value(orcpt, global),
            );
        }
        field(
            &mut status,
            "Final-Recipient",
            &final_recipient(recipient.address, global),
        );
        field(&mut status, "Action", recipient.action.as_str());
        field(&mut status, "Status", &clean(recipient.status, false));
        if let Some(remote) = recipient.remote_mta {
            field(
                &mut status,
                "Remote-MTA",
                &format!("dns; {}", clean(host_name(remote), false)),
            );
        }
        if let Some(diagnostic) = recipient.diagnostic {
            field(
                &mut status,
                "Diagnostic-Code",
                &format!("smtp; {}", clean(diagnostic, global)),
            );
        }
        if let Some(last_attempt) = recipient.last_attempt {
            field(
                &mut status,
                "Last-Attempt-Date",
                &rfc5322_date(last_attempt),
            );
        }
        if let (Action::Delayed, Some(until)) = (recipient.action, recipient.will_retry_until) {
            field(&mut status, "Will-Retry-Until", &rfc5322_date(until));
        }
    }
    status
}

/// `rfc822; address`, or `utf-8; address` for a non-ASCII address in a global DSN (RFC 6533
/// §3). A plain DSN is 7-bit, so a non-ASCII address there is xtext-encoded (RFC 3461 §4).
fn final_recipient(address: &str, global: bool) -> String {
    if address.is_ascii() {
        format!("rfc822; {}", text_value(address, false))
    } else if global {
        format!("utf-8; {}", clean(address, true))
    } else {
        format!("rfc822; {}", xtext(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_without_diagnostic_still_reads_as_a_reason() {
        assert_eq!(
            describe("5.1.10"),
            "the recipient's domain accepts no mail (null MX)"
        );
        assert_eq!(describe("5.9.9"), "permanent delivery failure");
        assert_eq!(describe("4.9.9"), "temporary delivery failure");
    }

    #[test]
    fn final_recipient_uses_utf8_only_in_a_global_report() {
        assert_eq!(
            final_recipient("a@example.com", false),
            "rfc822; a@example.com"
        );
        assert_eq!(
            final_recipient("jö@example.com", true),
            "utf-8; jö@example.com"
        );
        assert_eq!(
            final_recipient("jö@example.com", false),
            "rfc822; j+C3+B6@example.com"
        );
    }
}
