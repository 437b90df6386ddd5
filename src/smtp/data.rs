//! The DATA body decoder (RFC 5321 §4.1.1.4 and §4.5.2). It owns end-of-data detection,
//! dot-unstuffing and the checks made while the body streams: bare CR or LF, NUL, line length
//! (§4.5.3.1.6) and message size (RFC 1870). It guarantees that only `<CRLF>.<CRLF>` ends the
//! data, whatever the line endings inside, that its state is a few bytes no matter how the input
//! is split, and that it never appends more than the size limit to the body. It never decides
//! the reply; it returns a verdict that the session turns into one.

/// Why a complete body is refused. The order of the variants is the order of precedence when a
/// body has several faults: smuggling first, since it is the one an attacker aims for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyFault {
    #[error("bare CR or LF in message text; lines end with CRLF (RFC 5321 section 2.3.8)")]
    BareLineEnding,
    #[error("NUL octet in message text (RFC 5321 section 4.5.2)")]
    Nul,
    #[error("text line longer than {max_bytes} octets (RFC 5321 section 4.5.3.1.6)")]
    LineTooLong { max_bytes: usize },
    #[error("message size exceeds fixed maximum message size")]
    TooBig,
}

/// Where the decoder stands relative to the last line boundary. Only a CRLF starts a line:
/// bare CR and bare LF never do, so they can neither end the data nor trigger unstuffing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// After CRLF, or at the start of the data (the CRLF ending the DATA command counts).
    LineStart,
    /// A `.` at line start, not yet emitted: it is either half of the terminator or a
    /// transparency dot to delete.
    Dot,
    /// `.` CR at line start; LF next would end the data.
    DotCr,
    /// Inside a line.
    Text,
    /// A CR inside a line, already emitted; LF next ends the line.
    Cr,
}

/// Streaming DATA decoder; one per message.
#[derive(Clone, Debug)]
pub struct DataDecoder {
    state: State,
    /// Octets of the current line so far, LF included, leading dot excluded (§4.5.3.1.6). Any
    /// LF ends a line for this count, so lenient mode does not turn LF-only bodies into one
    /// giant line.
    line_bytes: usize,
    /// Unstuffed octets seen so far, including those not appended because of the size limit.
    body_bytes: u64,
    bare_line_ending: bool,
    nul: bool,
    line_too_long: bool,
    text_line_max_bytes: usize,
    message_size_max_bytes: u64,
    accept_bare_line_endings: bool,
}

