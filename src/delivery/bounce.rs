//! Delivery status notifications (RFC 3464): the message that tells a sender that mail to some
//! recipients failed or is delayed.
//!
//! It owns the decision whether a notification may be sent at all (never to the null
//! reverse-path, RFC 5321 §6.1 and §4.5.5; only for the actions each recipient's NOTIFY asks
//! for, RFC 3461 §4.1) and the exact bytes of the `multipart/report` (RFC 6522): a
//! human-readable part, the machine-readable `message/delivery-status` part, and the returned
//! original, whole or headers only as RET asks (RFC 3461 §4.3). For SMTPUTF8 originals it uses
//! the internationalized types of RFC 6533. It guarantees CRLF line endings, generated lines of
//! at most 998 octets, field values that cannot inject header lines (remote reply text is
//! untrusted), and a MIME boundary that occurs nowhere in the content. It is pure: no I/O, no
//! clock (the caller passes `now`), and it never sends anything.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::smtp::{Envelope, Notify, Recipient, Ret};
use crate::time::rfc5322_date;
use fields::{clean, field};
use parts::{delivery_status, explanation};

mod fields;
mod parts;

// LIMITATION(L11): RET=FULL returns at most this much.
/// Largest original returned whole for RET=FULL. A larger one comes back as headers only (and
/// the text says so): a bounce bigger than the sender's own size limit would itself bounce.
pub const RETURN_FULL_MAX_BYTES: usize = 10 * 1024 * 1024;

/// RFC 2046 §5.1.1: a boundary has at most 70 characters.
const BOUNDARY_MAX_CHARS: usize = 70;

/// What happened to a recipient (RFC 3464 §2.3.3). Delivered, relayed and expanded are not
/// reported by this relay.
// LIMITATION(L11): no success notifications (NOTIFY=SUCCESS), English text only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Delivery failed permanently; nothing more will be tried.
    Failed,
    /// Delivery has not succeeded yet and will be retried.
    Delayed,
}

impl Action {
    /// The field value, as RFC 3464 §2.3.3 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        }
    }

    /// Whether a recipient with this NOTIFY wants to hear about this action (RFC 3461 §4.1).
    /// Without NOTIFY, this relay reports failures and delays, as if FAILURE,DELAY was given.
    fn is_wanted_by(self, notify: Option<Notify>) -> bool {
        let Some(notify) = notify else {
            return true;
        };
        if notify.never {
            return false;
        }
        match self {
            Action::Failed => notify.failure,
            Action::Delayed => notify.delay,
        }
    }
}

/// One recipient's line of the report.
#[derive(Clone, Debug)]
pub struct RecipientReport<'a> {
    /// The final recipient (RFC 3464 §2.3.2), as accepted in RCPT TO.
    pub address: &'a str,
    /// ORCPT as stored, `addr-type;address` (RFC 3461 §4.2), for `Original-Recipient`.
    pub orcpt: Option<&'a str>,
    /// NOTIFY as given in RCPT TO; decides whether this recipient is reported at all.
    pub notify: Option<Notify>,
    pub action: Action,
    /// The enhanced status code (RFC 3463), e.g. `5.1.1`.
    pub status: &'a str,
    /// The remote host that answered, `mx.example.com` or already typed `dns; mx.example.com`.
    pub remote_mta: Option<&'a str>,
    /// The remote reply, e.g. `550 5.1.1 user unknown`; multi-line replies may keep their CRLFs.
    pub diagnostic: Option<&'a str>,
    pub last_attempt: Option<SystemTime>,
    /// Until when delivery will be retried; reported for `Delayed` only.
    pub will_retry_until: Option<SystemTime>,
}

impl<'a> RecipientReport<'a> {
    /// A report for an accepted recipient, carrying its address, ORCPT and NOTIFY; the optional
    /// details start empty.
    pub fn new(recipient: &'a Recipient, action: Action, status: &'a str) -> RecipientReport<'a> {
        RecipientReport {
            address: &recipient.address,
            orcpt: recipient.orcpt.as_deref(),
            notify: recipient.notify,
            action,
            status,
            remote_mta: None,
            diagnostic: None,
            last_attempt: None,
            will_retry_until: None,
        }
    }
}

