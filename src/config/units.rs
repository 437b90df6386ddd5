//! Human units in configuration values: durations such as `"30s"` and sizes such as `"50MiB"`.
//!
//! The parsers are strict on purpose. A bare number of seconds is refused, because `30` could
//! mean seconds, milliseconds or minutes depending on which other program the operator last
//! configured; sizes accept a bare number only because bytes are the one obvious unit. Every
//! result is checked against overflow, so no input can wrap around into a small limit. Pure
//! functions, no I/O.

use std::time::Duration;

/// Why a duration or size string was refused. The text is shown to operators after the key path,
/// so every variant says what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty value; expected {expected}")]
    Empty { expected: &'static str },
    #[error("{text:?} has no unit; write it with one, e.g. \"{text}s\" for seconds")]
    DurationWithoutUnit { text: String },
    #[error("unknown unit {unit:?} in {text:?}; expected {expected}")]
    UnknownUnit {
        text: String,
        unit: String,
        expected: &'static str,
    },
    #[error("{text:?} is ambiguous; write {binary:?} (powers of 1024) or {decimal:?} (of 1000)")]
    AmbiguousSize {
        text: String,
        binary: String,
        decimal: String,
    },
    #[error("{text:?} has a fraction; use a whole number of a smaller unit instead")]
    Fraction { text: String },
    #[error("{text:?} is not understood; expected {expected}")]
    Malformed {
        text: String,
        expected: &'static str,
    },
    #[error("{text:?} is too large")]
    TooLarge { text: String },
}

const DURATION_EXPECTED: &str =
    "a whole number with a unit (ms, s, m, h, d), e.g. \"250ms\", \"30s\", \"5m\" or \"1h30m\"";
