//! Fuzzes the spool's read side: arbitrary bytes as a whole segment through `scan_segment`, and
//! as a payload through every decoder and `QueueIndex::apply`. Recovery reads whatever is on
//! disk, so none of these may panic, loop or allocate beyond the input's size. Decoding is also
//! checked to be canonical: a payload that decodes must encode back to the same bytes, or two
//! writers could disagree about a record that both accept.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::spool::{
    decode_record, scan_segment, AdminRecord, BodyRecord, CommitRecord, OutcomeRecord, QueueIndex,
    RecordLocation, RecordType, ScanEnd, Scanned,
};

fuzz_target!(|data: &[u8]| {
    scan_as_segment(data);
    decode_as_payload(data);
});

fn scan_as_segment(data: &[u8]) {
    let scan = scan_segment(data);
    assert!(scan.valid_bytes as usize <= data.len());
    if let ScanEnd::Bad { offset, .. } = scan.end {
        assert_eq!(offset, scan.valid_bytes);
    }

    let mut index = QueueIndex::new();
    let mut previous_end = 0u64;
    for record in &scan.records {
        let Scanned::Record {
            record_type,
            payload,
            offset,
            length,
            ..
        } = record;
        assert!(*offset >= previous_end);
        previous_end = offset + *length as u64;
        let start = *offset as usize;
        assert_eq!(decode_record(&data[start..], *offset).as_ref(), Ok(record));

        let location = RecordLocation {
            generation: 0,
            segment: 0,
            offset: *offset,
        };
        let _ = index.apply(location, *record_type, payload);
    }
    assert!(previous_end <= scan.valid_bytes);
    check_index(&index);
}

fn decode_as_payload(data: &[u8]) {
    let mut out = Vec::new();
    if let Ok(commit) = CommitRecord::decode(data) {
        commit.encode(&mut out);
        assert_eq!(out, data);
    }
    out.clear();
    if let Ok(body) = BodyRecord::decode(data) {
        body.encode(&mut out);
        assert_eq!(out, data);
    }
    out.clear();
    if let Ok(outcome) = OutcomeRecord::decode(data) {
        outcome.encode(&mut out);
        assert_eq!(out, data);
    }
    out.clear();
    if let Ok(admin) = AdminRecord::decode(data) {
        admin.encode(&mut out);
        assert_eq!(out, data);
    }

    let mut index = QueueIndex::new();
    for (offset, record_type) in RecordType::ALL.into_iter().enumerate() {
        let location = RecordLocation {
            generation: 0,
            segment: 0,
            offset: offset as u64,
        };
        let _ = index.apply(location, record_type, data);
    }
    check_index(&index);
}

fn check_index(index: &QueueIndex) {
    let live = index.live_segments();
    assert_eq!(index.is_empty(), live.is_empty());
    for message in index.iter() {
        assert!(!message.pending.is_empty());
        assert!(live.contains(&message.location.segment_key()));
    }
}
