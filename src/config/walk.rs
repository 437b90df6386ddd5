//! Walking a parsed TOML table by hand, with every problem going into the error accumulator.
//!
//! A [`Fields`] view knows the path of its table (`listener[1]`) and the keys it accepts, so it
//! can name every value it hands out and report every key nobody asked for. The converters here
//! check one value each and return `None` after recording why, which lets the section builders
//! carry on and find the next problem. No I/O.

use std::path::PathBuf;
use std::time::Duration;

use toml::{Table, Value};

use super::error::Errors;
use super::units;

/// One TOML table being read, with the keys it may contain.
pub(crate) struct Fields<'t> {
    path: String,
    table: &'t Table,
    known: &'static [&'static str],
}

impl<'t> Fields<'t> {
    /// Reports every key of `table` that is not in `known`, then gives the view out.
    pub(crate) fn new(
        errors: &mut Errors,
        path: impl Into<String>,
        table: &'t Table,
        known: &'static [&'static str],
    ) -> Fields<'t> {
        let fields = Fields {
            path: path.into(),
            table,
            known,
        };
        for name in table.keys() {
            if !known.contains(&name.as_str()) {
                errors.push(fields.key(name), unknown_key_reason(name, known));
            }
        }
        fields
    }

    /// The full path of a key in this table, e.g. `smtp.data_timeout`.
    pub(crate) fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'t Value> {
        debug_assert!(
            self.known.contains(&name),
            "{name} missing from the known keys"
        );
        self.table.get(name)
    }

    /// The converted value of an optional key; the default when absent or invalid (the error is
    /// recorded, so the default is never silently used for a value the operator wrote).
    pub(crate) fn optional<T>(
        &self,
        errors: &mut Errors,
        name: &str,
        default: T,
        convert: impl FnOnce(&mut Errors, &str, &Value) -> Option<T>,
    ) -> T {
        match self.get(name) {
            None => default,
            Some(value) => convert(errors, &self.key(name), value).unwrap_or(default),
        }
    }

    /// The converted value of a required key; `None` after recording why it is unusable.
    pub(crate) fn required<T>(
        &self,
        errors: &mut Errors,
        name: &str,
        expected: &str,
        convert: impl FnOnce(&mut Errors, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        match self.get(name) {
            None => {
                errors.push(self.key(name), format!("missing; expected {expected}"));
                None
            }
            Some(value) => convert(errors, &self.key(name), value),
        }
    }
}

/// The TOML type of a value, with the value itself when it is short, for "found ..." clauses.
pub(crate) fn found(value: &Value) -> String {
    match value {
        Value::String(text) => format!("string {text:?}"),
        Value::Integer(number) => format!("integer {number}"),
        Value::Float(number) => format!("float {number}"),
        Value::Boolean(flag) => format!("boolean {flag}"),
        Value::Datetime(datetime) => format!("datetime {datetime}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

pub(crate) fn string<'v>(errors: &mut Errors, key: &str, value: &'v Value) -> Option<&'v str> {
    match value {
        Value::String(text) => Some(text),
        other => {
            errors.push(key, format!("expected a string, found {}", found(other)));
            None
        }
    }
}

pub(crate) fn boolean(errors: &mut Errors, key: &str, value: &Value) -> Option<bool> {
    match value {
        Value::Boolean(flag) => Some(*flag),
        other => {
            errors.push(
                key,
                format!("expected true or false, found {}", found(other)),
            );
            None
        }
    }
}

pub(crate) fn table<'v>(errors: &mut Errors, key: &str, value: &'v Value) -> Option<&'v Table> {
    match value {
        Value::Table(table) => Some(table),
        other => {
            errors.push(
                key,
                format!("expected a table ([{key}]), found {}", found(other)),
            );
            None
        }
    }
}

/// An integer in `min..=max`, converted to the field's type.
pub(crate) fn integer_in<T: TryFrom<i64>>(
    min: i64,
    max: i64,
) -> impl FnOnce(&mut Errors, &str, &Value) -> Option<T> {
    move |errors, key, value| {
        let range = format!("an integer from {min} to {max}");
        match value {
            Value::Integer(number) if (min..=max).contains(number) => T::try_from(*number).ok(),
            Value::Integer(number) => {
                errors.push(key, format!("expected {range}, found {number}"));
                None
            }
            other => {
                errors.push(key, format!("expected {range}, found {}", found(other)));
                None
            }
        }
    }
}

