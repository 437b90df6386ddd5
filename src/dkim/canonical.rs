//! DKIM "relaxed" canonicalization (RFC 6376 §3.4.2 for header fields, §3.4.4 for the body).
//!
//! The body canonicalizer is a streaming state machine: the message arrives in chunks cut
//! anywhere (inside a CRLF, inside a run of spaces, inside a run of trailing empty lines), and
//! the output is the same as if the whole body had been given at once. Its state is a few flags
//! and one counter, so a session that signs carries no copy of the body. Output goes straight
//! into a [`BodySink`] (the SHA-256 context in production, a `Vec` in tests) in runs, never byte
//! by byte. Only CRLF ends a line here: a bare CR or LF (which the session refuses by default) is
//! an ordinary octet. No I/O, no allocation.

// LIMITATION(L15): receivers that treat bare CR or LF as line ends may compute another hash.

/// Where canonical body octets go.
pub trait BodySink {
    fn write(&mut self, octets: &[u8]);
}

impl BodySink for ring::digest::Context {
    fn write(&mut self, octets: &[u8]) {
        self.update(octets);
    }
}

impl BodySink for Vec<u8> {
    fn write(&mut self, octets: &[u8]) {
        self.extend_from_slice(octets);
    }
}

/// Octets gathered before they go to the sink: canonical output comes in short pieces (a word,
/// one space), and each digest update has a fixed cost that dominates on such pieces.
const GATHER_BYTES: usize = 1024;

/// Gathers the canonicalizer's short writes into blocks of up to `GATHER_BYTES` for `sink`.
struct Gathered<'a, S: BodySink> {
    sink: &'a mut S,
    buffer: [u8; GATHER_BYTES],
    length: usize,
}

impl<'a, S: BodySink> Gathered<'a, S> {
    fn new(sink: &'a mut S) -> Gathered<'a, S> {
        Gathered {
            sink,
            buffer: [0; GATHER_BYTES],
            length: 0,
        }
    }

    fn flush(&mut self) {
        if self.length > 0 {
            self.sink.write(&self.buffer[..self.length]);
            self.length = 0;
        }
    }
}

impl<S: BodySink> BodySink for Gathered<'_, S> {
    fn write(&mut self, octets: &[u8]) {
        if octets.len() > GATHER_BYTES - self.length {
            self.flush();
            if octets.len() > GATHER_BYTES / 2 {
                // Long runs go straight through; copying them would only cost.
                self.sink.write(octets);
                return;
            }
        }
        self.buffer[self.length..self.length + octets.len()].copy_from_slice(octets);
        self.length += octets.len();
    }
}

/// The relaxed body canonicalizer (RFC 6376 §3.4.4).
///
/// Whitespace at the end of a line is dropped, every other run of SP and HTAB becomes one SP,
/// and empty lines at the end of the body are dropped; a last line without CRLF gets one. A body
/// that is empty after all that canonicalizes to nothing (zero octets), as RFC 6376 §3.4.4
/// leaves it and as verifiers (OpenDKIM, dkimpy) compute it; only "simple" turns an empty body
/// into a CRLF (§3.4.3).
#[derive(Clone, Debug, Default)]
pub struct RelaxedBody {
    /// A CR was the last octet seen; it ends the line if LF comes next, else it is text.
    cr_pending: bool,
    /// SP or HTAB seen since the last text octet of this line and not written yet: it becomes
    /// one SP if more text follows on the line, nothing if the line ends.
    whitespace_pending: bool,
    /// Text has been written on the current line (so its CRLF is written, not held back).
    line_has_text: bool,
    /// Empty lines seen since the last line with text; written only if text follows, since
    /// empty lines at the end of the body are dropped.
    empty_lines_pending: u64,
}

impl RelaxedBody {
    pub fn new() -> RelaxedBody {
        RelaxedBody::default()
    }

    /// Canonicalizes the next piece of the body.
    pub fn feed(&mut self, input: &[u8], sink: &mut impl BodySink) {
        let mut gathered = Gathered::new(sink);
        self.feed_gathered(input, &mut gathered);
        gathered.flush();
    }

