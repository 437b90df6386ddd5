//! Replies from the next hop: an incremental parser for (multi-line) SMTP replies and the EHLO
//! extensions a client cares about.
//!
//! Pure code over bytes. It bounds what it accepts (line length, lines per reply), so a hostile
//! or broken server cannot make the client buffer without limit, and it never panics on input.

use std::fmt;

/// A reply line longer than this is a protocol error. RFC 5321 §4.5.3.1.5 sets 512 octets;
/// real servers exceed it in long EHLO and error texts, so allow far more, but not without end.
pub const REPLY_LINE_MAX_BYTES: usize = 4096;

/// A reply with more lines than this is a protocol error (EHLO lists a few dozen at most).
pub const REPLY_LINES_MAX: usize = 256;

/// One complete reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteReply {
    pub code: u16,
    /// The text of every line without the code, joined with "; " for logs and bounces.
    pub text: String,
    /// The lines' texts (EHLO keywords are read from these).
    pub lines: Vec<String>,
}

impl RemoteReply {
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The enhanced status code (RFC 3463) at the start of the text, such as `5.1.1`.
    pub fn enhanced_status(&self) -> Option<&str> {
        let first = self.text.split_whitespace().next()?;
        let mut parts = first.split('.');
        let class = parts.next()?;
        let valid = matches!(class, "2" | "4" | "5")
            && parts.clone().count() == 2
            && parts.all(|part| {
                !part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit())
            });
        valid.then_some(first)
    }
}

impl fmt::Display for RemoteReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// Why bytes from the server are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line is not `NNN text` or `NNN-text`")]
    Malformed,
    #[error("reply line longer than {REPLY_LINE_MAX_BYTES} octets")]
    LineTooLong,
    #[error("reply with more than {REPLY_LINES_MAX} lines")]
    TooManyLines,
    #[error("continuation lines carry different reply codes")]
    MixedCodes,
}

/// Parses one complete reply from the front of `input`. `Ok(None)` means more bytes are needed;
/// `Ok(Some((reply, consumed)))` gives the reply and how many bytes it used.
pub fn parse_reply(input: &[u8]) -> Result<Option<(RemoteReply, usize)>, ReplyError> {
    let mut position = 0;
    let mut code = None;
    let mut lines = Vec::new();

    loop {
        let rest = &input[position..];
        let Some(newline) = memchr::memchr(b'\n', rest) else {
            if rest.len() > REPLY_LINE_MAX_BYTES {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        if newline > REPLY_LINE_MAX_BYTES {
            return Err(ReplyError::LineTooLong);
        }

        // Servers end lines with CRLF; a bare LF is tolerated on input (RFC 5321 §4.1.1 asks
        // clients to be liberal here), the CR is dropped if present.
        let line = rest[..newline]
            .strip_suffix(b"\r")
            .unwrap_or(&rest[..newline]);
        position += newline + 1;
        let (line_code, last, text) = split_line(line)?;
        if *code.get_or_insert(line_code) != line_code {
            return Err(ReplyError::MixedCodes);
        }
        lines.push(text);
        if lines.len() > REPLY_LINES_MAX {
            return Err(ReplyError::TooManyLines);
        }
        if last {
            let code = line_code;
            let text = lines.join("; ");
            return Ok(Some((RemoteReply { code, text, lines }, position)));
        }
    }
}

/// `NNN text`, `NNN-text` or a bare `NNN`.
fn split_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let digits = line.get(..3).ok_or(ReplyError::Malformed)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return Err(ReplyError::Malformed);
    }
    let code = digits
        .iter()
        .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(ReplyError::Malformed),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// What the next hop's EHLO reply offers, as far as delivery uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    pub pipelining: bool,
    /// SIZE with its limit; `Some(0)` means no fixed limit (RFC 1870 §4).
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub chunking: bool,
    pub dsn: bool,
    pub starttls: bool,
    /// AUTH (RFC 4954): the hop takes the `AUTH=` parameter on MAIL.
    pub auth: bool,
}

impl Extensions {
    /// Reads the keywords of an EHLO reply; the first line is the greeting, not a keyword.
    pub fn from_ehlo(reply: &RemoteReply) -> Extensions {
        let mut extensions = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => extensions.pipelining = true,
                "SIZE" => {
                    extensions.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0))
                }
                "8BITMIME" => extensions.eight_bit_mime = true,
                "SMTPUTF8" => extensions.smtputf8 = true,
                "CHUNKING" => extensions.chunking = true,
                "DSN" => extensions.dsn = true,
                "AUTH" => extensions.auth = true,
                "STARTTLS" => extensions.starttls = true,
                _ => {}
            }
        }
        extensions
    }

    /// Whether a message of `bytes` exceeds the next hop's declared SIZE limit.
    pub fn refuses_size(&self, bytes: u64) -> bool {
        matches!(self.size, Some(limit) if limit > 0 && bytes > limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> (RemoteReply, usize) {
        parse_reply(input).unwrap().expect("complete reply")
    }

    #[test]
    fn single_and_multi_line_replies() {
        let (reply, used) = parse_all(b"250 2.0.0 Ok: queued\r\nrest");
        assert_eq!(
            (reply.code, reply.text.as_str(), used),
            (250, "2.0.0 Ok: queued", 22)
        );
        assert_eq!(reply.enhanced_status(), Some("2.0.0"));

        let (reply, _) = parse_all(b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
        assert_eq!(reply.lines, ["mx.example", "PIPELINING", "SIZE 1000"]);
        let extensions = Extensions::from_ehlo(&reply);
        assert!(extensions.pipelining);
        assert_eq!(extensions.size, Some(1000));
        assert!(extensions.refuses_size(1001) && !extensions.refuses_size(1000));
        assert!(!extensions.chunking);
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        assert_eq!(parse_reply(b"250-first\r\n250 sec").unwrap(), None);
        assert_eq!(parse_reply(b"").unwrap(), None);
    }

    #[test]
    fn bare_code_and_bare_lf_are_tolerated() {
        let (reply, used) = parse_all(b"354\n");
        assert_eq!((reply.code, reply.text.as_str(), used), (354, "", 4));
        assert!(reply.is_intermediate());
        assert_eq!(reply.enhanced_status(), None);
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert_eq!(parse_reply(b"25x ok\r\n"), Err(ReplyError::Malformed));
        assert_eq!(parse_reply(b"250_ok\r\n"), Err(ReplyError::Malformed));
        assert_eq!(parse_reply(b"150 ok\r\n"), Err(ReplyError::Malformed));
        assert_eq!(
            parse_reply(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::MixedCodes)
        );
        let long = vec![b'2'; REPLY_LINE_MAX_BYTES + 10];
        assert_eq!(parse_reply(&long), Err(ReplyError::LineTooLong));
    }

    #[test]
    fn enhanced_status_is_only_taken_when_well_formed() {
        let reply = |text: &str| RemoteReply {
            code: 550,
            text: text.into(),
            lines: vec![text.into()],
        };
        assert_eq!(reply("5.1.1 no such user").enhanced_status(), Some("5.1.1"));
        assert_eq!(reply("no such user").enhanced_status(), None);
        assert_eq!(reply("5.1 no").enhanced_status(), None);
        assert_eq!(reply("7.1.1 no").enhanced_status(), None);
    }
}