const SIZE_EXPECTED: &str =
    "a whole number of bytes, optionally with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), \
     e.g. \"50MiB\"";

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"2d"`, or a sum of them such as `"1h30m"`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(UnitError::Empty {
            expected: DURATION_EXPECTED,
        });
    }
    if trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(UnitError::DurationWithoutUnit {
            text: trimmed.to_owned(),
        });
    }

    let mut total_ms: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let (number, unit, after) = split_number_and_unit(text, rest, DURATION_EXPECTED)?;
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(UnitError::Malformed {
                    text: text.to_owned(),
                    expected: DURATION_EXPECTED,
                })
            }
            other => {
                return Err(UnitError::UnknownUnit {
                    text: text.to_owned(),
                    unit: other.to_owned(),
                    expected: DURATION_EXPECTED,
                })
            }
        };
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|part_ms| total_ms.checked_add(part_ms))
            .ok_or_else(|| UnitError::TooLarge {
                text: text.to_owned(),
            })?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses `"1000"` (bytes), `"512B"`, `"512KiB"`, `"50MiB"`, `"1GiB"`, or decimal `"10MB"`.
///
/// Units are matched without regard to case, except that the `i` is what separates the binary
/// units (KiB = 1024) from the decimal ones (KB = 1000). A lone `K`, `M`, `G` or `T` is refused
/// because operators use it for both.
pub fn parse_size_bytes(text: &str) -> Result<u64, UnitError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(UnitError::Empty {
            expected: SIZE_EXPECTED,
        });
    }

    let (number, unit, after) = split_number_and_unit(text, trimmed, SIZE_EXPECTED)?;
    if !after.is_empty() {
        return Err(UnitError::Malformed {
            text: text.to_owned(),
            expected: SIZE_EXPECTED,
        });
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "k" | "m" | "g" | "t" => {
            let upper = unit.to_ascii_uppercase();
            return Err(UnitError::AmbiguousSize {
                text: text.to_owned(),
                binary: format!("{number}{}", binary_unit_for(&upper)),
                decimal: format!("{number}{}", decimal_unit_for(&upper)),
            });
        }
        _ => {
            return Err(UnitError::UnknownUnit {
                text: text.to_owned(),
                unit: unit.to_owned(),
                expected: SIZE_EXPECTED,
            })
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| UnitError::TooLarge {
            text: text.to_owned(),
        })
}

/// Renders a duration in the largest unit that divides it exactly, so `parse_duration` reads it
/// back unchanged (`90s` stays `90s`, not `1.5m`). Sub-millisecond parts cannot come from the
/// parser, so they fall back to the debug form.
pub fn format_duration(duration: Duration) -> String {
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{duration:?}");
    }
    let ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    for (unit, unit_ms) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(unit_ms) {
            return format!("{}{unit}", ms / unit_ms);
        }
    }
    format!("{ms}ms")
}

/// Renders a byte count in the largest binary, then decimal, unit that divides it exactly.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_owned();
    }
    let units: [(&str, u64); 8] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("TB", 1_000_000_000_000),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
    ];
    for (unit, size) in units {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Splits `"30s..."` into (30, "s", "...") after skipping blanks between the parts.
fn split_number_and_unit<'a>(
    whole: &str,
    text: &'a str,
    expected: &'static str,
) -> Result<(u64, &'a str, &'a str), UnitError> {
    let text = text.trim_start();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, after_digits) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(UnitError::Malformed {
            text: whole.to_owned(),
            expected,
        });
    }
    if after_digits.starts_with(['.', ',']) {
        return Err(UnitError::Fraction {
            text: whole.to_owned(),
        });
    }
    let number: u64 = digits.parse().map_err(|_| UnitError::TooLarge {
        text: whole.to_owned(),
    })?;

    let after_digits = after_digits.trim_start();
    let unit_end = after_digits
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(after_digits.len());
    let (unit, rest) = after_digits.split_at(unit_end);
    Ok((number, unit, rest.trim_start()))
}

fn binary_unit_for(letter: &str) -> &'static str {
    match letter {
        "K" => "KiB",
        "M" => "MiB",
        "G" => "GiB",
        _ => "TiB",
    }
}

fn decimal_unit_for(letter: &str) -> &'static str {
    match letter {
        "K" => "KB",
        "M" => "MB",
        "G" => "GB",
        _ => "TB",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_may_be_summed_and_spaced() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration(" 1m 30s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10 s"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn bare_duration_asks_for_a_unit() {
        let error = parse_duration("30").unwrap_err();

        assert_eq!(error, UnitError::DurationWithoutUnit { text: "30".into() });
        assert!(error.to_string().contains("\"30s\""), "{error}");
    }

    #[test]
    fn bad_durations_are_refused() {
        assert!(matches!(parse_duration(""), Err(UnitError::Empty { .. })));
        assert!(matches!(
            parse_duration("5 minutes"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1.5h"),
            Err(UnitError::Fraction { .. })
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(UnitError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration("-5s"),
            Err(UnitError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration("5s10"),
            Err(UnitError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(UnitError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_duration("18446744073709551615d"),
            Err(UnitError::TooLarge { .. })
        ));
    }

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_size_bytes("1000"), Ok(1_000));
        assert_eq!(parse_size_bytes("512B"), Ok(512));
        assert_eq!(parse_size_bytes("512KiB"), Ok(524_288));
        assert_eq!(parse_size_bytes("50MiB"), Ok(52_428_800));
        assert_eq!(parse_size_bytes("1GiB"), Ok(1_073_741_824));
        assert_eq!(parse_size_bytes("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size_bytes("10KB"), Ok(10_000));
        assert_eq!(parse_size_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_size_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size_bytes("1TB"), Ok(1_000_000_000_000));
        assert_eq!(parse_size_bytes("50mib"), Ok(52_428_800));
        assert_eq!(parse_size_bytes("50 MiB"), Ok(52_428_800));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(matches!(
            parse_size_bytes(" "),
            Err(UnitError::Empty { .. })
        ));
        assert!(matches!(
            parse_size_bytes("50Mb/s"),
            Err(UnitError::Malformed { .. })
        ));
        assert!(matches!(
            parse_size_bytes("50PiB"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size_bytes("1.5GiB"),
            Err(UnitError::Fraction { .. })
        ));
        assert!(matches!(
            parse_size_bytes("MiB"),
            Err(UnitError::Malformed { .. })
        ));
        assert!(matches!(
            parse_size_bytes("99999999TiB"),
            Err(UnitError::TooLarge { .. })
        ));
    }

    #[test]
    fn lone_letter_sizes_are_ambiguous() {
        let error = parse_size_bytes("50M").unwrap_err();

        assert_eq!(
            error.to_string(),
            "\"50M\" is ambiguous; write \"50MiB\" (powers of 1024) or \"50MB\" (of 1000)"
        );
    }

    #[test]
    fn formatting_picks_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(172_800)), "2d");
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(512), "512B");
        assert_eq!(format_size(52_428_800), "50MiB");
        assert_eq!(format_size(10_000_000), "10MB");
    }

    #[test]
    fn formatting_reads_back_unchanged() {
        for ms in [
            0_u64, 1, 999, 1_000, 59_000, 60_000, 5_400_000, 86_400_000, 90_061_001,
        ] {
            let duration = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        for bytes in [
            0_u64,
            1,
            1_000,
            1_024,
            1_536,
            10_000_000,
            52_428_800,
            u64::MAX,
        ] {
            assert_eq!(parse_size_bytes(&format_size(bytes)), Ok(bytes));
        }
    }
}