/// A duration string in `min..=max`.
pub(crate) fn duration_in(
    min: Duration,
    max: Duration,
) -> impl FnOnce(&mut Errors, &str, &Value) -> Option<Duration> {
    move |errors, key, value| {
        let range = format!(
            "from {} to {}",
            units::format_duration(min),
            units::format_duration(max)
        );
        let parsed = match value {
            Value::String(text) => units::parse_duration(text),
            Value::Integer(number) => {
                errors.push(
                    key,
                    format!("{number} has no unit; write a string with one, e.g. \"{number}s\""),
                );
                return None;
            }
            other => {
                errors.push(
                    key,
                    format!(
                        "expected a duration such as \"30s\", found {}",
                        found(other)
                    ),
                );
                return None;
            }
        };
        match parsed {
            Ok(duration) if (min..=max).contains(&duration) => Some(duration),
            Ok(duration) => {
                let shown = units::format_duration(duration);
                errors.push(key, format!("{shown} is out of range; expected {range}"));
                None
            }
            Err(error) => {
                errors.push(key, error.to_string());
                None
            }
        }
    }
}

/// A size (integer bytes or a string with a unit) in `min..=max` bytes.
pub(crate) fn size_in<T: TryFrom<u64>>(
    min: u64,
    max: u64,
) -> impl FnOnce(&mut Errors, &str, &Value) -> Option<T> {
    move |errors, key, value| {
        let range = format!(
            "from {} to {}",
            units::format_size(min),
            units::format_size(max)
        );
        let parsed = match value {
            Value::String(text) => units::parse_size_bytes(text),
            Value::Integer(number) => {
                u64::try_from(*number).map_err(|_| units::UnitError::Malformed {
                    text: number.to_string(),
                    expected: "a size that is not negative",
                })
            }
            other => {
                errors.push(
                    key,
                    format!("expected a size such as \"50MiB\", found {}", found(other)),
                );
                return None;
            }
        };
        match parsed {
            Ok(bytes) if (min..=max).contains(&bytes) => T::try_from(bytes).ok(),
            Ok(bytes) => {
                errors.push(
                    key,
                    format!(
                        "{} is out of range; expected {range}",
                        units::format_size(bytes)
                    ),
                );
                None
            }
            Err(error) => {
                errors.push(key, error.to_string());
                None
            }
        }
    }
}

/// One of a fixed set of spellings.
pub(crate) fn one_of<T: Copy>(
    choices: &'static [(T, &'static str)],
) -> impl FnOnce(&mut Errors, &str, &Value) -> Option<T> {
    move |errors, key, value| {
        let names: Vec<String> = choices
            .iter()
            .map(|(_, name)| format!("{name:?}"))
            .collect();
        let expected = format!("expected one of {}", names.join(", "));
        let text = match value {
            Value::String(text) => text,
            other => {
                errors.push(key, format!("{expected}, found {}", found(other)));
                return None;
            }
        };
        match choices.iter().find(|(_, name)| name == text) {
            Some((choice, _)) => Some(*choice),
            None => {
                errors.push(key, format!("{expected}, found {text:?}"));
                None
            }
        }
    }
}

/// A non-empty path string, taken as written (relative paths are relative to the working
/// directory of the process, as with every other daemon flag).
pub(crate) fn path(errors: &mut Errors, key: &str, value: &Value) -> Option<PathBuf> {
    let text = string(errors, key, value)?;
    if text.is_empty() {
        errors.push(key, "empty; expected a file or directory path");
        return None;
    }
    Some(PathBuf::from(text))
}

/// A string checked by `check`, which returns the normalised value or the reason it failed.
pub(crate) fn checked<T>(
    check: impl FnOnce(&str) -> Result<T, String>,
) -> impl FnOnce(&mut Errors, &str, &Value) -> Option<T> {
    move |errors, key, value| {
        let text = string(errors, key, value)?;
        match check(text) {
            Ok(checked) => Some(checked),
            Err(reason) => {
                errors.push(key, reason);
                None
            }
        }
    }
}

/// An array whose entries are each checked by `check`; entry errors name `key[i]`. Returns the
/// entries that passed, so one bad entry does not hide problems in the others.
pub(crate) fn array_of<T>(
    check: impl Fn(&str) -> Result<T, String>,
) -> impl FnOnce(&mut Errors, &str, &Value) -> Option<Vec<T>> {
    move |errors, key, value| {
        let Value::Array(entries) = value else {
            errors.push(
                key,
                format!("expected an array of strings, found {}", found(value)),
            );
            return None;
        };
        let mut checked = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let entry_key = format!("{key}[{index}]");
            let Some(text) = string(errors, &entry_key, entry) else {
                continue;
            };
            match check(text) {
                Ok(value) => checked.push(value),
                Err(reason) => errors.push(entry_key, reason),
            }
        }
        Some(checked)
    }
}

