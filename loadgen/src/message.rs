//! The generated messages and their proof of integrity. This file owns the message format that
//! `send` writes and `sink` verifies: the `X-Loadgen-Id` header (`<run>-<n>`, unique per run), the
//! `X-Loadgen-Checksum` header (CRC32C and length of the body, i.e. of everything after the first
//! empty line, as the receiver sees it after dot-unstuffing), the pre-rendered bodies in their
//! dot-stuffed wire form, and the header parser the sink uses. It guarantees that a body's wire
//! form unstuffs to exactly the octets its checksum covers, and that every body has lines
//! starting with a dot so that transparency (RFC 5321 §4.5.2) is exercised on every message.
//! It does no I/O.

use std::fmt::Write as _;
use std::rc::Rc;

/// The header that names a message; the value is `<run>-<n>`.
pub const ID_HEADER: &str = "X-Loadgen-Id";

/// The header that proves the body intact: `crc32c=<8 hex digits>; bytes=<decimal>`.
pub const CHECKSUM_HEADER: &str = "X-Loadgen-Checksum";

/// Length of a generated body line, CRLF included. Well under the 1,000-octet limit of RFC 5321
/// §4.5.3.1.6, and close to what mail clients write.
const LINE_BYTES: usize = 78;

/// Every this many lines, one starts with a dot, so dot-stuffing is always on the path.
const DOT_LINE_EVERY: usize = 7;

/// One body, ready to send: dot-stuffed, terminated by `<CRLF>.<CRLF>`, with its checksum.
#[derive(Debug)]
pub struct Body {
    /// The body as it goes on the wire after the headers: stuffed, ending with `.\r\n`.
    pub wire: Vec<u8>,
    /// The unstuffed body length, as the receiver counts it.
    pub bytes: usize,
    pub crc32c: u32,
}

impl Body {
    /// Renders a body of exactly `bytes` octets (0 or at least 2; a single octet cannot be a
    /// CRLF-terminated line, so 1 gives an empty body). The content is deterministic.
    pub fn render(bytes: usize) -> Body {
        let raw = raw_body(bytes);
        let crc32c = crc32c::crc32c(&raw);
        let mut wire = Vec::with_capacity(raw.len() + raw.len() / LINE_BYTES + 8);
        stuff(&raw, &mut wire);
        wire.extend_from_slice(b".\r\n");
        Body {
            wire,
            bytes: raw.len(),
            crc32c,
        }
    }
}

/// The raw (unstuffed) body text: printable lines of `LINE_BYTES`, the last one taking the
/// remainder so the total is exact.
fn raw_body(bytes: usize) -> Vec<u8> {
    let mut raw = Vec::with_capacity(bytes);
    if bytes < 2 {
        return raw;
    }
    let mut line = 0usize;
    let mut seed = 0x9e37_79b9_u32;
    while raw.len() < bytes {
        let remaining = bytes - raw.len();
        // The last line absorbs the remainder (at most 2 * LINE_BYTES - 1 octets, far below the
        // line limit), so no line is ever shorter than its CRLF.
        let length = if remaining >= 2 * LINE_BYTES {
            LINE_BYTES
        } else {
            remaining
        };
        for column in 0..length - 2 {
            let octet = if column == 0 && line % DOT_LINE_EVERY == 3 {
                b'.'
            } else {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                // Printable ASCII without the dot, so only the deliberate dots start lines.
                let octet = b'0' + (seed % 75) as u8;
                if octet == b'.' {
                    b'_'
                } else {
                    octet
                }
            };
            raw.push(octet);
        }
        raw.extend_from_slice(b"\r\n");
        line += 1;
    }
    raw
}

/// Dot-stuffs `raw` into `wire` (RFC 5321 §4.5.2): a line that starts with `.` gets another.
/// `raw` must consist of CRLF-terminated lines.
pub fn stuff(raw: &[u8], wire: &mut Vec<u8>) {
    let mut at_line_start = true;
    for &octet in raw {
        if at_line_start && octet == b'.' {
            wire.push(b'.');
        }
        wire.push(octet);
        at_line_start = octet == b'\n';
    }
}

/// How message sizes are chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeChoice {
    Fixed(usize),
    /// Uniform over `SIZE_BUCKETS` evenly spaced sizes from `min` to `max`; a bucketed choice
    /// lets every body be pre-rendered once.
    Uniform {
        min: usize,
        max: usize,
    },
}

/// How many distinct sizes a uniform distribution is drawn from.
pub const SIZE_BUCKETS: usize = 32;

