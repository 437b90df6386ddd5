//! The streaming filter that removes `Authentication-Results:` fields claiming our authserv-id
//! from the header section of untrusted mail (RFC 8601 §5: a receiver must not let such
//! claims from outside reach the readers that trust its own).
//!
//! It works on the unstuffed message content as it arrives, in pieces of any size: a field
//! may be folded over many lines and cut anywhere between two reads. Only fields named
//! `Authentication-Results` are held back until they end; every other byte passes as soon as
//! its field's name is known, and after the blank line that ends the header section
//! (RFC 5322 §2.1) everything passes untouched. A held field is bounded by
//! `HELD_FIELD_MAX_BYTES`. Pure: no I/O, no allocation beyond the held field.

/// The field this filter looks for (RFC 8601 §2.2), compared without regard to case.
const FIELD_NAME: &[u8] = b"authentication-results";

/// Longest field name we wait for before deciding the field is not ours to look at. RFC 5322
/// §2.1.1 limits a line to 998 characters, which bounds any honest field name.
const FIELD_NAME_MAX_BYTES: usize = 998;

/// Longest `Authentication-Results:` field held back whole. One that grows past it is decided
/// on what it has shown so far: kept if it already names another authserv-id, dropped
/// otherwise, so that padding cannot smuggle a claim of ours through.
const HELD_FIELD_MAX_BYTES: usize = 64 * 1024;

/// Where the filter stands in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the first byte of a header line; `current` says what a continuation line joins.
    LineStart,
    /// In the first line of a field, before its colon; the bytes are held.
    Name,
    /// Inside a field that is kept: bytes pass.
    Passing,
    /// Inside an `Authentication-Results:` field: bytes are held until it ends.
    Holding,
    /// Inside a field being removed: bytes are dropped.
    Dropping,
    /// After the header section: everything passes.
    Body,
}

/// What a complete or partial `Authentication-Results:` field says about its authserv-id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    Ours,
    Foreign,
    /// The field ended (or was cut) before its authserv-id did.
    Unknown,
}

/// Removes forged `Authentication-Results:` fields from one message's header section.
#[derive(Debug)]
pub struct ForgedResultsFilter {
    authserv_id: Box<[u8]>,
    state: State,
    /// What the field continued by a folded line does with its bytes.
    current: State,
    held: Vec<u8>,
    removed: usize,
}

impl ForgedResultsFilter {
    /// A filter for one message that removes the fields claiming `authserv_id`.
    pub fn new(authserv_id: &str) -> ForgedResultsFilter {
        ForgedResultsFilter {
            authserv_id: authserv_id.as_bytes().into(),
            state: State::LineStart,
            current: State::Passing,
            held: Vec::new(),
            removed: 0,
        }
    }

    /// How many fields were removed so far.
    pub fn removed(&self) -> usize {
        self.removed
    }

    /// Appends to `out` what of `input` may pass now; the rest is held for the next call.
    pub fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for (index, &byte) in input.iter().enumerate() {
            if self.state == State::Body {
                out.extend_from_slice(&input[index..]);
                return;
            }
            self.step(byte, out);
        }
    }

    /// The content ended: a field still held is decided as it stands.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.state {
            State::Name => out.append(&mut self.held),
            State::Holding | State::LineStart if self.current == State::Holding => {
                self.release_held(out);
            }
            _ => {}
        }
        self.state = State::Body;
    }

    fn step(&mut self, byte: u8, out: &mut Vec<u8>) {
        match self.state {
            State::LineStart => self.line_start(byte, out),
            State::Name => {
                self.held.push(byte);
                if byte == b':' {
                    self.name_complete(out);
                } else if byte == b'\n' || self.held.len() > FIELD_NAME_MAX_BYTES {
                    // Not a field at all (no colon on its first line): nothing to judge.
                    out.append(&mut self.held);
                    self.enter(if byte == b'\n' {
                        State::LineStart
                    } else {
                        State::Passing
                    });
                    self.current = State::Passing;
                }
            }
            State::Passing => {
                out.push(byte);
                if byte == b'\n' {
                    self.state = State::LineStart;
                }
            }
            State::Holding => {
                self.held.push(byte);
                if byte == b'\n' {
                    self.state = State::LineStart;
                } else if self.held.len() > HELD_FIELD_MAX_BYTES {
                    self.decide_oversized(out);
                }
            }
            State::Dropping => {
                if byte == b'\n' {
                    self.state = State::LineStart;
                }
            }
            State::Body => out.push(byte),
        }
    }

    /// A line begins: a space or tab continues the current field (RFC 5322 §2.2.3); anything
    /// else ends it, and an empty line ends the header section.
    fn line_start(&mut self, byte: u8, out: &mut Vec<u8>) {
        if byte == b' ' || byte == b'\t' {
            self.state = self.current;
            self.step(byte, out);
            return;
        }
        if self.current == State::Holding {
            self.release_held(out);
        }
        if byte == b'\r' || byte == b'\n' {
            out.push(byte);
            self.state = State::Body;
            return;
        }
        self.held.clear();
        self.held.push(byte);
        self.state = State::Name;
    }

    /// The colon of a field's first line arrived: only `Authentication-Results` is held.
    fn name_complete(&mut self, out: &mut Vec<u8>) {
        let name = self.held[..self.held.len() - 1].trim_ascii_end();
        if name.eq_ignore_ascii_case(FIELD_NAME) {
            self.enter(State::Holding);
        } else {
            out.append(&mut self.held);
            self.enter(State::Passing);
        }
    }

    fn enter(&mut self, state: State) {
        self.state = state;
        self.current = state;
    }

    /// A held field ended: it goes out unless it claims our authserv-id. A field whose
    /// authserv-id cannot be read makes no claim and is kept.
    fn release_held(&mut self, out: &mut Vec<u8>) {
        if claim(&self.held, &self.authserv_id) == Claim::Ours {
            self.removed += 1;
            self.held.clear();
        } else {
            out.append(&mut self.held);
        }
        self.current = State::Passing;
    }

    fn decide_oversized(&mut self, out: &mut Vec<u8>) {
        if claim(&self.held, &self.authserv_id) == Claim::Foreign {
            out.append(&mut self.held);
            self.enter(State::Passing);
        } else {
            self.removed += 1;
            self.held = Vec::new();
            self.enter(State::Dropping);
        }
    }
}