/// The entries of an array of tables (`[[listener]]`), each with its path `name[i]`.
pub(crate) fn tables_of<'v>(
    errors: &mut Errors,
    name: &str,
    value: &'v Value,
) -> Vec<(String, &'v Table)> {
    let Value::Array(entries) = value else {
        errors.push(
            name,
            format!(
                "expected an array of tables ([[{name}]]), found {}",
                found(value)
            ),
        );
        return Vec::new();
    };
    let mut tables = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let path = format!("{name}[{index}]");
        match entry {
            Value::Table(table) => tables.push((path, table)),
            other => errors.push(path, format!("expected a table, found {}", found(other))),
        }
    }
    tables
}

fn unknown_key_reason(name: &str, known: &[&str]) -> String {
    let closest = known
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .min();
    match closest {
        Some((distance, candidate)) if distance <= 2 => {
            format!("unknown key; did you mean {candidate:?}?")
        }
        _ => format!("unknown key; expected one of {}", known.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean" hints on misspelt keys; keys are short and ASCII.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (i, left_char) in left.chars().enumerate() {
        let mut current = vec![i + 1; right.len() + 1];
        for (j, right_char) in right.iter().enumerate() {
            let substitution = previous[j] + usize::from(left_char != *right_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[right.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_of(text: &str) -> Table {
        text.parse().expect("test input is valid TOML")
    }

    #[test]
    fn unknown_keys_are_named_with_hints() {
        let table = table_of("hostnme = \"a\"\nzzz = 1\nspool = \"s\"");
        let mut errors = Errors::new("f");

        Fields::new(&mut errors, "server", &table, &["hostname", "spool"]);

        let errors = errors.into_result().unwrap_err();
        assert_eq!(errors.keys(), ["server.hostnme", "server.zzz"]);
        assert_eq!(
            errors.errors[0].reason,
            "unknown key; did you mean \"hostname\"?"
        );
        assert_eq!(
            errors.errors[1].reason,
            "unknown key; expected one of hostname, spool"
        );
    }

    #[test]
    fn required_and_optional_keys() {
        let table = table_of("a = 5\nb = \"x\"");
        let mut errors = Errors::new("f");
        let fields = Fields::new(&mut errors, "t", &table, &["a", "b", "c"]);

        let a: Option<u32> = fields.required(&mut errors, "a", "a number", integer_in(0, 9));
        let b: u32 = fields.optional(&mut errors, "b", 7, integer_in(0, 9));
        let c: Option<u32> = fields.required(&mut errors, "c", "a number", integer_in(0, 9));

        assert_eq!((a, b, c), (Some(5), 7, None));
        let errors = errors.into_result().unwrap_err();
        assert_eq!(errors.keys(), ["t.b", "t.c"]);
        assert_eq!(
            errors.errors[0].reason,
            "expected an integer from 0 to 9, found string \"x\""
        );
        assert_eq!(errors.errors[1].reason, "missing; expected a number");
    }

    #[test]
    fn bare_integer_durations_get_a_hint() {
        let mut errors = Errors::new("f");

        let parsed =
            duration_in(Duration::ZERO, Duration::MAX)(&mut errors, "k", &Value::Integer(30));

        assert_eq!(parsed, None);
        let errors = errors.into_result().unwrap_err();
        assert_eq!(
            errors.errors[0].reason,
            "30 has no unit; write a string with one, e.g. \"30s\""
        );
    }

    #[test]
    fn array_entries_are_checked_one_by_one() {
        let table = table_of("list = [\"ok\", 3, \"bad\", \"ok2\"]");
        let mut errors = Errors::new("f");
        let check = |text: &str| match text.starts_with("ok") {
            true => Ok(text.to_owned()),
            false => Err("not ok".to_owned()),
        };

        let list = array_of(check)(&mut errors, "list", &table["list"]);

        assert_eq!(list, Some(vec!["ok".to_owned(), "ok2".to_owned()]));
        assert_eq!(
            errors.into_result().unwrap_err().keys(),
            ["list[1]", "list[2]"]
        );
    }

    #[test]
    fn edit_distance_counts_single_changes() {
        assert_eq!(edit_distance("hostname", "hostname"), 0);
        assert_eq!(edit_distance("hostnme", "hostname"), 1);
        assert_eq!(edit_distance("tsl", "tls"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