/// Everything a notification says about one message.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// This relay's host name (`Reporting-MTA`, and the domain of `MAILER-DAEMON`).
    pub reporting_mta: &'a str,
    /// The original envelope: its reverse-path receives the report; ENVID, RET and SMTPUTF8
    /// shape it.
    pub envelope: &'a Envelope,
    pub queue_id: &'a str,
    pub arrival: SystemTime,
    pub now: SystemTime,
    /// The original message as stored: headers and body, CRLF line endings.
    pub message: &'a [u8],
    pub recipients: &'a [RecipientReport<'a>],
}

/// Renders the notification for `report`, or `None` when none may be sent: the reverse-path is
/// null (a bounce to `<>` could loop; RFC 5321 §6.1), or no recipient's NOTIFY asks for its
/// action. Recipients whose NOTIFY excludes their action are left out of the report.
///
/// The result is 7-bit unless the original, an address or a remote reply carries 8-bit text;
/// then it must be sent with BODY=8BITMIME (and SMTPUTF8 when the original used it). An
/// original with lines over 998 octets is embedded as it is, and the bounce inherits them.
pub fn render(report: &Report) -> Option<Vec<u8>> {
    if report.envelope.mail_from.is_empty() {
        return None;
    }
    let reported: Vec<&RecipientReport> = report
        .recipients
        .iter()
        .filter(|recipient| recipient.action.is_wanted_by(recipient.notify))
        .collect();
    if reported.is_empty() {
        return None;
    }

    let kind = Kind::of(report.envelope);
    let any_failed = reported
        .iter()
        .any(|recipient| recipient.action == Action::Failed);
    let returned = Returned::choose(report, any_failed);
    let explanation = explanation(report, &reported, &returned);
    let status = delivery_status(report, &reported, kind);

    let boundary = boundary(
        report,
        &[
            explanation.as_bytes(),
            status.as_bytes(),
            returned.content(),
        ],
    );
    Some(assemble(
        report,
        kind,
        any_failed,
        &boundary,
        &explanation,
        &status,
        &returned,
    ))
}

/// Plain DSN, or the internationalized one of RFC 6533 for SMTPUTF8 originals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    Global,
}

impl Kind {
    fn of(envelope: &Envelope) -> Kind {
        if envelope.smtputf8 {
            Kind::Global
        } else {
            Kind::Plain
        }
    }

    /// The multipart/report `report-type`, which names the second part's subtype (RFC 6522 §3).
    fn report_type(self) -> &'static str {
        match self {
            Kind::Plain => "delivery-status",
            Kind::Global => "global-delivery-status",
        }
    }

    fn status_type(self) -> &'static str {
        match self {
            Kind::Plain => "message/delivery-status",
            Kind::Global => "message/global-delivery-status",
        }
    }

    fn full_type(self) -> &'static str {
        match self {
            Kind::Plain => "message/rfc822",
            Kind::Global => "message/global",
        }
    }

    fn headers_type(self) -> &'static str {
        match self {
            Kind::Plain => "text/rfc822-headers",
            Kind::Global => "message/global-headers",
        }
    }
}

/// What of the original goes back to the sender.
enum Returned<'a> {
    Full(&'a [u8]),
    Headers {
        headers: &'a [u8],
        /// RET=FULL was asked but the message exceeds `RETURN_FULL_MAX_BYTES`.
        too_large: bool,
    },
}

impl<'a> Returned<'a> {
    /// RFC 3461 §4.3: RET=FULL returns the whole message in a *failure* report; delay reports,
    /// RET=HDRS and no RET return the headers.
    fn choose(report: &Report<'a>, any_failed: bool) -> Returned<'a> {
        let full_wanted = report.envelope.ret == Some(Ret::Full) && any_failed;
        let fits = report.message.len() <= RETURN_FULL_MAX_BYTES;
        if full_wanted && fits {
            return Returned::Full(report.message);
        }
        Returned::Headers {
            headers: header_block(report.message),
            too_large: full_wanted,
        }
    }

    fn content(&self) -> &'a [u8] {
        match self {
            Returned::Full(message) => message,
            Returned::Headers { headers, .. } => headers,
        }
    }
}

