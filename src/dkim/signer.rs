//! One message's DKIM signature, computed while the message streams in.
//!
//! The signer sees the message exactly as the client sent it (dot-unstuffed, before our
//! `Received:`), in chunks cut anywhere. It keeps the header section (at most
//! `HEADER_CAPTURE_MAX_BYTES`; a larger one is not signed) and, once the header ends and its
//! From domain has a key, runs the body through the relaxed canonicalizer into SHA-256. At end of
//! data it builds the `DKIM-Signature:` fields, relaxed/relaxed, with `t=`, every present field
//! of [`SIGNED_FIELDS`] and From oversigned. A signer is reused for every message of a session,
//! so its buffers are allocated once per session, not per message. No I/O, never blocks; RSA
//! signing is the one costly step (up to a millisecond of CPU per 2048-bit signature).

use std::io::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use ring::digest;
use tracing::debug;

use super::canonical::{relaxed_header, RelaxedBody};
use super::SigningKeys;

/// The header fields signed when present, From first (RFC 6376 §5.4.1 lists the ones that
/// carry the message's meaning). Every occurrence is signed, and From once more than it occurs
/// (oversigning, RFC 6376 §8.15), so nobody can add a From without breaking the signature.
pub const SIGNED_FIELDS: &[&str] = &[
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// The largest header section captured for signing. RFC 5322 sets no limit; real header
/// sections at submission are a few KiB. A larger one leaves the message unsigned, never
/// refused.
// LIMITATION(L15): such a message goes out unsigned.
pub const HEADER_CAPTURE_MAX_BYTES: usize = 64 * 1024;

/// Lines of the signature field are folded near this width (RFC 5322 §2.1.1 recommends 78).
const FOLD_COLUMNS: usize = 76;

/// Where the signer stands in the current message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// No message, or a message this signer does not sign.
    Idle,
    /// Reading the header section.
    Header,
    /// The header ended and its From domain has keys: hashing the body.
    Body,
}

/// Signs the messages of one session, one after another.
pub struct MessageSigner {
    keys: Arc<SigningKeys>,
    stage: Stage,
    /// The header section so far, as sent (fields with their CRLFs).
    header: Vec<u8>,
    /// Octets of the current header line before its LF; with `previous_cr`, it spots the empty
    /// line (a lone CRLF) that ends the header section across chunk boundaries.
    header_line_bytes: usize,
    previous_cr: bool,
    /// The From domain, in lowercase, once the header ended.
    from_domain: String,
    /// The From value without its quoted strings and comments, while it is read.
    from_plain: Vec<u8>,
    /// The `h=` names, in the order their fields are hashed.
    tags: Vec<&'static str>,
    body: RelaxedBody,
    body_hash: digest::Context,
    /// Offsets into `header` of the signed fields: (index in SIGNED_FIELDS, start, end).
    signed: Vec<(usize, usize, usize)>,
    /// What the signatures cover: the canonical signed fields, then one DKIM-Signature.
    hash_input: Vec<u8>,
    signature: Vec<u8>,
    base64: String,
    /// The DKIM-Signature fields of the last finished message.
    output: Vec<u8>,
    random: ring::rand::SystemRandom,
}

impl MessageSigner {
    pub fn new(keys: Arc<SigningKeys>) -> MessageSigner {
        MessageSigner {
            keys,
            stage: Stage::Idle,
            header: Vec::new(),
            header_line_bytes: 0,
            previous_cr: false,
            from_domain: String::new(),
            from_plain: Vec::new(),
            tags: Vec::new(),
            body: RelaxedBody::new(),
            body_hash: digest::Context::new(&digest::SHA256),
            signed: Vec::new(),
            hash_input: Vec::new(),
            signature: Vec::new(),
            base64: String::new(),
            output: Vec::new(),
            random: ring::rand::SystemRandom::new(),
        }
    }

    /// Starts a message that should be signed if its From domain has a key.
    pub fn begin(&mut self) {
        self.stage = Stage::Header;
        self.header.clear();
        self.header_line_bytes = 0;
        self.previous_cr = false;
        self.from_domain.clear();
        self.body = RelaxedBody::new();
        self.body_hash = digest::Context::new(&digest::SHA256);
    }