/// Reads the authserv-id of a held field (its bytes from the name on) and compares it with
/// ours. RFC 8601 §2.2: `authres-header-field = "Authentication-Results:" authserv-id ...`,
/// where `authserv-id = value` (a token or a quoted string), preceded by CFWS. Comments and
/// folding are skipped; the comparison ignores ASCII case.
fn claim(field: &[u8], ours: &[u8]) -> Claim {
    let Some(colon) = field.iter().position(|&byte| byte == b':') else {
        return Claim::Unknown;
    };
    let mut rest = &field[colon + 1..];
    let Some(after_cfws) = skip_cfws(rest) else {
        return Claim::Unknown;
    };
    rest = after_cfws;

    let (id, complete) = match rest.first() {
        None => return Claim::Unknown,
        Some(b'"') => quoted_string(&rest[1..]),
        Some(_) => {
            let end = rest.iter().position(|&byte| {
                byte.is_ascii_whitespace() || byte == b';' || byte == b'(' || byte == b'"'
            });
            match end {
                Some(end) => (rest[..end].to_vec(), true),
                None => (rest.to_vec(), false),
            }
        }
    };
    if complete {
        if id.eq_ignore_ascii_case(ours) {
            Claim::Ours
        } else {
            Claim::Foreign
        }
    } else if ours.len() >= id.len() && ours[..id.len()].eq_ignore_ascii_case(&id) {
        // Cut before the id ended: it may still turn out to be ours.
        Claim::Unknown
    } else {
        Claim::Foreign
    }
}

/// Skips folding white space and comments (RFC 5322 §3.2.2); `None` if the input ends inside
/// them.
fn skip_cfws(mut input: &[u8]) -> Option<&[u8]> {
    loop {
        match input.first()? {
            b' ' | b'\t' | b'\r' | b'\n' => input = &input[1..],
            b'(' => input = skip_comment(&input[1..])?,
            _ => return Some(input),
        }
    }
}

/// Skips the rest of a comment, nested comments and quoted pairs included.
fn skip_comment(mut input: &[u8]) -> Option<&[u8]> {
    let mut depth = 1usize;
    loop {
        let (&byte, rest) = input.split_first()?;
        input = rest;
        match byte {
            b'\\' => input = input.get(1..)?,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(input);
                }
            }
            _ => {}
        }
    }
}

