//! Configuration errors: what went wrong, in which file, at which key.
//!
//! Validation never stops at the first problem. Every check pushes into an [`Errors`]
//! accumulator, and the caller gets the whole list at once as [`ConfigErrors`], so an operator
//! fixes a file in one pass instead of one error per restart. This module only formats; it does
//! no I/O.

use std::fmt;

/// Exit status for a configuration that cannot be used (`EX_CONFIG` from BSD `sysexits.h`).
pub const EXIT_INVALID_CONFIG: i32 = 78;

/// One problem in one configuration file.
///
/// `key` is a path such as `listener[1].address` or `smtp.message_size_max` (array entries are
/// counted from 0). Errors that belong to no key use a bracketed place instead: `(file)` when the
/// file cannot be read and `line L, column C` for TOML syntax errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

/// Every problem found in one configuration file; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The key paths in reporting order; tests and the CLI use this to summarise.
    pub fn keys(&self) -> Vec<&str> {
        self.errors.iter().map(|error| error.key.as_str()).collect()
    }
}

impl fmt::Display for ConfigErrors {
    /// One line per error, so the output can be grepped and counted with `wc -l`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The accumulator every validation step writes into.
#[derive(Debug)]
pub(crate) struct Errors {
    file: String,
    list: Vec<ConfigError>,
}

impl Errors {
    pub(crate) fn new(file: &str) -> Errors {
        Errors {
            file: file.to_owned(),
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.clone(),
            key: key.into(),
            reason: reason.into(),
        });
    }

    /// Hands over the collected errors; `Ok(())` when there were none.
    pub(crate) fn into_result(self) -> Result<(), ConfigErrors> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors { errors: self.list })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_one_error_per_line() {
        let mut errors = Errors::new("relay.toml");
        errors.push(
            "server.shards",
            "expected an integer from 0 to 1024, found 5000",
        );
        errors.push(
            "listener[0].address",
            "missing; expected an address like \"0.0.0.0:25\"",
        );
        let errors = errors.into_result().unwrap_err();

        let text = errors.to_string();

        assert_eq!(
            text,
            "relay.toml: server.shards: expected an integer from 0 to 1024, found 5000\n\
             relay.toml: listener[0].address: missing; expected an address like \"0.0.0.0:25\""
        );
        assert_eq!(errors.keys(), ["server.shards", "listener[0].address"]);
    }

    #[test]
    fn no_errors_is_ok() {
        assert!(Errors::new("x").into_result().is_ok());
    }
}
