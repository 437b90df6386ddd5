//! Fatal start-up conditions and the process exit codes that name them.
//!
//! An operator (or systemd, or a hot-upgrade parent) must be able to tell from the exit status
//! alone why postern refused to run, so each environmental dead end has its own code, and each
//! carries one sentence naming the cause and one naming the fix. These are the conditions that
//! no retry inside the process can mend; anything a client can cause is an SMTP reply instead.

use std::fmt;

/// Why postern stopped before (or instead of) serving mail. The discriminant is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitReason {
    /// Something unexpected: a bug, or an I/O error that fits no other class.
    Internal = 1,
    /// The command line asks for something impossible (clap's own usage errors use 2 too):
    /// `postern user add` with a bad user name or an empty password, say.
    Usage = 2,
    /// An admin command found no such message (or nothing to act on).
    NotFound = 3,
    /// The kernel refused io_uring (too old, or disabled by `kernel.io_uring_disabled`).
    IoUringUnavailable = 10,
    /// RLIMIT_MEMLOCK is too small for the io_uring memory each shard registers.
    MemlockTooLow = 11,
    /// A listen address is already taken by another process.
    AddressInUse = 12,
    /// A listen address cannot be bound: privileged port without the capability, or an address
    /// this host does not own.
    AddressNotAvailable = 13,
    /// The spool directory cannot be created, written or synced.
    SpoolNotWritable = 14,
    /// A spool segment is sealed with a key that is not in the key directory
    /// (`server.spool_keys`), so its messages cannot be read.
    SpoolKeyMissing = 15,
    /// `postern user`: the users file cannot be written (directory missing, no permission).
    UsersFileNotWritable = 16,
    /// Another relay holds the spool's lock: two relays must never share one spool.
    SpoolInUse = 17,
    /// An admin command could not reach the running relay's admin API (sysexits.h
    /// EX_UNAVAILABLE).
    AdminUnavailable = 69,
    /// The configuration is invalid (the sysexits.h EX_CONFIG value).
    ConfigInvalid = 78,
}

impl ExitReason {
    /// The process exit status for this reason.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A condition that stops the process: what happened, and what the operator should do.
#[derive(Debug)]
pub struct Fatal {
    pub reason: ExitReason,
    pub cause: String,
    pub fix: String,
}

impl Fatal {
    pub fn new(reason: ExitReason, cause: impl Into<String>, fix: impl Into<String>) -> Fatal {
        Fatal {
            reason,
            cause: cause.into(),
            fix: fix.into(),
        }
    }

    /// An error without a more specific class; the cause still names what failed.
    /// Every problem of a configuration, one per line, and their count.
    pub fn config(errors: &crate::config::ConfigErrors) -> Fatal {
        let count = errors.errors.len();
        Fatal::new(
            ExitReason::ConfigInvalid,
            format!("{errors}\n{count} configuration error(s)"),
            "",
        )
    }

    pub fn internal(cause: impl Into<String>) -> Fatal {
        Fatal::new(
            ExitReason::Internal,
            cause,
            "this is unexpected: report it with the log lines above",
        )
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; fix: {}", self.cause, self.fix)
    }
}

impl std::error::Error for Fatal {}
