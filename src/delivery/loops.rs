//! Mail loop detection (RFC 5321 §6.3): a message that has passed through too many relays,
//! counted by its `Received:` header fields, is failed instead of being passed on again.
//!
//! Pure code over the stored message; it reads the header section only.

/// The number of `Received:` fields in the header section of `content` (up to the first empty
/// line). Field names compare case-insensitively (RFC 5322 §1.2.2).
pub fn received_count(content: &[u8]) -> usize {
    let mut count = 0;
    let mut position = 0;
    while position < content.len() {
        let line_end = memchr::memchr(b'\n', &content[position..])
            .map_or(content.len(), |newline| position + newline + 1);
        let line = &content[position..line_end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            count += 1;
        }
        position = line_end;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_header_fields() {
        let message =
            b"Received: a\r\n\tcontinued\r\nRECEIVED: b\r\nSubject: x\r\n\r\nReceived: body\r\n";
        assert_eq!(received_count(message), 2);
        assert_eq!(received_count(b""), 0);
        assert_eq!(received_count(b"Received: only"), 1);
        assert_eq!(received_count(b"X-Received: no\r\n\r\n"), 0);
    }
}
