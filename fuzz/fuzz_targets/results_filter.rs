//! Fuzzes the filter that removes forged `Authentication-Results:` fields: arbitrary content,
//! cut at an arbitrary point, must never panic, must give the same output as the uncut
//! content, and can only ever remove bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::verification::ForgedResultsFilter;

fn filtered(pieces: &[&[u8]]) -> Vec<u8> {
    let mut filter = ForgedResultsFilter::new("mx.example.net");
    let mut out = Vec::new();
    for piece in pieces {
        filter.filter(piece, &mut out);
    }
    filter.finish(&mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, content)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(content.len());
    let whole = filtered(&[content]);
    let (head, tail) = content.split_at(cut);
    assert_eq!(filtered(&[head, tail]), whole);
    assert!(whole.len() <= content.len());
});