impl SizeChoice {
    /// Parses `4096`, `4k`, `1m` or `uniform:1k-64k`.
    pub fn parse(text: &str) -> Result<SizeChoice, String> {
        if let Some(range) = text.strip_prefix("uniform:") {
            let (min, max) = range
                .split_once('-')
                .ok_or_else(|| format!("`{text}`: write a range as uniform:MIN-MAX"))?;
            let (min, max) = (parse_bytes(min)?, parse_bytes(max)?);
            if min > max {
                return Err(format!("`{text}`: the minimum is larger than the maximum"));
            }
            return Ok(SizeChoice::Uniform { min, max });
        }
        parse_bytes(text).map(SizeChoice::Fixed)
    }

    /// Every size this choice can produce, in bucket order.
    pub fn sizes(&self) -> Vec<usize> {
        match *self {
            SizeChoice::Fixed(size) => vec![size],
            SizeChoice::Uniform { min, max } => {
                let step = (max - min) / (SIZE_BUCKETS - 1).max(1);
                let mut sizes: Vec<usize> = (0..SIZE_BUCKETS)
                    .map(|bucket| min + bucket * step)
                    .collect();
                if let Some(last) = sizes.last_mut() {
                    *last = max;
                }
                sizes.dedup();
                sizes
            }
        }
    }
}

/// Parses a byte count with an optional `k`/`m` suffix (powers of 1,024).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, unit) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 1024),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|value| value.checked_mul(unit))
        .ok_or_else(|| format!("`{text}` is not a byte count (examples: 4096, 4k, 1m)"))
}

/// The bodies a sender draws from, rendered once per thread.
pub struct BodySet {
    pub bodies: Vec<Rc<Body>>,
}

impl BodySet {
    pub fn new(choice: &SizeChoice) -> BodySet {
        BodySet {
            bodies: choice
                .sizes()
                .into_iter()
                .map(|size| Rc::new(Body::render(size)))
                .collect(),
        }
    }

    /// The body for message `n`: a cheap hash of `n` picks the bucket, so the choice is
    /// reproducible and spread evenly.
    pub fn pick(&self, n: u64) -> &Rc<Body> {
        let mixed = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        &self.bodies[(mixed % self.bodies.len() as u64) as usize]
    }
}

/// Writes the header block of message `n` (ending with the empty line) into `out`.
pub fn write_headers(out: &mut Vec<u8>, run: &str, n: u64, from: &str, to: &str, body: &Body) {
    // `fmt::Write` on a String would allocate; writing through a small adapter keeps this
    // free of allocations once `out` has grown to its working size.
    let mut writer = VecWriter(out);
    let _ = write!(
        writer,
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: postern-loadgen {run}-{n}\r\n\
         Message-ID: <{run}-{n}@postern-loadgen>\r\n{ID_HEADER}: {run}-{n}\r\n\
         {CHECKSUM_HEADER}: crc32c={:08x}; bytes={}\r\n\r\n",
        body.crc32c, body.bytes
    );
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// What the sink learns from one received (unstuffed) message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// The id header was there and the body matches its checksum.
    Intact { id: &'a str },
    /// The id header was there but the checksum header is missing, malformed or disagrees.
    Corrupted { id: &'a str },
    /// No `X-Loadgen-Id` header: not one of ours, or its header was mangled.
    Unidentified,
}

/// Checks one received message. Headers are parsed robustly: names case-insensitively, folded
/// continuation lines (RFC 5322 §2.2.3) joined, and any number of headers a relay prepended
/// (`Received:`, `DKIM-Signature:`, `Authentication-Results:`) before ours.
pub fn verify(message: &[u8]) -> Verdict<'_> {
    let (header_block, body) = split_header_body(message);
    let mut id = None;
    let mut checksum = None;
    for (name, value) in header_fields(header_block) {
        if name.eq_ignore_ascii_case(ID_HEADER.as_bytes()) && id.is_none() {
            id = std::str::from_utf8(value).ok().map(str::trim);
        } else if name.eq_ignore_ascii_case(CHECKSUM_HEADER.as_bytes()) && checksum.is_none() {
            checksum = parse_checksum(value);
        }
    }
    let Some(id) = id.filter(|id| !id.is_empty() && !id.contains(char::is_whitespace)) else {
        return Verdict::Unidentified;
    };
    match checksum {
        Some((crc, bytes)) if bytes == body.len() && crc == crc32c::crc32c(body) => {
            Verdict::Intact { id }
        }
        _ => Verdict::Corrupted { id },
    }
}

/// Splits at the first empty line. A message with no empty line is all header (RFC 5322 §2.1).
fn split_header_body(message: &[u8]) -> (&[u8], &[u8]) {
    if message.starts_with(b"\r\n") {
        return (&[], &message[2..]);
    }
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(at) => (&message[..at + 2], &message[at + 4..]),
        None => (message, &[]),
    }
}

