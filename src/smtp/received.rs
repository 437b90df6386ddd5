//! The `Received:` trace header (RFC 5321 §4.4, RFC 5322 §3.6.7) and the WITH protocol names of
//! RFC 3848 (with its TLS `S` and AUTH `A` suffixes) and RFC 6531 §3.7.3. This file owns the
//! header's text and guarantees it is folded CRLF + TAB, ends in CRLF and carries nothing a
//! client could use to forge a second clause. It never picks the date or the queue id: the
//! driver passes both in.

use std::fmt::Write;
use std::net::IpAddr;

use super::envelope::Recipient;

/// What the header says about one message.
pub(super) struct Trace<'a> {
    pub hostname: &'a str,
    pub helo: &'a str,
    pub peer: IpAddr,
    pub esmtp: bool,
    pub smtputf8: bool,
    pub tls: bool,
    /// The TLS version and suite (`TLSv1.3`, `TLS13_AES_256_GCM_SHA384`), written as a comment
    /// after the FROM clause, as Postfix does, so a reader can audit how the message arrived.
    pub tls_cipher: Option<(&'a str, &'a str)>,
    /// AUTH succeeded in this session (RFC 3848 §2, the `A` suffix).
    pub authenticated: bool,
    pub queue_id: &'a str,
    pub recipients: &'a [Recipient],
    /// An RFC 5322 date-time.
    pub date: &'a str,
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3); IPv4-mapped IPv6 peers are shown
/// as the IPv4 address they are.
pub(super) fn address_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// RFC 3848 §2 and RFC 6531 §3.7.3. HELO sessions are plain `SMTP`: the registry has no TLS
/// variant of it, and AUTH needs EHLO.
pub(super) fn protocol(
    esmtp: bool,
    smtputf8: bool,
    tls: bool,
    authenticated: bool,
) -> &'static str {
    match (esmtp, smtputf8, tls, authenticated) {
        (false, _, _, _) => "SMTP",
        (true, false, false, false) => "ESMTP",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, false) => "ESMTPS",
        (true, false, true, true) => "ESMTPSA",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, true, true) => "UTF8SMTPSA",
    }
}

pub(super) fn received_header(trace: &Trace<'_>) -> String {
    debug_assert!(trace.queue_id.bytes().all(|b| b.is_ascii_graphic()));
    let mut header = String::with_capacity(256);
    let protocol = protocol(trace.esmtp, trace.smtputf8, trace.tls, trace.authenticated);

    // `write!` into a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        header,
        "Received: from {} ({})",
        clause_safe(trace.helo),
        address_literal(trace.peer)
    );
    if let Some((version, cipher)) = trace.tls_cipher {
        let _ = write!(header, "\r\n\t(using {version} with cipher {cipher})");
    }
    let _ = write!(
        header,
        "\r\n\tby {} (postern) with {} id {}",
        trace.hostname, protocol, trace.queue_id,
    );
    // RFC 5321 §4.4: a FOR clause with more than one recipient would disclose Bcc recipients
    // to each other, so it appears only for a single recipient.
    match trace.recipients {
        [only] => {
            let _ = write!(header, "\r\n\tfor <{}>; {}\r\n", only.address, trace.date);
        }
        _ => {
            let _ = write!(header, ";\r\n\t{}\r\n", trace.date);
        }
    }
    header
}

/// The EHLO argument is only checked to be one word of visible ASCII. Parentheses, backslashes
/// and semicolons would let it open a fake comment or end the clause list early, so they are
/// replaced; an empty name becomes `unknown`.
fn clause_safe(helo: &str) -> String {
    if helo.is_empty() {
        return "unknown".to_owned();
    }
    helo.chars()
        .map(|c| match c {
            '(' | ')' | '\\' | ';' | '"' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient(address: &str) -> Recipient {
        Recipient {
            address: address.into(),
            notify: None,
            orcpt: None,
        }
    }

    #[test]
    fn single_recipient_has_for_clause() {
        let recipients = [recipient("b@example.com")];
        let trace = Trace {
            hostname: "mx.example.net",
            helo: "client.example",
            peer: "192.0.2.7".parse().expect("literal"),
            esmtp: true,
            smtputf8: false,
            tls: true,
            tls_cipher: None,
            authenticated: false,
            queue_id: "Q1",
            recipients: &recipients,
            date: "Thu, 1 Jan 2026 00:00:00 +0000",
        };
        assert_eq!(
            received_header(&trace),
            "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.net (postern) with \
             ESMTPS id Q1\r\n\tfor <b@example.com>; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn tls_sessions_name_their_version_and_suite() {
        let recipients = [recipient("b@example.com")];
        let trace = Trace {
            hostname: "mx.example.net",
            helo: "client.example",
            peer: "192.0.2.7".parse().expect("literal"),
            esmtp: true,
            smtputf8: false,
            tls: true,
            tls_cipher: Some(("TLSv1.3", "TLS13_AES_256_GCM_SHA384")),
            authenticated: false,
            queue_id: "Q1",
            recipients: &recipients,
            date: "Thu, 1 Jan 2026 00:00:00 +0000",
        };
        assert_eq!(
            received_header(&trace),
            "Received: from client.example ([192.0.2.7])\r\n\t(using TLSv1.3 with cipher \
             TLS13_AES_256_GCM_SHA384)\r\n\tby mx.example.net (postern) with ESMTPS id Q1\r\n\t\
             for <b@example.com>; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn many_recipients_hide_the_for_clause() {
        let recipients = [recipient("a@example.com"), recipient("b@example.com")];
        let trace = Trace {
            hostname: "mx",
            helo: "evil(x);",
            peer: "2001:db8::1".parse().expect("literal"),
            esmtp: false,
            smtputf8: false,
            tls: false,
            tls_cipher: None,
            authenticated: false,
            queue_id: "Q2",
            recipients: &recipients,
            date: "D",
        };
        assert_eq!(
            received_header(&trace),
            "Received: from evil_x__ ([IPv6:2001:db8::1])\r\n\tby mx (postern) with SMTP id \
             Q2;\r\n\tD\r\n"
        );
    }

    #[test]
    fn protocols() {
        assert_eq!(protocol(true, true, true, false), "UTF8SMTPS");
        assert_eq!(protocol(true, true, false, false), "UTF8SMTP");
        assert_eq!(protocol(false, true, true, false), "SMTP");
        assert_eq!(protocol(true, false, true, true), "ESMTPSA");
        assert_eq!(protocol(true, false, false, true), "ESMTPA");
        assert_eq!(protocol(true, true, true, true), "UTF8SMTPSA");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("literal");
        assert_eq!(address_literal(mapped), "[192.0.2.1]");
    }
}
