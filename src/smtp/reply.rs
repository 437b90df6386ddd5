//! SMTP replies and their wire form. This file owns the reply grammar of RFC 5321 §4.2 (a
//! three-digit code, `-` on every line but the last) and the enhanced status codes of RFC 3463
//! as announced by ENHANCEDSTATUSCODES (RFC 2034). It guarantees that what it writes is always
//! one well-formed reply: no CR, LF or other control octet from the text ever reaches the wire.
//! It never decides which reply to send; the session and the error enums do that.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnhancedStatus {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedStatus {
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedStatus {
        EnhancedStatus {
            class,
            subject,
            detail,
        }
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One reply: a code, an optional enhanced status and one or more lines of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: Option<EnhancedStatus>,
    /// Lines of text; a multi-line reply (RFC 5321 §4.2.1) has more than one.
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(
        code: u16,
        status: Option<EnhancedStatus>,
        text: impl Into<Cow<'static, str>>,
    ) -> Reply {
        Reply::multiline(code, status, vec![text.into()])
    }

    /// A reply of several lines; the enhanced status, when given, prefixes every line as RFC
    /// 2034 §4 asks.
    pub fn multiline(
        code: u16,
        status: Option<EnhancedStatus>,
        lines: Vec<Cow<'static, str>>,
    ) -> Reply {
        debug_assert!((200..600).contains(&code), "reply code {code} out of range");
        debug_assert!(!lines.is_empty(), "a reply has at least one line");
        if let Some(status) = status {
            // RFC 3463 §2: the class digit of the status repeats the first digit of the code.
            debug_assert_eq!(u16::from(status.class), code / 100);
        }
        Reply {
            code,
            status,
            lines,
        }
    }

    /// 2yz, 3yz: the command was accepted.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// 5yz: the command was refused for good.
    pub fn is_permanent_failure(&self) -> bool {
        self.code >= 500
    }

    /// Appends the wire form, CRLF after every line. Formats straight into `out`: every session
    /// writes several replies per message, and a string per code would be an allocation each.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (index, line) in self.lines.iter().enumerate() {
            let separator = if index == last { ' ' } else { '-' };
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{}{separator}", self.code);
            if let Some(status) = self.status {
                let _ = write!(out, "{status} ");
            }
            push_text(out, line);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Copies reply text, replacing control octets. The texts come from this module's tables and
/// from client input that the parsers already validated, so a replacement means a bug upstream;
/// writing `?` keeps the reply framing intact even then.
fn push_text(out: &mut Vec<u8>, text: &str) {
    if !text.bytes().any(|octet| octet.is_ascii_control()) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    for &octet in text.as_bytes() {
        let clean = !octet.is_ascii_control();
        debug_assert!(clean, "control octet {octet:#04x} in reply text");
        out.push(if clean { octet } else { b'?' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(reply: &Reply) -> String {
        let mut out = Vec::new();
        reply.write_to(&mut out);
        String::from_utf8(out).expect("replies are UTF-8")
    }

    #[test]
    fn single_line_with_status() {
        let reply = Reply::new(250, Some(EnhancedStatus::new(2, 1, 0)), "Ok");
        assert_eq!(wire(&reply), "250 2.1.0 Ok\r\n");
    }

    #[test]
    fn single_line_without_status() {
        assert_eq!(wire(&Reply::new(220, None, "mx ESMTP")), "220 mx ESMTP\r\n");
    }

    #[test]
    fn multiline_uses_dash_until_the_last_line() {
        let reply = Reply::multiline(250, None, vec!["mx".into(), "PIPELINING".into()]);
        assert_eq!(wire(&reply), "250-mx\r\n250 PIPELINING\r\n");
    }

    #[test]
    fn status_prefixes_every_line() {
        let status = Some(EnhancedStatus::new(2, 0, 0));
        let reply = Reply::multiline(214, status, vec!["a".into(), "b".into()]);
        assert_eq!(wire(&reply), "214-2.0.0 a\r\n214 2.0.0 b\r\n");
    }

    #[test]
    fn classes() {
        assert!(Reply::new(354, None, "go").is_positive());
        assert!(!Reply::new(452, None, "x").is_positive());
        assert!(Reply::new(554, None, "x").is_permanent_failure());
    }
}
