//! Reverse-paths and forward-paths as RFC 5321 §4.1.2 writes them, with the UTF-8 extensions
//! of RFC 6531 §3.3. This file owns their syntax and the size limits of §4.5.3.1.1–3; it
//! guarantees that an accepted mailbox is valid UTF-8 with no control octets, no angle brackets
//! and no source route. It never decides whether an address is acceptable to relay or whether
//! non-ASCII is allowed in this transaction: the session does.

use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 5321 §4.5.3.1.1.
pub const LOCAL_PART_MAX_BYTES: usize = 64;
/// RFC 5321 §4.5.3.1.2.
pub const DOMAIN_MAX_BYTES: usize = 255;
/// RFC 5321 §4.5.3.1.3, counting the angle brackets and any source route.
pub const PATH_MAX_BYTES: usize = 256;
/// RFC 1035 §2.3.4.
const LABEL_MAX_BYTES: usize = 63;

/// Why a path was refused; the session answers 501 with 5.1.7 (MAIL) or 5.1.3 (RCPT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("path must be enclosed in angle brackets")]
    MissingBrackets,
    #[error("address is not valid UTF-8")]
    NotUtf8,
    #[error("address syntax error")]
    Syntax,
    #[error("local-part longer than 64 octets (RFC 5321 section 4.5.3.1.1)")]
    LocalPartTooLong,
    #[error("domain longer than 255 octets (RFC 5321 section 4.5.3.1.2)")]
    DomainTooLong,
    #[error("path longer than 256 octets (RFC 5321 section 4.5.3.1.3)")]
    PathTooLong,
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Path {
    /// `<>`, the null reverse-path of RFC 5321 §4.5.5.
    Null,
    /// `<Postmaster>` without a domain (RFC 5321 §4.1.1.3); any case.
    Postmaster,
    Mailbox(Mailbox),
}

/// `Local-part "@" ( Domain / address-literal )`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    address: String,
    /// Byte index of the `@` between local-part and domain.
    at: usize,
}

impl Mailbox {
    pub fn as_str(&self) -> &str {
        &self.address
    }

    pub fn into_string(self) -> String {
        self.address
    }

    pub fn local_part(&self) -> &str {
        &self.address[..self.at]
    }

    /// The domain or address literal, as the client wrote it.
    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }

    /// False when the mailbox needs SMTPUTF8 (RFC 6531 §3.7.4.1).
    pub fn is_ascii(&self) -> bool {
        self.address.is_ascii()
    }
}

/// Parses the `<...>` at the front of `input` and returns it with the bytes after `>`.
pub fn parse_path(input: &[u8]) -> Result<(Path, &[u8]), AddressError> {
    if input.first() != Some(&b'<') {
        return Err(AddressError::MissingBrackets);
    }
    let close = closing_bracket(input).ok_or(AddressError::Syntax)?;
    if close + 1 > PATH_MAX_BYTES {
        return Err(AddressError::PathTooLong);
    }
    let inner = std::str::from_utf8(&input[1..close]).map_err(|_| AddressError::NotUtf8)?;
    let rest = &input[close + 1..];

    if inner.is_empty() {
        return Ok((Path::Null, rest));
    }
    let mailbox = strip_source_route(inner)?;
    if mailbox.eq_ignore_ascii_case("postmaster") {
        return Ok((Path::Postmaster, rest));
    }
    Ok((Path::Mailbox(parse_mailbox(mailbox)?), rest))
}