    /// Forgets the current message (aborted, or not to be signed).
    pub fn abandon(&mut self) {
        self.stage = Stage::Idle;
    }

    /// Takes the next piece of the message.
    pub fn update(&mut self, octets: &[u8]) {
        match self.stage {
            Stage::Idle => {}
            Stage::Header => {
                if let Some(body_start) = self.capture_header(octets) {
                    self.header_complete();
                    if self.stage == Stage::Body {
                        self.body.feed(&octets[body_start..], &mut self.body_hash);
                    }
                }
            }
            Stage::Body => self.body.feed(octets, &mut self.body_hash),
        }
    }

    /// Ends the message and returns its DKIM-Signature fields, one per key of the From domain,
    /// each ending in CRLF; empty when the message is not signed. `unix_seconds` is the `t=`.
    pub fn finish(&mut self, unix_seconds: u64) -> &[u8] {
        self.output.clear();
        if self.stage == Stage::Header {
            // The message ended inside its header section: it has no body.
            self.header_complete();
        }
        if self.stage != Stage::Body {
            self.stage = Stage::Idle;
            return &self.output;
        }
        self.stage = Stage::Idle;

        self.body.finish(&mut self.body_hash);
        let body_hash =
            std::mem::replace(&mut self.body_hash, digest::Context::new(&digest::SHA256)).finish();

        self.canonical_signed_fields();
        let tags = std::mem::take(&mut self.tags);
        let keys = Arc::clone(&self.keys);
        let domain = std::mem::take(&mut self.from_domain);
        for domain_key in keys.for_domain(&domain) {
            let field_start = self.output.len();
            write_signature_field_without_b(
                &mut self.output,
                domain_key,
                unix_seconds,
                &tags,
                body_hash.as_ref(),
            );
            if !self.sign_field(field_start, domain_key) {
                self.output.truncate(field_start);
            }
        }
        self.from_domain = domain;
        self.tags = tags;
        &self.output
    }

    /// Appends header octets to `header` until the empty line; returns where the body starts
    /// in `octets` once the header section has ended.
    fn capture_header(&mut self, octets: &[u8]) -> Option<usize> {
        let mut position = 0;
        while let Some(offset) = memchr::memchr(b'\n', &octets[position..]) {
            let line_feed = position + offset;
            let cr_before = if line_feed > position {
                octets[line_feed - 1] == b'\r'
            } else {
                self.previous_cr
            };
            let line_bytes = self.header_line_bytes + (line_feed - position);
            if cr_before && line_bytes == 1 {
                // The empty line: drop its CR (kept from this chunk or the previous one).
                self.header.extend_from_slice(&octets[position..line_feed]);
                self.header.pop();
                self.header_line_bytes = 0;
                return Some(line_feed + 1);
            }
            if !self.keep_header(&octets[position..=line_feed]) {
                return None;
            }
            self.header_line_bytes = 0;
            self.previous_cr = false;
            position = line_feed + 1;
        }
        let rest = &octets[position..];
        if let Some(&last) = rest.last() {
            self.previous_cr = last == b'\r';
            self.header_line_bytes += rest.len();
            self.keep_header(rest);
        }
        None
    }

    fn keep_header(&mut self, octets: &[u8]) -> bool {
        if self.header.len() + octets.len() > HEADER_CAPTURE_MAX_BYTES {
            debug!(
                limit = HEADER_CAPTURE_MAX_BYTES,
                "header section too large to sign; the message goes unsigned"
            );
            self.stage = Stage::Idle;
            return false;
        }
        self.header.extend_from_slice(octets);
        true
    }