    fn feed_gathered(&mut self, input: &[u8], sink: &mut impl BodySink) {
        let mut position = 0;
        while position < input.len() {
            if self.cr_pending {
                self.cr_pending = false;
                if input[position] == b'\n' {
                    self.end_line(sink);
                    position += 1;
                    continue;
                }
                // A bare CR: text like any other octet.
                self.text(b"\r", sink);
            }

            let rest = &input[position..];
            let Some(special) = next_special(rest, self.whitespace_pending) else {
                self.text(rest, sink);
                return;
            };
            if special > 0 {
                self.text(&rest[..special], sink);
            }
            if rest[special] == b'\r' {
                self.cr_pending = true;
            } else {
                self.whitespace_pending = true;
            }
            position += special + 1;
        }
    }

    /// Ends the body: a trailing bare CR is text, an unterminated last line gets its CRLF, and
    /// held-back empty lines and whitespace are dropped. The canonicalizer is then fresh again.
    pub fn finish(&mut self, sink: &mut impl BodySink) {
        if self.cr_pending {
            self.text(b"\r", sink);
        }
        if self.line_has_text {
            sink.write(b"\r\n");
        }
        *self = RelaxedBody::default();
    }

    fn text(&mut self, octets: &[u8], sink: &mut impl BodySink) {
        if octets.is_empty() {
            return;
        }
        if !self.line_has_text {
            for _ in 0..self.empty_lines_pending {
                sink.write(b"\r\n");
            }
            self.empty_lines_pending = 0;
            self.line_has_text = true;
        }
        if self.whitespace_pending {
            sink.write(b" ");
            self.whitespace_pending = false;
        }
        sink.write(octets);
    }

    fn end_line(&mut self, sink: &mut impl BodySink) {
        // Whitespace before the CRLF is trailing whitespace: dropped.
        self.whitespace_pending = false;
        if self.line_has_text {
            sink.write(b"\r\n");
            self.line_has_text = false;
        } else {
            self.empty_lines_pending += 1;
        }
    }
}

/// Where the next octet that canonicalization may change is in `input`: a CR, an HTAB, or an SP
/// that is not a single space between two other octets. Single spaces between words are already
/// canonical, so a whole line of ordinary text is one run, written at once. A space at the start
/// continues whitespace still pending from before (`whitespace_pending`), so it is not single.
fn next_special(input: &[u8], whitespace_pending: bool) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = from + memchr::memchr3(b' ', b'\t', b'\r', &input[from..])?;
        let single_space = input[at] == b' '
            && !(at == 0 && whitespace_pending)
            && input
                .get(at + 1)
                .is_some_and(|next| !matches!(next, b' ' | b'\t' | b'\r'));
        if !single_space {
            return Some(at);
        }
        from = at + 1;
    }
}

/// Appends the relaxed form of one header field (RFC 6376 §3.4.2) to `out`: the name in
/// lowercase without trailing whitespace, a colon, then the value unfolded, its whitespace runs
/// made one SP and stripped at both ends. `value` is everything after the colon, without the
/// field's final CRLF; no CRLF is appended.
pub fn relaxed_header(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let name = trim_end_whitespace(name);
    out.extend(name.iter().map(u8::to_ascii_lowercase));
    out.push(b':');

    let start = out.len();
    let mut whitespace_pending = false;
    let mut index = 0;
    while index < value.len() {
        let octet = value[index];
        if octet == b'\r' && value.get(index + 1) == Some(&b'\n') {
            // Unfolding removes the CRLF; the whitespace after it stays (and is compressed).
            index += 2;
            continue;
        }
        if octet == b' ' || octet == b'\t' {
            whitespace_pending = true;
        } else {
            if whitespace_pending && out.len() > start {
                out.push(b' ');
            }
            whitespace_pending = false;
            out.push(octet);
        }
        index += 1;
    }
}