/// The header section of `message`: everything before the first empty line (RFC 5322 §2.1),
/// with the last header's line ending. A message that starts with an empty line has none; one
/// without an empty line is all header.
pub fn header_block(message: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < message.len() {
        let end = match memchr::memchr(b'\n', &message[start..]) {
            Some(offset) => start + offset + 1,
            None => message.len(),
        };
        let line = &message[start..end];
        if line == b"\r\n" || line == b"\n" {
            return &message[..start];
        }
        start = end;
    }
    message
}

/// A boundary made from the queue id and the time, lengthened with a counter until it occurs in
/// no part (RFC 2046 §5.1.1: the boundary must not appear in the encapsulated content).
fn boundary(report: &Report, parts: &[&[u8]]) -> String {
    let queue_id: String = report
        .queue_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    let base = format!("=_postern-{queue_id}-{}", unix_seconds(report.now));
    let mut candidate = base.clone();
    let mut attempt: u64 = 0;
    while parts
        .iter()
        .any(|part| memchr::memmem::find(part, candidate.as_bytes()).is_some())
    {
        attempt += 1;
        candidate = format!("{base}-{attempt}");
    }
    debug_assert!(candidate.len() <= BOUNDARY_MAX_CHARS);
    candidate
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn is_eight_bit(bytes: &[u8]) -> bool {
    bytes.iter().any(|byte| *byte >= 0x80)
}

/// The whole message: RFC 5322 header, then the three parts of the multipart/report.
fn assemble(
    report: &Report,
    kind: Kind,
    any_failed: bool,
    boundary: &str,
    explanation: &str,
    status: &str,
    returned: &Returned,
) -> Vec<u8> {
    let host = clean(report.reporting_mta, false);
    let sender = clean(&report.envelope.mail_from, true);
    let (subject, action) = if any_failed {
        ("Undelivered Mail Returned to Sender", "failed")
    } else {
        ("Delayed Mail (still being retried)", "delayed")
    };
    let queue_id: String = report
        .queue_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let content = returned.content();
    let eight_bit = [explanation.as_bytes(), status.as_bytes(), content]
        .iter()
        .any(|part| is_eight_bit(part));

    let mut head = String::new();
    field(
        &mut head,
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{host}>"),
    );
    field(&mut head, "To", &format!("<{sender}>"));
    field(&mut head, "Subject", subject);
    field(&mut head, "Date", &rfc5322_date(report.now));
    field(
        &mut head,
        "Message-ID",
        &format!("<{}.{queue_id}.{action}@{host}>", unix_seconds(report.now)),
    );
    field(&mut head, "MIME-Version", "1.0");

    // RFC 3834 §5.2: marks the report as automatic, so that responders do not answer it.
    field(&mut head, "Auto-Submitted", "auto-replied");
    field(
        &mut head,
        "Content-Type",
        &format!(
            "multipart/report; report-type={}; boundary=\"{boundary}\"",
            kind.report_type()
        ),
    );
    if eight_bit {
        field(&mut head, "Content-Transfer-Encoding", "8bit");
    }
    head.push_str("\r\nThis is a MIME-encapsulated delivery status notification.\r\n");

    let mut out = head.into_bytes();
    let text_charset = if explanation.is_ascii() {
        "us-ascii"
    } else {
        "utf-8"
    };
    part(
        &mut out,
        boundary,
        &format!("text/plain; charset={text_charset}"),
        "Notification",
        explanation.as_bytes(),
    );
    part(
        &mut out,
        boundary,
        kind.status_type(),
        "Delivery report",
        status.as_bytes(),
    );
    let (returned_type, description) = match returned {
        Returned::Full(_) => (kind.full_type(), "Undelivered message"),
        Returned::Headers { .. } => (kind.headers_type(), "Undelivered message headers"),
    };
    part(&mut out, boundary, returned_type, description, content);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// One body part. The CRLF before each delimiter belongs to the delimiter (RFC 2046 §5.1.1),
/// so `content` comes back exactly as given.
fn part(out: &mut Vec<u8>, boundary: &str, content_type: &str, description: &str, content: &[u8]) {
    let mut head = format!("\r\n--{boundary}\r\n");
    field(&mut head, "Content-Type", content_type);
    field(&mut head, "Content-Description", description);
    if is_eight_bit(content) {
        field(&mut head, "Content-Transfer-Encoding", "8bit");
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::fields::{FOLD_COLUMN, LINE_MAX_OCTETS};
    use super::*;
    use std::time::Duration;

    const MESSAGE: &[u8] = b"Received: from client.test\r\n\
        From: Sender <sender@example.org>\r\n\
        Subject: Hello\r\n\
        \r\n\
        Subject: not a header, the body\r\n\
        .. and more body\r\n";

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn envelope(mail_from: &str, notify: Option<Notify>) -> Envelope {
        Envelope {
            helo: "client.test".into(),
            mail_from: mail_from.into(),
            rcpt_to: vec![
                Recipient {
                    address: "gone@example.com".into(),
                    notify,
                    orcpt: Some("rfc822;alias@example.net".into()),
                },
                Recipient {
                    address: "slow@example.com".into(),
                    notify,
                    orcpt: None,
                },
            ],
            ..Envelope::default()
        }
    }

    fn failed(recipient: &Recipient) -> RecipientReport<'_> {
        RecipientReport {
            remote_mta: Some("mx.example.com"),
            diagnostic: Some("550 5.1.1 <gone@example.com>: user unknown"),
            last_attempt: Some(at(1_800_000_100)),
            ..RecipientReport::new(recipient, Action::Failed, "5.1.1")
        }
    }

    fn delayed(recipient: &Recipient) -> RecipientReport<'_> {
        RecipientReport {
            remote_mta: Some("dns; mx2.example.com"),
            diagnostic: Some("451 4.3.0 try later"),
            last_attempt: Some(at(1_800_000_200)),
            will_retry_until: Some(at(1_800_432_000)),
            ..RecipientReport::new(recipient, Action::Delayed, "4.3.0")
        }
    }

    fn render_with(envelope: &Envelope, recipients: &[RecipientReport]) -> Option<String> {
        let report = Report {
            reporting_mta: "relay.example.net",
            envelope,
            queue_id: "Q1A2B3",
            arrival: at(1_800_000_000),
            now: at(1_800_000_300),
            message: MESSAGE,
            recipients,
        };
        render(&report).map(|bytes| String::from_utf8(bytes).expect("a UTF-8 test bounce"))
    }

    fn notify(never: bool, failure: bool, delay: bool) -> Option<Notify> {
        Some(Notify {
            never,
            success: false,
            failure,
            delay,
        })
    }

    #[test]
    fn the_null_reverse_path_never_gets_a_bounce() {
        let envelope = envelope("", None);
        let recipients = [failed(&envelope.rcpt_to[0])];
        assert_eq!(render_with(&envelope, &recipients), None);
    }

    #[test]
    fn notify_decides_who_is_reported() {
        // NOTIFY=NEVER: nothing at all.
        let never = envelope("sender@example.org", notify(true, false, false));
        let recipients = [failed(&never.rcpt_to[0]), delayed(&never.rcpt_to[1])];
        assert_eq!(render_with(&never, &recipients), None);

        // NOTIFY=FAILURE: a failure is reported, a delay is not.
        let failure_only = envelope("sender@example.org", notify(false, true, false));
        let recipients = [delayed(&failure_only.rcpt_to[1])];
        assert_eq!(render_with(&failure_only, &recipients), None);
        let recipients = [failed(&failure_only.rcpt_to[0])];
        assert!(render_with(&failure_only, &recipients).is_some());

        // NOTIFY=DELAY: the other way round.
        let delay_only = envelope("sender@example.org", notify(false, false, true));
        let recipients = [failed(&delay_only.rcpt_to[0])];
        assert_eq!(render_with(&delay_only, &recipients), None);
        let recipients = [delayed(&delay_only.rcpt_to[1])];
        assert!(render_with(&delay_only, &recipients).is_some());

        // No NOTIFY: failures and delays are both reported.
        let default = envelope("sender@example.org", None);
        let recipients = [failed(&default.rcpt_to[0]), delayed(&default.rcpt_to[1])];
        let bounce = render_with(&default, &recipients).expect("a bounce");
        assert!(bounce.contains("Final-Recipient: rfc822; gone@example.com\r\n"));
        assert!(bounce.contains("Final-Recipient: rfc822; slow@example.com\r\n"));
    }

    #[test]
    fn a_recipient_that_asked_for_silence_is_left_out_of_a_shared_report() {
        let mut envelope = envelope("sender@example.org", None);
        envelope.rcpt_to[1].notify = notify(true, false, false);
        let recipients = [
            failed(&envelope.rcpt_to[0]),
            RecipientReport::new(&envelope.rcpt_to[1], Action::Failed, "5.1.1"),
        ];
        let bounce = render_with(&envelope, &recipients).expect("a bounce");
        assert!(bounce.contains("gone@example.com"));
        assert!(!bounce.contains("slow@example.com"));
    }

    #[test]
    fn headers_are_returned_by_default_and_for_ret_hdrs() {
        for ret in [None, Some(Ret::Headers)] {
            let mut envelope = envelope("sender@example.org", None);
            envelope.ret = ret;
            let recipients = [failed(&envelope.rcpt_to[0])];
            let bounce = render_with(&envelope, &recipients).expect("a bounce");
            assert!(
                bounce.contains("Content-Type: text/rfc822-headers\r\n"),
                "{ret:?}"
            );
            assert!(bounce.contains("Subject: Hello\r\n"));
            assert!(!bounce.contains("not a header, the body"));
            assert!(!bounce.contains("message/rfc822"));
        }
    }

    #[test]
    fn ret_full_returns_the_whole_message_on_failure_only() {
        let mut envelope = envelope("sender@example.org", None);
        envelope.ret = Some(Ret::Full);
        let recipients = [failed(&envelope.rcpt_to[0])];
        let bounce = render_with(&envelope, &recipients).expect("a bounce");
        assert!(bounce.contains("Content-Type: message/rfc822\r\n"));
        let message = std::str::from_utf8(MESSAGE).expect("ASCII");
        assert!(
            bounce.contains(message),
            "the original comes back byte for byte"
        );

        // RFC 3461 §4.3: RET applies to failure reports; a delay report carries headers.
        let recipients = [delayed(&envelope.rcpt_to[1])];
        let bounce = render_with(&envelope, &recipients).expect("a bounce");
        assert!(bounce.contains("Content-Type: text/rfc822-headers\r\n"));
        assert!(!bounce.contains("not a header, the body"));
    }

    #[test]
    fn envid_orcpt_and_the_per_recipient_fields_are_reported() {
        let mut envelope = envelope("sender@example.org", None);
        envelope.envid = Some("QQ314159".into());
        let recipients = [failed(&envelope.rcpt_to[0]), delayed(&envelope.rcpt_to[1])];
        let bounce = render_with(&envelope, &recipients).expect("a bounce");
        for expected in [
            "Original-Envelope-Id: QQ314159\r\n",
            "Reporting-MTA: dns; relay.example.net\r\n",
            "Arrival-Date: Fri, 15 Jan 2027 08:00:00 +0000\r\n",
            "\r\nOriginal-Recipient: rfc822;alias@example.net\r\n\
             Final-Recipient: rfc822; gone@example.com\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Remote-MTA: dns; mx.example.com\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <gone@example.com>: user unknown\r\n\
             Last-Attempt-Date: Fri, 15 Jan 2027 08:01:40 +0000\r\n\r\n",
            "Final-Recipient: rfc822; slow@example.com\r\n\
             Action: delayed\r\n\
             Status: 4.3.0\r\n\
             Remote-MTA: dns; mx2.example.com\r\n",
            "Will-Retry-Until: Wed, 20 Jan 2027 08:00:00 +0000\r\n",
        ] {
            assert!(
                bounce.contains(expected),
                "missing {expected:?} in\n{bounce}"
            );
        }
        assert_eq!(
            bounce.matches("Will-Retry-Until").count(),
            1,
            "delayed only"
        );
    }

    #[test]
    fn the_header_block_ends_at_the_first_empty_line() {
        assert_eq!(
            header_block(MESSAGE),
            b"Received: from client.test\r\nFrom: Sender <sender@example.org>\r\n\
              Subject: Hello\r\n"
        );
        assert_eq!(header_block(b"\r\nbody only\r\n"), b"");
        assert_eq!(header_block(b"A: 1\r\nB: 2\r\n"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_block(b"A: 1\r\nB: 2"), b"A: 1\r\nB: 2");
        assert_eq!(header_block(b"A: 1\n\nbody\n"), b"A: 1\n");
        assert_eq!(header_block(b""), b"");
    }

    #[test]
    fn the_report_is_addressed_and_marked_as_automatic() {
        let envelope = envelope("sender@example.org", None);
        let recipients = [failed(&envelope.rcpt_to[0])];
        let bounce = render_with(&envelope, &recipients).expect("a bounce");
        let (head, _) = bounce.split_once("\r\n\r\n").expect("a header section");
        for expected in [
            "From: Mail Delivery System <MAILER-DAEMON@relay.example.net>",
            "To: <sender@example.org>",
            "Subject: Undelivered Mail Returned to Sender",
            "Date: Fri, 15 Jan 2027 08:05:00 +0000",
            "Message-ID: <1800000300.Q1A2B3.failed@relay.example.net>",
            "MIME-Version: 1.0",
            "Auto-Submitted: auto-replied",
            "Content-Type: multipart/report; report-type=delivery-status;",
        ] {
            assert!(head.contains(expected), "missing {expected:?} in\n{head}");
        }

        let recipients = [delayed(&envelope.rcpt_to[1])];
        let bounce = render_with(&envelope, &recipients).expect("a bounce");
        assert!(bounce.contains("Subject: Delayed Mail (still being retried)\r\n"));
        let words = bounce.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.contains("(retrying until Wed, 20 Jan 2027 08:00:00 +0000)"));
    }

    #[test]
    fn remote_text_cannot_inject_lines_and_long_text_is_folded() {
        let envelope = envelope("sender@example.org", None);
        let long_reply = format!(
            "550-5.7.1 first line\r\n550 5.7.1 second{}\r\nBcc: victim@example.org",
            " word".repeat(300)
        );
        let recipients = [RecipientReport {
            diagnostic: Some(&long_reply),
            ..failed(&envelope.rcpt_to[0])
        }];
        let bounce = render_with(&envelope, &recipients).expect("a bounce");
        assert!(
            !bounce.contains("\r\nBcc:"),
            "a remote reply injected a line"
        );
        assert!(bounce.contains("Diagnostic-Code: smtp; 550-5.7.1 first line 550 5.7.1 second"));
        for line in bounce.split("\r\n") {
            assert!(line.len() <= LINE_MAX_OCTETS, "{} octets", line.len());
            assert!(
                !line.contains('\n') && !line.contains('\r'),
                "bare line end"
            );
        }
        let diagnostic_lines = bounce
            .split("\r\n")
            .skip_while(|line| !line.starts_with("Diagnostic-Code:"))
            .take_while(|line| line.starts_with("Diagnostic-Code:") || line.starts_with(' '))
            .collect::<Vec<_>>();
        assert!(diagnostic_lines.len() > 10, "folded: {diagnostic_lines:?}");
        assert!(diagnostic_lines
            .iter()
            .all(|line| line.len() <= FOLD_COLUMN));
    }

    #[test]
    fn the_boundary_never_occurs_in_the_content() {
        let base = "=_postern-Q1A2B3-1800000300";
        let message = format!("Subject: trap\r\n\r\n--{base}\r\n--{base}-1\r\n");
        let envelope = Envelope {
            ret: Some(Ret::Full),
            ..envelope("sender@example.org", None)
        };
        let recipients = [failed(&envelope.rcpt_to[0])];
        let report = Report {
            reporting_mta: "relay.example.net",
            envelope: &envelope,
            queue_id: "Q1A2B3",
            arrival: at(1_800_000_000),
            now: at(1_800_000_300),
            message: message.as_bytes(),
            recipients: &recipients,
        };
        let bounce = String::from_utf8(render(&report).expect("a bounce")).expect("UTF-8");
        assert!(
            bounce.contains(&format!("boundary=\"{base}-2\"")),
            "{bounce}"
        );
    }

    #[test]
    fn smtputf8_originals_get_the_global_types() {
        let mut envelope = envelope("sénder@example.org", None);
        envelope.smtputf8 = true;
        envelope.ret = Some(Ret::Full);
        envelope.rcpt_to[0].address = "jörg@example.com".into();
        let recipients = [failed(&envelope.rcpt_to[0])];
        let bounce = render_with(&envelope, &recipients).expect("a bounce");
        assert!(bounce.contains("report-type=global-delivery-status"));
        assert!(bounce.contains("Content-Type: message/global-delivery-status\r\n"));
        assert!(bounce.contains("Content-Type: message/global\r\n"));
        assert!(bounce.contains("Final-Recipient: utf-8; jörg@example.com\r\n"));
        assert!(bounce.contains("To: <sénder@example.org>\r\n"));
        assert!(bounce.contains("Content-Transfer-Encoding: 8bit\r\n"));

        envelope.ret = None;
        let bounce = render_with(&envelope, &recipients).expect("a bounce");
        assert!(bounce.contains("Content-Type: message/global-headers\r\n"));
    }

    #[test]
    fn a_plain_report_stays_seven_bit() {
        let mut envelope = envelope("sender@example.org", None);
        envelope.envid = Some("id with space+é".into());
        let recipients = [RecipientReport {
            diagnostic: Some("550 nö"),
            ..failed(&envelope.rcpt_to[0])
        }];
        let report = Report {
            reporting_mta: "relay.example.net",
            envelope: &envelope,
            queue_id: "Q1",
            arrival: at(0),
            now: at(0),
            message: MESSAGE,
            recipients: &recipients,
        };
        let bounce = render(&report).expect("a bounce");
        let (_, status_part) = std::str::from_utf8(&bounce)
            .expect("UTF-8")
            .split_once("message/delivery-status")
            .expect("a status part");
        let status_part = status_part
            .split("text/rfc822-headers")
            .next()
            .expect("part");
        assert!(status_part.is_ascii(), "{status_part}");
        assert!(status_part.contains("Original-Envelope-Id: id+20with+20space+2B+C3+A9\r\n"));
        assert!(status_part.contains("Diagnostic-Code: smtp; 550 n?\r\n"));
    }

    #[test]
    fn an_oversized_original_comes_back_as_headers_and_the_text_says_so() {
        let mut message = b"Subject: big\r\n\r\n".to_vec();
        message.resize(RETURN_FULL_MAX_BYTES + 1, b'x');
        let envelope = Envelope {
            ret: Some(Ret::Full),
            ..envelope("sender@example.org", None)
        };
        let recipients = [failed(&envelope.rcpt_to[0])];
        let report = Report {
            reporting_mta: "relay.example.net",
            envelope: &envelope,
            queue_id: "Q1",
            arrival: at(0),
            now: at(0),
            message: &message,
            recipients: &recipients,
        };
        let bounce = String::from_utf8(render(&report).expect("a bounce")).expect("UTF-8");
        assert!(bounce.contains("Content-Type: text/rfc822-headers\r\n"));
        assert!(bounce.contains("too large to return whole"));
        assert!(bounce.len() < 10_000);
    }
}
