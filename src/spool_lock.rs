//! One running relay per spool: `postern serve` holds an exclusive `flock` on
//! `<spool>/postern.lock` for its whole life, and a second relay pointed at the same spool stops
//! at start-up instead of sharing it.
//!
//! Two relays on one spool would both recover the same messages and deliver them twice, write
//! segments of the same generation under the same names, and reclaim each other's segments while
//! the other still reads them. Postfix refuses a second master on one queue for the same reason.
//!
//! The lock belongs to the open file, not to a path or a pid: it is released by the kernel when
//! the holder exits for any reason, `kill -9` included, so a crash never leaves a stale lock to
//! clean up, and a descriptor handed to another process (as a hot upgrade hands over listening
//! sockets) carries the lock with it. The holder's pid is written into the file only so that the
//! refusal can name the process to stop.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::fatal::{ExitReason, Fatal};

/// The lock file's name inside the spool directory.
pub const LOCK_FILE_NAME: &str = "postern.lock";

/// The held lock. Dropping it (or exiting) releases the spool.
pub struct SpoolLock {
    _file: Flock<File>,
}

impl SpoolLock {
    /// Takes the lock on `spool`, which must exist, or explains who holds it.
    pub fn acquire(spool: &Path) -> Result<SpoolLock, Fatal> {
        let path = spool.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| unusable(&path, error))?;

        let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => return Err(in_use(spool, holder(&mut file))),
            Err((_, errno)) => return Err(unusable(&path, errno.into())),
        };

        // Only a hint for the next refusal, so a failure to record it is not fatal.
        let record = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())
        };
        if let Err(error) = record(&mut locked) {
            let path = path.display();
            tracing::warn!(%path, %error, "cannot record this relay's pid in the spool lock file");
        }
        Ok(SpoolLock { _file: locked })
    }
}

/// The pid the current holder wrote, if it is readable.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn in_use(spool: &Path, holder: Option<u32>) -> Fatal {
    let (who, stop) = match holder {
        Some(pid) => (
            format!("another postern (pid {pid})"),
            format!("`kill -TERM {pid}`"),
        ),
        None => ("another postern".to_owned(), "it".to_owned()),
    };
    Fatal::new(
        ExitReason::SpoolInUse,
        format!(
            "{who} is running on the spool {}; two relays on one spool would deliver mail twice",
            spool.display()
        ),
        format!("stop {stop} first, or give this relay its own `server.spool`"),
    )
}

fn unusable(path: &Path, error: std::io::Error) -> Fatal {
    Fatal::new(
        ExitReason::SpoolNotWritable,
        format!("cannot lock the spool with {}: {error}", path.display()),
        "give this user write permission on the spool directory, or point `server.spool` elsewhere",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_spool_is_refused_with_the_holder_named() {
        let spool = tempfile::tempdir().expect("temporary directory");
        let first = SpoolLock::acquire(spool.path()).expect("first lock");

        // flock locks conflict between open files even within one process.
        let refusal = SpoolLock::acquire(spool.path())
            .err()
            .expect("a second lock must be refused");
        assert_eq!(refusal.reason, ExitReason::SpoolInUse);
        let pid = std::process::id().to_string();
        assert!(refusal.to_string().contains(&pid), "{refusal}");

        drop(first);
        SpoolLock::acquire(spool.path()).expect("the lock is free again once dropped");
    }
}
