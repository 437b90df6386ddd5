//! Scenario: a rendered delivery status notification, read back by an independent MIME
//! implementation (Python's `email` package, `policy.default`): the report type, each part's
//! type, the RFC 3464 fields of every recipient, and the returned original, for RET=HDRS,
//! RET=FULL and an SMTPUTF8 original. python3 comes from the Debian package `python3`
//! (installed by `.ci/run`); without it this test fails, it never skips.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postern::delivery::bounce::{self, Action, RecipientReport, Report};
use postern::smtp::{Envelope, Notify, Recipient, Ret};

/// The longest Python may take to parse one bounce.
const PARSE_PATIENCE: Duration = Duration::from_secs(30);

/// Reads the bounce named by argv[1] and prints what it found as `key=value` lines.
const READER: &str = r#"
import sys, email, email.policy
message = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=email.policy.default)
def emit(key, value):
    print(f"{key}={value}")
emit("content-type", message.get_content_type())
emit("report-type", message.get_param("report-type"))
for name in ["From", "To", "Subject", "Auto-Submitted", "MIME-Version", "Message-ID", "Date"]:
    emit(name, message[name])
emit("defects", sum(len(part.defects) for part in message.walk()))
parts = message.get_payload()
emit("parts", len(parts))
for index, part in enumerate(parts):
    emit(f"part{index}", part.get_content_type())
emit("text", " ".join(parts[0].get_content().split()))
status = parts[1]
if status.get_content_type() == "message/delivery-status":
    blocks = status.get_payload()
    emit("blocks", len(blocks))
    for name in ["Reporting-MTA", "Original-Envelope-Id", "Arrival-Date"]:
        emit(f"message.{name}", blocks[0][name])
    for index, block in enumerate(blocks[1:]):
        for name in ["Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-MTA",
                     "Diagnostic-Code", "Last-Attempt-Date", "Will-Retry-Until"]:
            emit(f"recipient{index}.{name}", block[name])
returned = parts[2]
if returned.get_content_type() in ("message/rfc822", "message/global"):
    inner = returned.get_payload(0)
    emit("returned.subject", inner["Subject"])
    emit("returned.body", inner.get_payload().strip())
else:
    emit("returned.text", repr(returned.get_payload()))
"#;

const MESSAGE: &[u8] = b"From: Sender <sender@example.org>\r\n\
    To: gone@example.com, slow@example.com\r\n\
    Subject: Quarterly figures\r\n\
    Message-ID: <original.1@example.org>\r\n\
    \r\n\
    The figures are attached in spirit.\r\n";

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn envelope(ret: Option<Ret>, smtputf8: bool) -> Envelope {
    Envelope {
        helo: "client.example.org".into(),
        mail_from: "sender@example.org".into(),
        rcpt_to: vec![
            Recipient {
                address: "gone@example.com".into(),
                notify: Some(Notify {
                    never: false,
                    success: false,
                    failure: true,
                    delay: true,
                }),
                orcpt: Some("rfc822;gone-alias@example.net".into()),
            },
            Recipient {
                address: "slow@example.com".into(),
                notify: None,
                orcpt: None,
            },
        ],
        smtputf8,
        ret,
        envid: Some("ENV-2718".into()),
        ..Envelope::default()
    }
}

fn render(envelope: &Envelope) -> Vec<u8> {
    let recipients = [
        RecipientReport {
            remote_mta: Some("mx1.example.com"),
            diagnostic: Some("550 5.1.1 <gone@example.com>: Recipient address rejected"),
            last_attempt: Some(at(1_800_000_100)),
            ..RecipientReport::new(&envelope.rcpt_to[0], Action::Failed, "5.1.1")
        },
        RecipientReport {
            remote_mta: Some("dns; mx2.example.com"),
            diagnostic: Some("451 4.7.1 greylisted, try again later"),
            last_attempt: Some(at(1_800_000_200)),
            will_retry_until: Some(at(1_800_432_000)),
            ..RecipientReport::new(&envelope.rcpt_to[1], Action::Delayed, "4.7.1")
        },
    ];
    let report = Report {
        reporting_mta: "relay.example.net",
        envelope,
        queue_id: "0A1B2C3D",
        arrival: at(1_800_000_000),
        now: at(1_800_000_300),
        message: MESSAGE,
        recipients: &recipients,
    };
    bounce::render(&report).expect("a bounce is due")
}