/// Parses a bare mailbox (no brackets), as in ORCPT's rfc822 address.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, AddressError> {
    let at = if text.starts_with('"') {
        let end = quoted_string_end(text).ok_or(AddressError::Syntax)?;
        if text.as_bytes().get(end) != Some(&b'@') {
            return Err(AddressError::Syntax);
        }
        end
    } else {
        // atext has no '@', so the first one ends a dot-string local-part.
        let at = text.find('@').ok_or(AddressError::Syntax)?;
        if !is_dot_string(&text[..at]) {
            return Err(AddressError::Syntax);
        }
        at
    };
    let domain = &text[at + 1..];

    if at > LOCAL_PART_MAX_BYTES {
        return Err(AddressError::LocalPartTooLong);
    }
    if domain.len() > DOMAIN_MAX_BYTES {
        return Err(AddressError::DomainTooLong);
    }
    if !is_domain(domain) && !is_address_literal(domain) {
        return Err(AddressError::Syntax);
    }
    Ok(Mailbox {
        address: text.to_owned(),
        at,
    })
}

/// Index of the `>` that closes the path, skipping any inside a quoted local-part.
fn closing_bracket(input: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (index, &octet) in input.iter().enumerate().skip(1) {
        match (quoted, escaped, octet) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => quoted = false,
            (false, _, b'"') => quoted = true,
            (false, _, b'>') => return Some(index),
            _ => {}
        }
    }
    None
}

/// RFC 5321 §4.1.2 `A-d-l ":"`. Source routes are obsolete; Appendix C says to accept and
/// ignore them, so the route is checked for syntax and dropped.
fn strip_source_route(inner: &str) -> Result<&str, AddressError> {
    if !inner.starts_with('@') {
        return Ok(inner);
    }
    let colon = inner.find(':').ok_or(AddressError::Syntax)?;
    for at_domain in inner[..colon].split(',') {
        let domain = at_domain.strip_prefix('@').ok_or(AddressError::Syntax)?;
        if !is_domain(domain) {
            return Err(AddressError::Syntax);
        }
    }
    Ok(&inner[colon + 1..])
}

/// Byte index just past the closing quote of a leading `Quoted-string`.
fn quoted_string_end(text: &str) -> Option<usize> {
    let mut chars = text.char_indices().skip(1);
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return Some(index + 1),
            // quoted-pairSMTP = %d92 %d32-126
            '\\' => match chars.next() {
                Some((_, escaped)) if (' '..='~').contains(&escaped) => {}
                _ => return None,
            },
            // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF8-non-ascii (RFC 6531 §3.3)
            ' '..='~' => {}
            c if !c.is_ascii() => {}
            _ => return None,
        }
    }
    None
}