/// The content of a quoted string after its opening quote, unescaped and without folding;
/// the flag says whether the closing quote was found.
fn quoted_string(input: &[u8]) -> (Vec<u8>, bool) {
    let mut content = Vec::new();
    let mut bytes = input.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'"' => return (content, true),
            b'\\' => match bytes.next() {
                Some(&escaped) => content.push(escaped),
                None => break,
            },
            b'\r' | b'\n' => {}
            _ => content.push(byte),
        }
    }
    (content, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filtered(input: &[u8]) -> Vec<u8> {
        let mut filter = ForgedResultsFilter::new("mx.test");
        let mut out = Vec::new();
        filter.filter(input, &mut out);
        filter.finish(&mut out);
        out
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("test text is UTF-8")
    }

    #[test]
    fn our_claims_go_and_foreign_ones_stay() {
        let message = b"Received: from a\r\n\
            Authentication-Results: mx.test; spf=pass smtp.mailfrom=a@b.example\r\n\
            Authentication-Results: other.example; dkim=pass\r\n\
            Subject: hi\r\n\
            \r\n\
            Authentication-Results: mx.test; in the body it stays\r\n";
        assert_eq!(
            text(filtered(message)),
            "Received: from a\r\n\
             Authentication-Results: other.example; dkim=pass\r\n\
             Subject: hi\r\n\
             \r\n\
             Authentication-Results: mx.test; in the body it stays\r\n"
        );
    }

    #[test]
    fn folding_comments_quotes_and_case_do_not_hide_a_claim() {
        let forged = [
            &b"authentication-results:MX.Test;spf=pass\r\n"[..],
            b"Authentication-Results :\r\n   (a (nested) comment \\) here)\r\n\
              \t\"mx.\\test\" 1;\r\n dkim=pass\r\n",
            b"AUTHENTICATION-RESULTS: mx.test\r\n",
            b"Authentication-Results: mx.test(comment); none\r\n",
        ];
        for field in forged {
            let mut message = field.to_vec();
            message.extend_from_slice(b"From: a@b.example\r\n\r\nbody\r\n");
            assert_eq!(
                text(filtered(&message)),
                "From: a@b.example\r\n\r\nbody\r\n",
                "{}",
                String::from_utf8_lossy(field)
            );
        }
    }

    #[test]
    fn look_alike_ids_and_fields_are_kept() {
        let kept = b"Authentication-Results: mx.test.evil; spf=pass\r\n\
            Authentication-Results: mx.tes; spf=pass\r\n\
            Authentication-Results-Original: mx.test; spf=pass\r\n\
            X-Authentication-Results: mx.test; spf=pass\r\n\
            Authentication-Results:\r\n\
            \r\n";
        assert_eq!(filtered(kept), kept.to_vec());
    }

    #[test]
    fn a_claim_as_the_last_header_line_is_removed_at_the_end() {
        assert_eq!(
            text(filtered(
                b"Subject: x\r\nAuthentication-Results: mx.test; none\r\n"
            )),
            "Subject: x\r\n"
        );
        let mut filter = ForgedResultsFilter::new("mx.test");
        let mut out = Vec::new();
        filter.filter(b"Authentication-Results: mx.test; none\r\n", &mut out);
        assert!(
            out.is_empty(),
            "held until the next line shows the field ended"
        );
        filter.finish(&mut out);
        assert!(out.is_empty());
        assert_eq!(filter.removed(), 1);
    }

    #[test]
    fn an_oversized_claim_is_dropped_and_an_oversized_foreign_field_kept() {
        let padding = " (x)".repeat(HELD_FIELD_MAX_BYTES / 4 + 10);
        let ours = format!("Authentication-Results:{padding} mx.test; none\r\nSubject: s\r\n\r\n");
        assert_eq!(text(filtered(ours.as_bytes())), "Subject: s\r\n\r\n");

        let long_value = "x".repeat(HELD_FIELD_MAX_BYTES + 10);
        let foreign =
            format!("Authentication-Results: other.example; {long_value}\r\nSubject: s\r\n\r\n");
        assert_eq!(text(filtered(foreign.as_bytes())), foreign);
    }

    #[test]
    fn a_header_without_a_colon_and_a_message_without_a_body_pass() {
        let odd = b"not a field\r\n continued\r\nAuthentication-Results";
        assert_eq!(filtered(odd), odd.to_vec());
    }

    /// Header lines that exercise every branch: claims of ours in several spellings, foreign
    /// ones, folding, ordinary fields, and a body that looks like headers.
    fn line() -> impl Strategy<Value = &'static [u8]> {
        prop::sample::select(vec![
            &b"Authentication-Results: mx.test; spf=pass\r\n"[..],
            b"authentication-results: (c) \"MX.TEST\"; dkim=fail\r\n",
            b"Authentication-Results:\r\n mx.test;\r\n\tdmarc=pass\r\n",
            b"Authentication-Results: other.example; spf=pass\r\n",
            b"Authentication-Results: mx.test.other; spf=pass\r\n",
            b" folded continuation\r\n",
            b"Subject: hello\r\n",
            b"From: a@b.example\r\n",
            b"no colon here\r\n",
            b"\r\n",
            b"Authentication-Results: mx.test; body or header\r\n",
        ])
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_output(
            lines in prop::collection::vec(line(), 0..12),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let input: Vec<u8> = lines.concat();
            let whole = filtered(&input);

            let mut points: Vec<usize> =
                cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
            points.sort_unstable();
            let mut filter = ForgedResultsFilter::new("mx.test");
            let mut pieces = Vec::new();
            let mut start = 0;
            for point in points {
                filter.filter(&input[start..point], &mut pieces);
                start = point;
            }
            filter.filter(&input[start..], &mut pieces);
            filter.finish(&mut pieces);
            prop_assert_eq!(pieces, whole);
        }

        #[test]
        fn without_our_id_nothing_changes(input in prop::collection::vec(any::<u8>(), 0..400)) {
            let mut filter = ForgedResultsFilter::new("id-that-is-not-in-the-input.invalid");
            let mut out = Vec::new();
            filter.filter(&input, &mut out);
            filter.finish(&mut out);
            prop_assert_eq!(out, input);
        }
    }
}