/// Runs the Python reader on `bounce` and returns what it printed.
fn read_with_python(bounce: &[u8]) -> BTreeMap<String, String> {
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    std::io::Write::write_all(&mut file, bounce).expect("write the bounce");

    let mut child = match Command::new("python3")
        .arg("-c")
        .arg(READER)
        .arg(file.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot run python3 ({error}); this test needs it: install the Debian package \
             `python3`"
        ),
    };

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("python3 status") {
            break status;
        }
        if started.elapsed() > PARSE_PATIENCE {
            let _ = child.kill();
            panic!("python3 did not finish within {PARSE_PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut stdout).expect("python3 output");
    }
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("python3 errors");
    }
    assert!(status.success(), "python3 failed: {stderr}\n{stdout}");

    stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn assert_fields(found: &BTreeMap<String, String>, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            found.get(*key).map(String::as_str),
            Some(*value),
            "{key}; everything Python found: {found:#?}"
        );
    }
}

#[test]
fn python_reads_a_headers_only_report_field_by_field() {
    let found = read_with_python(&render(&envelope(Some(Ret::Headers), false)));
    assert_fields(
        &found,
        &[
            ("content-type", "multipart/report"),
            ("report-type", "delivery-status"),
            (
                "From",
                "Mail Delivery System <MAILER-DAEMON@relay.example.net>",
            ),
            ("To", "sender@example.org"),
            ("Subject", "Undelivered Mail Returned to Sender"),
            ("Auto-Submitted", "auto-replied"),
            ("MIME-Version", "1.0"),
            ("Date", "Fri, 15 Jan 2027 08:05:00 +0000"),
            ("defects", "0"),
            ("parts", "3"),
            ("part0", "text/plain"),
            ("part1", "message/delivery-status"),
            ("part2", "text/rfc822-headers"),
            ("blocks", "3"),
            ("message.Reporting-MTA", "dns; relay.example.net"),
            ("message.Original-Envelope-Id", "ENV-2718"),
            ("message.Arrival-Date", "Fri, 15 Jan 2027 08:00:00 +0000"),
            (
                "recipient0.Original-Recipient",
                "rfc822;gone-alias@example.net",
            ),
            ("recipient0.Final-Recipient", "rfc822; gone@example.com"),
            ("recipient0.Action", "failed"),
            ("recipient0.Status", "5.1.1"),
            ("recipient0.Remote-MTA", "dns; mx1.example.com"),
            (
                "recipient0.Diagnostic-Code",
                "smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected",
            ),
            (
                "recipient0.Last-Attempt-Date",
                "Fri, 15 Jan 2027 08:01:40 +0000",
            ),
            ("recipient0.Will-Retry-Until", "None"),
            ("recipient1.Original-Recipient", "None"),
            ("recipient1.Final-Recipient", "rfc822; slow@example.com"),
            ("recipient1.Action", "delayed"),
            ("recipient1.Status", "4.7.1"),
            ("recipient1.Remote-MTA", "dns; mx2.example.com"),
            (
                "recipient1.Will-Retry-Until",
                "Wed, 20 Jan 2027 08:00:00 +0000",
            ),
        ],
    );

    let returned = &found["returned.text"];
    assert!(
        returned.contains("Subject: Quarterly figures"),
        "{returned}"
    );
    assert!(!returned.contains("attached in spirit"), "{returned}");
    let text = &found["text"];
    assert!(text.contains("<gone@example.com>: mx1.example.com said: 550 5.1.1"));
    assert!(text.contains("<slow@example.com>: mx2.example.com said: 451 4.7.1"));
}

#[test]
fn python_finds_the_whole_original_for_ret_full() {
    let found = read_with_python(&render(&envelope(Some(Ret::Full), false)));
    assert_fields(
        &found,
        &[
            ("content-type", "multipart/report"),
            ("defects", "0"),
            ("part2", "message/rfc822"),
            ("returned.subject", "Quarterly figures"),
            ("returned.body", "The figures are attached in spirit."),
        ],
    );
}

#[test]
fn python_sees_the_global_types_for_an_smtputf8_original() {
    let found = read_with_python(&render(&envelope(Some(Ret::Full), true)));
    assert_fields(
        &found,
        &[
            ("content-type", "multipart/report"),
            ("report-type", "global-delivery-status"),
            ("defects", "0"),
            ("parts", "3"),
            ("part0", "text/plain"),
            ("part1", "message/global-delivery-status"),
            ("part2", "message/global"),
            ("returned.subject", "Quarterly figures"),
        ],
    );
}
