//! Fuzzes the DATA decoder differentially: the body, end position and verdict must not depend
//! on where the input is split, and the body never exceeds the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::smtp::DataDecoder;

/// Decodes `input` in pieces cut every `piece` octets; returns (consumed, body, verdict).
fn decode(input: &[u8], piece: usize, size_max: u64, lenient: bool) -> (usize, Vec<u8>, String) {
    let mut decoder = DataDecoder::new(16, size_max, lenient);
    let mut body = Vec::new();
    let mut offset = 0;
    while offset < input.len() {
        let end = (offset + piece).min(input.len());
        let (used, verdict) = decoder.decode(&input[offset..end], &mut body);
        offset += used;
        if let Some(verdict) = verdict {
            return (offset, body, format!("{verdict:?}"));
        }
    }
    (offset, body, "unterminated".to_owned())
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let piece = usize::from(control & 0x0f) + 1;
    let size_max = u64::from(control >> 5) * 8;
    let lenient = control & 0x10 != 0;
    let whole = decode(input, input.len().max(1), size_max, lenient);
    let split = decode(input, piece, size_max, lenient);
    assert_eq!(whole, split);
    assert!(whole.1.len() as u64 <= size_max);
});
