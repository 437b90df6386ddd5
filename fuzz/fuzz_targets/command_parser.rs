//! Fuzzes the SMTP command-line parser: any octets must parse or be refused without a panic,
//! and every refusal must render as exactly one well-formed reply line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::smtp::parse_command;

fuzz_target!(|line: &[u8]| {
    let Err(error) = parse_command(line) else {
        return;
    };
    let reply = error.reply();
    assert!(reply.is_permanent_failure());
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    assert!(wire.ends_with(b"\r\n"));
    assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
    assert!(!wire[..wire.len() - 2].iter().any(|b| b.is_ascii_control()));
});
