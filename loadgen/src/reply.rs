//! The client side of the reply grammar (RFC 5321 §4.2): it finds complete replies in the bytes
//! read so far, a reply being any number of `NNN-text` lines and one `NNN text` (or bare `NNN`)
//! line. It owns no buffer and does no I/O; the session keeps the bytes and asks again after
//! each read. It guarantees that a malformed line is reported, never skipped silently.

/// One complete reply: its code and where it ends in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedReply {
    pub code: u16,
    /// Octets of input the reply used, final CRLF included.
    pub length: usize,
}

/// A line that is not `NNN`, `NNN-…` or `NNN …`: the peer does not speak SMTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedReply;

/// Parses one reply at the start of `input`. `Ok(None)` means more bytes are needed.
/// `on_line` sees the text of every line (after the code and separator), e.g. for EHLO keywords.
pub fn parse_reply(
    input: &[u8],
    mut on_line: impl FnMut(&[u8]),
) -> Result<Option<ParsedReply>, MalformedReply> {
    let mut offset = 0;
    loop {
        let rest = &input[offset..];
        let Some(newline) = memchr::memchr(b'\n', rest) else {
            return Ok(None);
        };
        let line = &rest[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        offset += newline + 1;

        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(MalformedReply);
        }
        let code = line[..3]
            .iter()
            .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
        match line.get(3) {
            Some(b'-') => on_line(&line[4..]),
            None | Some(b' ') => {
                on_line(line.get(4..).unwrap_or(&[]));
                return Ok(Some(ParsedReply {
                    code,
                    length: offset,
                }));
            }
            Some(_) => return Err(MalformedReply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multiline_replies() {
        assert_eq!(
            parse_reply(b"250 ok\r\n354 go", |_| {}),
            Ok(Some(ParsedReply {
                code: 250,
                length: 8
            }))
        );
        let mut keywords = Vec::new();
        let ehlo = b"250-sink\r\n250-PIPELINING\r\n250 SIZE 10\r\n";
        let parsed = parse_reply(ehlo, |line| keywords.push(line.to_vec())).unwrap();
        assert_eq!(
            parsed,
            Some(ParsedReply {
                code: 250,
                length: ehlo.len()
            })
        );
        assert_eq!(keywords[1], b"PIPELINING");
        assert_eq!(parse_reply(b"221\r\n", |_| {}).unwrap().unwrap().code, 221);
    }

    #[test]
    fn partial_and_malformed_input() {
        assert_eq!(parse_reply(b"250-a\r\n250 b", |_| {}), Ok(None));
        assert_eq!(parse_reply(b"hello\r\n", |_| {}), Err(MalformedReply));
        assert_eq!(parse_reply(b"250x\r\n", |_| {}), Err(MalformedReply));
    }
}