    /// Decides, once the header section is known, whether this message is signed.
    fn header_complete(&mut self) {
        self.signed.clear();
        let mut from_fields = 0;
        for (start, colon, end) in fields(&self.header) {
            let name = &self.header[start..colon];
            let Some(index) = SIGNED_FIELDS.iter().position(|signed| {
                name.trim_ascii_end()
                    .eq_ignore_ascii_case(signed.as_bytes())
            }) else {
                continue;
            };
            if index == 0 {
                from_fields += 1;
                self.from_domain.clear();
                if let Some(domain) =
                    from_domain(&self.header[colon + 1..end], &mut self.from_plain)
                {
                    // from_domain checked that the domain is ASCII.
                    self.from_domain.extend(
                        domain
                            .iter()
                            .map(|octet| octet.to_ascii_lowercase() as char),
                    );
                }
            }
            self.signed.push((index, start, end));
        }

        // RFC 5322 §3.6 allows exactly one From; a message with none or several is malformed,
        // and signing it would lend it our domain's name.
        let signs = from_fields == 1
            && !self.from_domain.is_empty()
            && self.keys.signs_for(&self.from_domain);
        if !signs {
            if from_fields == 1 && !self.from_domain.is_empty() {
                debug!(domain = %self.from_domain, "no DKIM key for the From domain; not signed");
            } else {
                debug!(from_fields, "no usable From field; not signed");
            }
            self.stage = Stage::Idle;
            return;
        }
        self.stage = Stage::Body;
    }

    /// Writes the canonical signed fields into `hash_input` (each occurrence bottom-up, as
    /// verifiers select them, RFC 6376 §5.4.2) and their names, in the same order, into `tags`.
    fn canonical_signed_fields(&mut self) {
        self.hash_input.clear();
        self.tags.clear();
        for (index, name) in SIGNED_FIELDS.iter().enumerate() {
            for &(_, start, end) in self.signed.iter().rev().filter(|field| field.0 == index) {
                let field = &self.header[start..end];
                let colon = memchr::memchr(b':', field).expect("fields() found a colon");
                let value = field[colon + 1..]
                    .strip_suffix(b"\r\n")
                    .unwrap_or(&field[colon + 1..]);
                relaxed_header(&field[..colon], value, &mut self.hash_input);
                self.hash_input.extend_from_slice(b"\r\n");
                self.tags.push(name);
            }
            if index == 0 {
                // The oversigned From: it names a field that does not exist, which hashes as
                // nothing and makes any added From fail verification.
                self.tags.push(name);
            }
        }
    }

    /// Signs the field written at `output[field_start..]` (ending in `b=`) and appends the
    /// signature, folded, and the final CRLF. False if the key failed to sign.
    fn sign_field(&mut self, field_start: usize, domain_key: &super::DomainKey) -> bool {
        let headers_length = self.hash_input.len();
        let field = &self.output[field_start..];
        let colon = memchr::memchr(b':', field).expect("the field starts with its name");
        relaxed_header(&field[..colon], &field[colon + 1..], &mut self.hash_input);

        self.signature.clear();
        let signed = domain_key
            .key
            .sign(&self.hash_input, &self.random, &mut self.signature);
        self.hash_input.truncate(headers_length);
        if signed.is_err() {
            tracing::warn!(
                domain = %domain_key.domain,
                selector = %domain_key.selector,
                "DKIM signing failed; the message goes without this signature"
            );
            return false;
        }

        self.base64.clear();
        base64::engine::general_purpose::STANDARD.encode_string(&self.signature, &mut self.base64);
        let mut column = "\tb=".len();
        for chunk in self.base64.as_bytes().chunks(FOLD_COLUMNS - 4) {
            if column + chunk.len() > FOLD_COLUMNS {
                self.output.extend_from_slice(b"\r\n\t ");
                column = 2;
            }
            self.output.extend_from_slice(chunk);
            column += chunk.len();
        }
        self.output.extend_from_slice(b"\r\n");
        true
    }
}

