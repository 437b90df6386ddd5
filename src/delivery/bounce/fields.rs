//! The text rules of a delivery status notification: field values made safe and 7-bit where
//! they must be, xtext (RFC 3461 §4), and lines folded at spaces (RFC 5322 §2.2.3) so that no
//! generated line exceeds 998 octets. Untrusted text (remote replies, addresses, ORCPT, ENVID)
//! goes through `clean` or `text_value` before it reaches a line; nothing here can emit a bare
//! CR or LF. Pure string work: no I/O.

/// Generated lines are folded before this column where the words allow (RFC 5322 §2.1.1
/// SHOULD).
pub(super) const FOLD_COLUMN: usize = 78;

/// No generated line is longer than this, CRLF excluded (RFC 5322 §2.1.1 MUST, RFC 5321
/// §4.5.3.1.6).
pub(super) const LINE_MAX_OCTETS: usize = 998;

/// A value that is printable ASCII goes as it is; anything else is xtext-encoded in a plain
/// DSN (RFC 3461 §4) and cleaned of control characters in a global one.
pub(super) fn text_value(value: &str, global: bool) -> String {
    let printable = value.bytes().all(|byte| (0x20..0x7f).contains(&byte));
    if printable {
        value.to_owned()
    } else if global {
        clean(value, true)
    } else {
        xtext(value)
    }
}

/// RFC 3461 §4: "+" followed by two upper-case hex digits for every octet outside `!`..`~`,
/// and for `+` and `=`.
pub(super) fn xtext(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x21..0x7f).contains(&byte) && byte != b'+' && byte != b'=' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("+{byte:02X}"));
        }
    }
    encoded
}

/// The host name of a Remote-MTA value, with a leading `dns;` type removed.
pub(super) fn host_name(remote: &str) -> &str {
    match remote.split_once(';') {
        Some((kind, host)) if kind.trim().eq_ignore_ascii_case("dns") => host.trim(),
        _ => remote.trim(),
    }
}

/// Makes untrusted text safe for one header field or text line: every run of control
/// characters (CR and LF included, so no line can be injected) and white space becomes one
/// space; non-ASCII becomes `?` unless `utf8` allows it.
pub(super) fn clean(value: &str, utf8: bool) -> String {
    let mut cleaned = String::with_capacity(value.len());
    let mut pending_space = false;
    for character in value.chars() {
        if character.is_control() || character.is_whitespace() {
            pending_space = !cleaned.is_empty();
            continue;
        }
        if pending_space {
            cleaned.push(' ');
            pending_space = false;
        }
        if character.is_ascii() || utf8 {
            cleaned.push(character);
        } else {
            cleaned.push('?');
        }
    }
    cleaned
}

/// Writes `Name: value` CRLF, folded at spaces before `FOLD_COLUMN` (RFC 5322 §2.2.3). A
/// single word too long for any line is cut at `LINE_MAX_OCTETS`.
pub(super) fn field(out: &mut String, name: &str, value: &str) {
    wrap(out, &format!("{name}: {value}"), " ");
}

/// Writes `text` as lines of at most `FOLD_COLUMN` characters where the words allow (and never
/// over `LINE_MAX_OCTETS` octets), continuation lines starting with `indent`, each ending CRLF.
pub(super) fn wrap(out: &mut String, text: &str, indent: &str) {
    let mut line_len = 0;
    for (index, word) in text.split(' ').filter(|word| !word.is_empty()).enumerate() {
        if index > 0 {
            if line_len + 1 + word.len() > FOLD_COLUMN {
                out.push_str("\r\n");
                out.push_str(indent);
                line_len = indent.len();
            } else {
                out.push(' ');
                line_len += 1;
            }
        }
        for piece in split_at_octets(word, LINE_MAX_OCTETS - indent.len()) {
            if line_len + piece.len() > LINE_MAX_OCTETS {
                out.push_str("\r\n");
                out.push_str(indent);
                line_len = indent.len();
            }
            out.push_str(piece);
            line_len += piece.len();
        }
    }
    out.push_str("\r\n");
}

/// Splits `word` into pieces of at most `max` octets, on character boundaries.
pub(super) fn split_at_octets(word: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = word;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    pieces
}

pub(super) fn paragraph(out: &mut String, text: &str) {
    wrap(out, text, "");
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_word_is_cut_within_the_line_limit() {
        let mut out = String::new();
        field(&mut out, "Diagnostic-Code", &"x".repeat(3000));
        for line in out.split("\r\n") {
            assert!(line.len() <= LINE_MAX_OCTETS);
        }
        assert_eq!(out.matches('x').count(), 3000);
    }

    #[test]
    fn words_are_folded_before_the_column() {
        let mut out = String::new();
        field(&mut out, "Diagnostic-Code", &"word ".repeat(40));
        let lines: Vec<&str> = out.trim_end().split("\r\n").collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|line| line.len() <= FOLD_COLUMN));
        assert!(lines[1..].iter().all(|line| line.starts_with(' ')));
        assert!(out.ends_with("word\r\n"));
    }

    #[test]
    fn a_multibyte_character_is_never_cut_in_half() {
        let word = "é".repeat(600);
        let pieces = split_at_octets(&word, 997);
        assert_eq!(pieces.concat(), word);
        assert!(pieces.iter().all(|piece| piece.len() <= 997));
    }

    #[test]
    fn clean_leaves_no_line_break_and_no_run_of_space() {
        assert_eq!(clean("550-a\r\n550 b\t c\n", true), "550-a 550 b c");
        assert_eq!(clean("  lead", true), "lead");
        assert_eq!(clean("nö", false), "n?");
        assert_eq!(clean("nö", true), "nö");
    }

    #[test]
    fn xtext_encodes_plus_equals_space_and_eight_bit() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("é"), "+C3+A9");
        assert_eq!(text_value("plain;value", false), "plain;value");
        assert_eq!(text_value("tab\there", false), "tab+09here");
        assert_eq!(text_value("tab\there", true), "tab here");
    }

    #[test]
    fn the_dns_type_is_taken_off_a_remote_mta() {
        assert_eq!(host_name("dns; mx.example.com"), "mx.example.com");
        assert_eq!(host_name("DNS;mx.example.com"), "mx.example.com");
        assert_eq!(host_name("mx.example.com"), "mx.example.com");
    }
}