impl DataDecoder {
    pub fn new(
        text_line_max_bytes: usize,
        message_size_max_bytes: u64,
        accept_bare_line_endings: bool,
    ) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            line_bytes: 0,
            body_bytes: 0,
            bare_line_ending: false,
            nul: false,
            line_too_long: false,
            text_line_max_bytes,
            message_size_max_bytes,
            accept_bare_line_endings,
        }
    }

    /// Decodes a prefix of `input`, appending unstuffed octets to `body`. Returns how many
    /// octets were consumed and, once `<CRLF>.<CRLF>` was consumed, the verdict on the body.
    /// Without a verdict the whole input was consumed.
    pub fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
    ) -> (usize, Option<Result<(), BodyFault>>) {
        let mut index = 0;
        while index < input.len() {
            let octet = input[index];
            match self.state {
                State::Text => {
                    // The common case: copy the run up to the next octet that matters.
                    let rest = &input[index..];
                    let run = memchr::memchr3(b'\r', b'\n', 0, rest).unwrap_or(rest.len());
                    self.emit(&rest[..run], body);
                    index += run;
                    if let Some(&special) = input.get(index) {
                        index += 1;
                        self.text_octet(special, body);
                    }
                }
                State::LineStart => {
                    index += 1;
                    if octet == b'.' {
                        self.state = State::Dot;
                    } else {
                        self.text_octet(octet, body);
                    }
                }
                State::Dot => {
                    index += 1;
                    if octet == b'\r' {
                        self.state = State::DotCr;
                    } else {
                        // §4.5.2: a line that starts with a dot and has more on it loses the
                        // dot. That covers `..` as well as a dot before anything else.
                        self.text_octet(octet, body);
                    }
                }
                State::DotCr => {
                    if octet == b'\n' {
                        return (index + 1, Some(self.verdict()));
                    }
                    // `.` CR then not LF: the dot goes, the CR is bare; the current octet is
                    // looked at again as the one following a CR.
                    self.emit(b"\r", body);
                    self.state = State::Cr;
                }
                State::Cr => {
                    index += 1;
                    if octet == b'\n' {
                        self.emit(b"\n", body);
                        self.line_bytes = 0;
                        self.state = State::LineStart;
                    } else {
                        self.bare_line_ending = true;
                        self.text_octet(octet, body);
                    }
                }
            }
        }
        (input.len(), None)
    }

    /// Body octets seen so far (after unstuffing), counted past the size limit too.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// One octet in `Text` context, i.e. not preceded by a CR.
    fn text_octet(&mut self, octet: u8, body: &mut Vec<u8>) {
        self.emit(&[octet], body);
        self.state = match octet {
            b'\r' => State::Cr,
            b'\n' => {
                self.bare_line_ending = true;
                self.line_bytes = 0;
                State::Text
            }
            0 => {
                self.nul = true;
                State::Text
            }
            _ => State::Text,
        };
    }

    /// Counts `octets` and appends whatever still fits under the size limit.
    fn emit(&mut self, octets: &[u8], body: &mut Vec<u8>) {
        self.line_bytes = self.line_bytes.saturating_add(octets.len());
        if self.line_bytes > self.text_line_max_bytes {
            self.line_too_long = true;
        }
        let room = self.message_size_max_bytes.saturating_sub(self.body_bytes);
        let fits = usize::try_from(room)
            .unwrap_or(usize::MAX)
            .min(octets.len());
        body.extend_from_slice(&octets[..fits]);
        self.body_bytes = self.body_bytes.saturating_add(octets.len() as u64);
    }

    fn verdict(&self) -> Result<(), BodyFault> {
        if self.bare_line_ending && !self.accept_bare_line_endings {
            Err(BodyFault::BareLineEnding)
        } else if self.nul {
            Err(BodyFault::Nul)
        } else if self.line_too_long {
            Err(BodyFault::LineTooLong {
                max_bytes: self.text_line_max_bytes,
            })
        } else if self.body_bytes > self.message_size_max_bytes {
            Err(BodyFault::TooBig)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LINE: usize = 1000;
    const SIZE: u64 = 1 << 20;

    /// Decodes `input` in one call with default limits.
    fn decode(input: &[u8]) -> (usize, Vec<u8>, Option<Result<(), BodyFault>>) {
        let mut body = Vec::new();
        let (used, verdict) = DataDecoder::new(LINE, SIZE, false).decode(input, &mut body);
        (used, body, verdict)
    }

    /// The reference: whole buffer, split into CRLF lines, no cleverness.
    fn reference(
        input: &[u8],
        line_max: usize,
        size_max: u64,
        accept_bare: bool,
    ) -> Option<(usize, Vec<u8>, Result<(), BodyFault>)> {
        let mut body = Vec::new();
        let mut start = 0;
        let end = loop {
            let crlf = input[start..].windows(2).position(|w| w == b"\r\n")?;
            let line = &input[start..start + crlf];
            if line == b"." {
                break start + crlf + 2;
            }
            body.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            body.extend_from_slice(b"\r\n");
            start += crlf + 2;
        };

        let bare = body.iter().enumerate().any(|(i, &b)| {
            (b == b'\r' && body.get(i + 1) != Some(&b'\n'))
                || (b == b'\n' && (i == 0 || body[i - 1] != b'\r'))
        });
        let long = body
            .split_inclusive(|&b| b == b'\n')
            .any(|l| l.len() > line_max);
        let verdict = if bare && !accept_bare {
            Err(BodyFault::BareLineEnding)
        } else if body.contains(&0) {
            Err(BodyFault::Nul)
        } else if long {
            Err(BodyFault::LineTooLong {
                max_bytes: line_max,
            })
        } else if body.len() as u64 > size_max {
            Err(BodyFault::TooBig)
        } else {
            Ok(())
        };
        let kept = body.len().min(size_max as usize);
        body.truncate(kept);
        Some((end, body, verdict))
    }

    /// Feeds `input` in pieces cut at `cuts`, as the session would.
    fn streamed(
        input: &[u8],
        cuts: &[usize],
        line_max: usize,
        size_max: u64,
        accept_bare: bool,
    ) -> (usize, Vec<u8>, Option<Result<(), BodyFault>>) {
        let mut decoder = DataDecoder::new(line_max, size_max, accept_bare);
        let mut body = Vec::new();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.push(input.len());
        points.sort_unstable();
        let mut offset = 0;
        for point in points {
            while offset < point {
                let (used, verdict) = decoder.decode(&input[offset..point], &mut body);
                offset += used;
                if verdict.is_some() {
                    return (offset, body, verdict);
                }
            }
        }
        (offset, body, None)
    }

    #[test]
    fn simple_body() {
        let (used, body, verdict) = decode(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert_eq!(used, 24);
        assert_eq!(body, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(verdict, Some(Ok(())));
    }

    #[test]
    fn empty_body_ends_at_once() {
        assert_eq!(decode(b".\r\n"), (3, vec![], Some(Ok(()))));
    }

    #[test]
    fn unstuffing() {
        let (_, body, verdict) = decode(b"..\r\n...x\r\n.y\r\n.\r\n");
        assert_eq!(body, b".\r\n..x\r\ny\r\n");
        assert_eq!(verdict, Some(Ok(())));
    }

    #[test]
    fn smuggling_variants_never_end_the_data() {
        for variant in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\n.\r\n",
            b"\r\n.\r",
            b"\r\n.\n",
            b"\r.\r\n",
        ] {
            let mut input = b"a".to_vec();
            input.extend_from_slice(variant);
            input.extend_from_slice(b"MAIL FROM:<x@example.org>\r\n");
            let (used, _, verdict) = decode(&input);
            assert_eq!((used, verdict), (input.len(), None), "{variant:?}");

            input.extend_from_slice(b".\r\n");
            let (used, _, verdict) = decode(&input);
            assert_eq!(used, input.len());
            assert_eq!(verdict, Some(Err(BodyFault::BareLineEnding)), "{variant:?}");
        }
    }

    #[test]
    fn lenient_mode_passes_bare_endings_through() {
        let mut body = Vec::new();
        let input = b"a\nb\rc\n.\nd\r\n.\r\n";
        let (used, verdict) = DataDecoder::new(LINE, SIZE, true).decode(input, &mut body);
        assert_eq!((used, verdict), (input.len(), Some(Ok(()))));
        assert_eq!(body, b"a\nb\rc\n.\nd\r\n");
    }

    #[test]
    fn faults() {
        assert_eq!(decode(b"a\0b\r\n.\r\n").2, Some(Err(BodyFault::Nul)));
        let long = [b"x".repeat(LINE - 1), b"\r\n.\r\n".to_vec()].concat();
        let too_long = BodyFault::LineTooLong { max_bytes: LINE };
        assert_eq!(decode(&long).2, Some(Err(too_long)));
        let fits = [b"x".repeat(LINE - 2), b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(decode(&fits).2, Some(Ok(())));
        let dotted = [b".".repeat(LINE - 1), b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(
            decode(&dotted).2,
            Some(Ok(())),
            "the stuffed dot is not counted"
        );
    }

    #[test]
    fn oversize_stops_appending_but_finds_the_end() {
        let mut body = Vec::new();
        let input = b"0123456789\r\nabc\r\n.\r\n";
        let (used, verdict) = DataDecoder::new(LINE, 5, false).decode(input, &mut body);
        assert_eq!(used, input.len());
        assert_eq!(verdict, Some(Err(BodyFault::TooBig)));
        assert_eq!(body, b"01234");
    }

    #[test]
    fn terminator_split_everywhere() {
        let input = b"a\r\n.\r\n";
        for cut in 0..=input.len() {
            let (used, body, verdict) = streamed(input, &[cut], LINE, SIZE, false);
            assert_eq!(
                (used, body.as_slice(), verdict),
                (6, &b"a\r\n"[..], Some(Ok(())))
            );
        }
    }

    fn octets() -> impl Strategy<Value = Vec<u8>> {
        let interesting = prop_oneof![
            4 => Just(b'\r'),
            4 => Just(b'\n'),
            4 => Just(b'.'),
            1 => Just(0u8),
            4 => Just(b'a'),
            1 => any::<u8>(),
        ];
        proptest::collection::vec(interesting, 0..64)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn streaming_matches_reference(
            mut input in octets(),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
            line_max in 1usize..12,
            size_max in 0u64..40,
            accept_bare in any::<bool>(),
        ) {
            let unterminated = input.clone();
            input.extend_from_slice(b"\r\n.\r\n");
            let expected = reference(&input, line_max, size_max, accept_bare)
                .expect("a terminator was appended");
            let (used, body, verdict) = streamed(&input, &cuts, line_max, size_max, accept_bare);
            let want = (expected.0, expected.1.clone(), Some(expected.2));
            prop_assert_eq!((used, body, verdict), want);

            // Without the appended terminator: same end if the input had one of its own,
            // otherwise all consumed and a prefix of the body.
            let (used, body, verdict) =
                streamed(&unterminated, &cuts, line_max, size_max, accept_bare);
            match reference(&unterminated, line_max, size_max, accept_bare) {
                Some(own) => prop_assert_eq!((used, body, verdict), (own.0, own.1, Some(own.2))),
                None => {
                    prop_assert_eq!((used, verdict), (unterminated.len(), None));
                    prop_assert!(expected.1.starts_with(&body));
                }
            }
        }
    }
}