/// Writes `DKIM-Signature: v=1; a=...; ...; bh=...;` and a last line `b=`, folded.
fn write_signature_field_without_b(
    out: &mut Vec<u8>,
    domain_key: &super::DomainKey,
    unix_seconds: u64,
    tags: &[&str],
    body_hash: &[u8],
) {
    let engine = &base64::engine::general_purpose::STANDARD;
    out.extend_from_slice(b"DKIM-Signature: v=1; a=");
    out.extend_from_slice(domain_key.key.algorithm_tag().as_bytes());
    out.extend_from_slice(b"; c=relaxed/relaxed; d=");
    out.extend_from_slice(domain_key.domain.as_bytes());
    out.extend_from_slice(b"; s=");
    out.extend_from_slice(domain_key.selector.as_bytes());
    out.extend_from_slice(b";\r\n\tt=");
    let _ = write!(out, "{unix_seconds}"); // Writing into a Vec cannot fail.
    out.extend_from_slice(b"; h=");
    let mut column = "\tt=; h=".len() + 10;
    for (index, tag) in tags.iter().enumerate() {
        if index > 0 {
            out.push(b':');
            column += 1;
        }
        if column + tag.len() > FOLD_COLUMNS {
            // FWS is allowed around the colons of h= (RFC 6376 §3.5).
            out.extend_from_slice(b"\r\n\t ");
            column = 2;
        }
        out.extend_from_slice(tag.as_bytes());
        column += tag.len();
    }
    out.extend_from_slice(b";\r\n\tbh=");
    let mut encoded = [0u8; 64];
    let length = engine
        .encode_slice(body_hash, &mut encoded)
        .expect("a SHA-256 digest fits in 64 base64 characters");
    out.extend_from_slice(&encoded[..length]);
    out.extend_from_slice(b";\r\n\tb=");
}

/// The header fields of a header section: (start, colon, end) offsets, `end` after the field's
/// final CRLF. Lines that start no field (no colon) are skipped.
fn fields(header: &[u8]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut position = 0;
    std::iter::from_fn(move || loop {
        if position >= header.len() {
            return None;
        }
        let start = position;
        let mut end = next_line(header, start);
        while end < header.len() && matches!(header[end], b' ' | b'\t') {
            end = next_line(header, end);
        }
        position = end;
        let first_line = &header[start..next_line(header, start)];
        if let Some(colon) = memchr::memchr(b':', first_line) {
            if !matches!(header[start], b' ' | b'\t') {
                return Some((start, start + colon, end));
            }
        }
    })
}

/// The offset after the next LF at or after `from`, or the end.
fn next_line(header: &[u8], from: usize) -> usize {
    memchr::memchr(b'\n', &header[from..]).map_or(header.len(), |offset| from + offset + 1)
}