/// The header fields of `block` as (name, value) pairs; a folded value keeps its line breaks,
/// which the callers trim or ignore.
fn header_fields(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = block;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        // A field runs until a CRLF not followed by white space (a fold).
        let mut end = 0;
        let field_end = loop {
            match memchr::memmem::find(&rest[end..], b"\r\n") {
                Some(at) => {
                    let line_end = end + at;
                    let next = rest.get(line_end + 2);
                    if matches!(next, Some(b' ' | b'\t')) {
                        end = line_end + 2;
                        continue;
                    }
                    break line_end;
                }
                None => break rest.len(),
            }
        };
        let field = &rest[..field_end];
        rest = rest.get(field_end + 2..).unwrap_or(&[]);
        if let Some(colon) = memchr::memchr(b':', field) {
            return Some((trim(&field[..colon]), &field[colon + 1..]));
        }
    })
}

/// Parses `crc32c=<hex>; bytes=<decimal>` (white space, case and folding tolerated).
fn parse_checksum(value: &[u8]) -> Option<(u32, usize)> {
    let value = std::str::from_utf8(value).ok()?;
    let mut crc = None;
    let mut bytes = None;
    for part in value.split(';') {
        let (key, number) = part.split_once('=')?;
        let number: String = number.chars().filter(|c| !c.is_whitespace()).collect();
        match key.trim().to_ascii_lowercase().as_str() {
            "crc32c" => crc = u32::from_str_radix(&number, 16).ok(),
            "bytes" => bytes = number.parse().ok(),
            _ => {}
        }
    }
    Some((crc?, bytes?))
}

fn trim(octets: &[u8]) -> &[u8] {
    let start = octets
        .iter()
        .position(|octet| !octet.is_ascii_whitespace())
        .unwrap_or(octets.len());
    let end = octets
        .iter()
        .rposition(|octet| !octet.is_ascii_whitespace())
        .map_or(start, |at| at + 1);
    &octets[start..end]
}

/// A run id: eight hex digits from the clock and the process id, so two runs on one host (or a
/// rerun a second later) never share ids.
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = (nanos ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut run = String::with_capacity(8);
    let _ = write!(run, "{:08x}", (mixed >> 32) as u32);
    run
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern::smtp::DataDecoder;

    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let mut decoder = DataDecoder::new(1000, 1 << 30, false);
        let mut body = Vec::new();
        let (used, verdict) = decoder.decode(wire, &mut body);
        assert_eq!(
            used,
            wire.len(),
            "the terminator ends the wire form exactly"
        );
        assert_eq!(verdict, Some(Ok(())));
        body
    }

    #[test]
    fn bodies_have_exact_sizes_and_unstuff_to_what_the_checksum_covers() {
        for size in [0, 2, 3, 77, 78, 79, 155, 156, 157, 4096, 65_537] {
            let body = Body::render(size);
            assert_eq!(body.bytes, size, "size {size}");
            let raw = unstuff(&body.wire);
            assert_eq!(raw.len(), size);
            assert_eq!(crc32c::crc32c(&raw), body.crc32c);
        }
    }

    #[test]
    fn bodies_exercise_dot_stuffing() {
        let body = Body::render(4096);
        assert!(memchr::memmem::find(&body.wire, b"\r\n..").is_some());
    }

    #[test]
    fn a_rendered_message_verifies_after_a_relay_prepends_headers() {
        let body = Body::render(1000);
        let mut message =
            b"Received: from x\r\n\tby y; Thu, 1 Jan 2026\r\nDKIM-Signature: v=1;\r\n b=abc\r\n"
                .to_vec();
        write_headers(&mut message, "run1", 7, "a@b", "c@d", &body);
        let mut raw = unstuff(&body.wire);
        message.append(&mut raw);
        assert_eq!(verify(&message), Verdict::Intact { id: "run1-7" });

        let last = message.len() - 3;
        message[last] ^= 1;
        assert_eq!(verify(&message), Verdict::Corrupted { id: "run1-7" });
    }

    #[test]
    fn header_names_are_case_insensitive_and_folds_are_joined() {
        let message =
            b"x-loadgen-id:\r\n run-1\r\nx-loadgen-checksum: CRC32C=00000000;\r\n bytes=0\r\n\r\n";
        assert_eq!(verify(message), Verdict::Intact { id: "run-1" });
    }

    #[test]
    fn a_message_without_our_header_is_unidentified() {
        assert_eq!(
            verify(b"Subject: hi\r\n\r\nbody\r\n"),
            Verdict::Unidentified
        );
        assert_eq!(verify(b""), Verdict::Unidentified);
    }

    #[test]
    fn sizes_parse_and_bucket() {
        assert_eq!(SizeChoice::parse("4k"), Ok(SizeChoice::Fixed(4096)));
        let uniform = SizeChoice::parse("uniform:1k-2k").unwrap();
        let sizes = uniform.sizes();
        assert_eq!(sizes.first(), Some(&1024));
        assert_eq!(sizes.last(), Some(&2048));
        assert!(SizeChoice::parse("uniform:2k-1k").is_err());
        assert!(SizeChoice::parse("lots").is_err());
    }
}