fn trim_end_whitespace(mut octets: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = octets {
        octets = rest;
    }
    octets
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at_once(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut canonical = RelaxedBody::new();
        canonical.feed(body, &mut out);
        canonical.finish(&mut out);
        out
    }

    /// The rules of RFC 6376 §3.4.4 applied to the whole body with plain loops, as the
    /// reference the streaming machine is checked against.
    fn reference(body: &[u8]) -> Vec<u8> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut rest = body;
        // An unterminated last line is a line like the others: it gets its CRLF below.
        while !rest.is_empty() {
            match rest.windows(2).position(|pair| pair == b"\r\n") {
                Some(end) => {
                    lines.push(rest[..end].to_vec());
                    rest = &rest[end + 2..];
                }
                None => {
                    lines.push(rest.to_vec());
                    rest = &[];
                }
            }
        }
        let mut canonical: Vec<Vec<u8>> = lines
            .iter()
            .map(|line| {
                let mut out = Vec::new();
                let mut space = false;
                for &octet in line {
                    if octet == b' ' || octet == b'\t' {
                        space = true;
                    } else {
                        if space {
                            out.push(b' ');
                        }
                        space = false;
                        out.push(octet);
                    }
                }
                out
            })
            .collect();
        while canonical.last().is_some_and(Vec::is_empty) {
            canonical.pop();
        }
        let mut out = Vec::new();
        for line in canonical {
            out.extend_from_slice(&line);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn rfc_examples_and_edges() {
        // RFC 6376 §3.4.5, the body of the example: " C \r\nD \t E\r\n\r\n\r\n".
        assert_eq!(at_once(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(at_once(b""), b"");
        assert_eq!(at_once(b"\r\n"), b"");
        assert_eq!(at_once(b"\r\n\r\n  \r\n\t\r\n"), b"");
        assert_eq!(at_once(b"no final line break"), b"no final line break\r\n");
        assert_eq!(at_once(b"trailing  \t "), b"trailing\r\n");
        assert_eq!(at_once(b"a\r\n\r\nb\r\n\r\n"), b"a\r\n\r\nb\r\n");
        assert_eq!(at_once(b"bare\rcr \r"), b"bare\rcr \r\r\n");
        assert_eq!(at_once(b"bare\nlf\n"), b"bare\nlf\n\r\n");
        assert_eq!(
            at_once("8-bit: caf\u{e9}  \r\n".as_bytes()),
            "8-bit: caf\u{e9}\r\n".as_bytes()
        );
    }

    #[test]
    fn header_fields_are_relaxed() {
        let mut out = Vec::new();
        relaxed_header(b"SUBJect \t", b" Hello \t  world\r\n\t again  ", &mut out);
        assert_eq!(out, b"subject:Hello world again");
        out.clear();
        relaxed_header(b"To", b"", &mut out);
        assert_eq!(out, b"to:");
        out.clear();
        relaxed_header(b"X", b"\r\n folded\r\n", &mut out);
        assert_eq!(out, b"x:folded");
    }

    fn body_octets() -> impl Strategy<Value = Vec<u8>> {
        // Mostly the octets that matter to the machine, so the interesting cases are common.
        let octet = prop_oneof![
            4 => Just(b' '),
            2 => Just(b'\t'),
            4 => Just(b'\r'),
            4 => Just(b'\n'),
            4 => Just(b'x'),
            1 => any::<u8>(),
        ];
        prop::collection::vec(octet, 0..200)
    }

    proptest! {
        #[test]
        fn any_split_equals_feeding_at_once(
            body in body_octets(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut offsets: Vec<usize> =
                cuts.iter().map(|cut| cut.index(body.len() + 1)).collect();
            offsets.sort_unstable();
            let mut out = Vec::new();
            let mut canonical = RelaxedBody::new();
            let mut start = 0;
            for offset in offsets {
                canonical.feed(&body[start..offset], &mut out);
                start = offset;
            }
            canonical.feed(&body[start..], &mut out);
            canonical.finish(&mut out);
            prop_assert_eq!(&out, &at_once(&body));
        }

        #[test]
        fn streaming_matches_the_reference(body in body_octets()) {
            prop_assert_eq!(at_once(&body), reference(&body));
        }

        #[test]
        fn octet_by_octet_matches_the_reference(body in body_octets()) {
            let mut out = Vec::new();
            let mut canonical = RelaxedBody::new();
            for octet in &body {
                canonical.feed(std::slice::from_ref(octet), &mut out);
            }
            canonical.finish(&mut out);
            prop_assert_eq!(out, reference(&body));
        }
    }
}