/// The domain of the single mailbox in a From value, as written; `None` for a list of
/// mailboxes, a group, or anything without a plain ASCII domain. `plain` is scratch space.
fn from_domain<'a>(value: &[u8], plain: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    // Drop quoted strings and comments, which may contain any of `<>@,` (RFC 5322 §3.2).
    plain.clear();
    let mut quoted = false;
    let mut comment_depth = 0usize;
    let mut escaped = false;
    for &octet in value {
        if escaped {
            escaped = false;
            continue;
        }
        match octet {
            b'\\' if quoted || comment_depth > 0 => escaped = true,
            b'"' if comment_depth == 0 => quoted = !quoted,
            b'(' if !quoted => comment_depth += 1,
            b')' if !quoted && comment_depth > 0 => comment_depth -= 1,
            _ if quoted || comment_depth > 0 => {}
            _ => plain.push(octet),
        }
    }
    if plain.contains(&b',') || plain.contains(&b';') {
        return None;
    }
    let address = match memchr::memchr(b'<', plain) {
        Some(open) => {
            let close = memchr::memchr(b'>', &plain[open..])? + open;
            &plain[open + 1..close]
        }
        None => &plain[..],
    };
    let at = memchr::memrchr(b'@', address)?;
    let domain = address[at + 1..].trim_ascii();
    let valid = !domain.is_empty()
        && domain
            .iter()
            .all(|octet| octet.is_ascii_alphanumeric() || matches!(octet, b'-' | b'.'));
    valid.then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_domains() {
        let domain = |value: &str| {
            let mut plain = Vec::new();
            from_domain(value.as_bytes(), &mut plain)
                .map(|d| String::from_utf8_lossy(d).into_owned())
        };
        assert_eq!(domain(" a@Example.COM"), Some("Example.COM".into()));
        assert_eq!(
            domain(" Alice <alice@example.com>"),
            Some("example.com".into())
        );
        assert_eq!(
            domain(" \"evil@other.test, <x@other.test>\" <a@example.com> (c@other.test)"),
            Some("example.com".into())
        );
        assert_eq!(domain(" a@example.com, b@other.test"), None);
        assert_eq!(domain(" group: a@example.com;"), None);
        assert_eq!(domain(" nobody"), None);
        assert_eq!(domain(" <a@>"), None);
    }

    #[test]
    fn fields_are_split_with_their_folds() {
        let header = b"From: a@example.com\r\nSubject: one\r\n two\r\n bad line\r\nTo: b\r\n";
        let found: Vec<&[u8]> = fields(header)
            .map(|(start, _, end)| &header[start..end])
            .collect();
        assert_eq!(
            found,
            [
                &b"From: a@example.com\r\n"[..],
                b"Subject: one\r\n two\r\n bad line\r\n",
                b"To: b\r\n"
            ]
        );
        let odd = b"no colon here\r\nX: y";
        let found: Vec<&[u8]> = fields(odd)
            .map(|(start, _, end)| &odd[start..end])
            .collect();
        assert_eq!(found, [&b"X: y"[..]]);
    }

    fn ed25519_keys(domain: &str) -> Arc<SigningKeys> {
        let generated =
            super::super::keygen::generate(crate::config::DkimAlgorithm::Ed25519Sha256, None)
                .unwrap();
        Arc::new(SigningKeys {
            keys: vec![super::super::DomainKey {
                domain: domain.to_owned(),
                selector: "s1".to_owned(),
                key: generated.key,
            }],
        })
    }

    fn sign_in_pieces(signer: &mut MessageSigner, message: &[u8], cuts: &[usize]) -> Vec<u8> {
        signer.begin();
        let mut start = 0;
        for &cut in cuts {
            signer.update(&message[start..cut]);
            start = cut;
        }
        signer.update(&message[start..]);
        signer.finish(1_700_000_000).to_vec()
    }

    const MESSAGE: &[u8] = b"From: Alice <alice@example.com>\r\nTo: bob@other.test\r\n\
        Subject: hello\r\n  folded\r\nX-Other: not signed\r\n\r\nbody  line \r\n\r\n";

    #[test]
    fn a_signature_lists_present_fields_and_oversigns_from() {
        let mut signer = MessageSigner::new(ed25519_keys("example.com"));
        let field = String::from_utf8(sign_in_pieces(&mut signer, MESSAGE, &[])).unwrap();
        assert!(field.starts_with(
            "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; \
             d=example.com; s=s1;\r\n\tt=1700000000; h=from:from:to:subject;\r\n\tbh="
        ));
        assert!(
            field.ends_with("\r\n") && field.contains("\r\n\tb="),
            "{field}"
        );
        assert!(!field.contains("x-other"));
    }

    #[test]
    fn unknown_domains_and_several_from_fields_are_not_signed() {
        let mut signer = MessageSigner::new(ed25519_keys("elsewhere.test"));
        assert!(sign_in_pieces(&mut signer, MESSAGE, &[]).is_empty());
        let mut signer = MessageSigner::new(ed25519_keys("example.com"));
        let twice = b"From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n";
        assert!(sign_in_pieces(&mut signer, twice, &[]).is_empty());
        // Domains compare without regard to case; d= is the configured spelling.
        let shouting = b"From: a@EXAMPLE.Com\r\n\r\nx\r\n";
        let field = sign_in_pieces(&mut signer, shouting, &[]);
        assert!(String::from_utf8_lossy(&field).contains("d=example.com;"));
        // A message without a body (no empty line) is still signed.
        let header_only = b"From: a@example.com\r\nSubject: s\r\n";
        assert!(!sign_in_pieces(&mut signer, header_only, &[]).is_empty());
    }

    proptest::proptest! {
        /// Ed25519 signatures are deterministic, so any split of the input must give the very
        /// same field; this covers the header scanner and the body at every boundary.
        #[test]
        fn any_split_signs_the_same(
            cuts in proptest::collection::vec(0..MESSAGE.len(), 0..6),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut signer = MessageSigner::new(ed25519_keys("example.com"));
            let whole = sign_in_pieces(&mut signer, MESSAGE, &[]);
            let split = sign_in_pieces(&mut signer, MESSAGE, &cuts);
            proptest::prop_assert!(!whole.is_empty());
            proptest::prop_assert_eq!(whole, split);
        }
    }
}