/// `Dot-string = Atom *("." Atom)`.
fn is_dot_string(text: &str) -> bool {
    !text.is_empty()
        && text
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// RFC 5322 atext, extended by RFC 6531 §3.3 with every non-ASCII character.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// `Domain = sub-domain *("." sub-domain)`, with U-labels allowed (RFC 6531 §3.3).
pub fn is_domain(text: &str) -> bool {
    !text.is_empty() && text.len() <= DOMAIN_MAX_BYTES && text.split('.').all(is_sub_domain)
}

/// `sub-domain = Let-dig [Ldh-str]`.
fn is_sub_domain(label: &str) -> bool {
    let let_dig = |c: char| c.is_ascii_alphanumeric() || !c.is_ascii();
    let (Some(first), Some(last)) = (label.chars().next(), label.chars().last()) else {
        return false;
    };
    label.len() <= LABEL_MAX_BYTES
        && let_dig(first)
        && let_dig(last)
        && label.chars().all(|c| let_dig(c) || c == '-')
}

/// `address-literal = "[" ( IPv4 / IPv6 / General-address-literal ) "]"` (§4.1.3).
pub fn is_address_literal(text: &str) -> bool {
    let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
        return false;
    };
    if inner.len() > 5 && inner.is_char_boundary(5) && inner[..5].eq_ignore_ascii_case("IPv6:") {
        return inner[5..].parse::<Ipv6Addr>().is_ok();
    }
    if inner.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent
    let Some((tag, content)) = inner.split_once(':') else {
        return false;
    };
    let dcontent = |c: char| matches!(c, '!'..='Z' | '^'..='~');
    is_sub_domain(tag) && tag.is_ascii() && !content.is_empty() && content.chars().all(dcontent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(input: &str) -> String {
        match parse_path(input.as_bytes()) {
            Ok((Path::Mailbox(m), _)) => m.into_string(),
            other => panic!("{input}: {other:?}"),
        }
    }

    fn error(input: &[u8]) -> AddressError {
        parse_path(input).expect_err("should be refused")
    }

    #[test]
    fn plain_mailbox_and_rest() {
        let (path, rest) = parse_path(b"<a.b@example.com> SIZE=1").expect("valid");
        let Path::Mailbox(m) = path else {
            panic!("not a mailbox")
        };
        assert_eq!(m.local_part(), "a.b");
        assert_eq!(m.domain(), "example.com");
        assert_eq!(rest, b" SIZE=1");
    }

    #[test]
    fn null_and_postmaster() {
        assert_eq!(parse_path(b"<>").expect("valid").0, Path::Null);
        assert_eq!(
            parse_path(b"<PostMaster>").expect("valid").0,
            Path::Postmaster
        );
        assert_eq!(
            mailbox("<postmaster@example.com>"),
            "postmaster@example.com"
        );
    }

    #[test]
    fn source_route_is_dropped() {
        assert_eq!(
            mailbox("<@a.example,@b.example:user@d.example>"),
            "user@d.example"
        );
        assert_eq!(
            error(b"<@a.example,b.example:user@d.example>"),
            AddressError::Syntax
        );
    }

    #[test]
    fn quoted_local_part_may_hide_brackets_and_at() {
        assert_eq!(mailbox("<\"a>b@c\"@example.com>"), "\"a>b@c\"@example.com");
        assert_eq!(
            mailbox("<\"a\\\"b\"@example.com>"),
            "\"a\\\"b\"@example.com"
        );
    }

    #[test]
    fn address_literals() {
        assert_eq!(mailbox("<u@[192.0.2.1]>"), "u@[192.0.2.1]");
        assert_eq!(mailbox("<u@[IPv6:2001:db8::1]>"), "u@[IPv6:2001:db8::1]");
        assert_eq!(mailbox("<u@[x-tag:abc]>"), "u@[x-tag:abc]");
        assert_eq!(error(b"<u@[999.1.1.1]>"), AddressError::Syntax);
    }

    #[test]
    fn utf8_mailbox_is_not_ascii() {
        let (path, _) = parse_path("<jöran@bücher.example>".as_bytes()).expect("valid");
        let Path::Mailbox(m) = path else {
            panic!("not a mailbox")
        };
        assert!(!m.is_ascii());
        assert_eq!(error(b"<j\xffr@example.com>"), AddressError::NotUtf8);
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            &b"a@example.com"[..],
            b"<a@example.com",
            b"<a@>",
            b"<@example.com>",
            b"<a..b@example.com>",
            b"<.a@example.com>",
            b"<a@-example.com>",
            b"<a@example..com>",
            b"<user>",
            b"<a b@example.com>",
            b"<a@exa mple.com>",
            b"<\"a\x01\"@example.com>",
        ] {
            assert!(
                parse_path(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn size_limits() {
        let local = "l".repeat(LOCAL_PART_MAX_BYTES);
        assert_eq!(mailbox(&format!("<{local}@example.com>")).len(), 64 + 12);
        let too_long = format!("<{local}l@example.com>");
        assert_eq!(error(too_long.as_bytes()), AddressError::LocalPartTooLong);

        let label = "d".repeat(60);
        let domain = format!("{label}.{label}.{label}.{label}.{label}");
        let mailbox = parse_mailbox(&format!("a@{domain}"));
        assert_eq!(mailbox, Err(AddressError::DomainTooLong));

        let domain = format!("{label}.{label}.{label}.{label}.ddddd");
        let path = format!("<{local}@{domain}>");
        assert!(path.len() > PATH_MAX_BYTES);
        assert_eq!(error(path.as_bytes()), AddressError::PathTooLong);
    }
}
