//! `postern spool keygen`: writes a new spool key, `<key id>.key` with 32 random bytes as 64
//! hexadecimal digits, readable by its owner only (mode 0600).
//!
//! It never overwrites a file (an existing key may still seal segments), syncs the file and its
//! directory before it reports success, and prints the key id, never the key.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::SecureRandom;

use crate::config::spool_keys::KEY_FILE_SUFFIX;
use crate::fatal::{ExitReason, Fatal};
use crate::spool::{check_key_id, KEY_BYTES};

/// Writes a new key into `directory` (created with mode 0700 if missing) under `id`, or under
/// the current UTC time (`20261204T005012Z`) if none is given. Returns the key file's path.
pub fn keygen(directory: &Path, id: Option<&str>) -> Result<PathBuf, Fatal> {
    let id = id.map_or_else(default_id, str::to_owned);
    check_key_id(&id).map_err(|reason| {
        Fatal::new(
            ExitReason::ConfigInvalid,
            format!("bad --id `{id}`: {reason}"),
            "pick another id",
        )
    })?;
    let path = directory.join(format!("{id}{KEY_FILE_SUFFIX}"));
    let failure = |what: &str, error: io::Error| {
        Fatal::new(
            ExitReason::SpoolNotWritable,
            format!("cannot {what} {}: {error}", path.display()),
            "check the directory and its permissions; an existing key is never overwritten",
        )
    };

    let mut secret = [0u8; KEY_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| Fatal::internal("the system random number generator failed"))?;
    let mut text = String::with_capacity(2 * KEY_BYTES + 1);
    for byte in secret {
        text.push_str(&format!("{byte:02x}"));
    }
    text.push('\n');

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
        .map_err(|error| failure("create the directory of", error))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|error| failure("create", error))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| failure("write", error))?;
    fs::File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| failure("sync the directory of", error))?;
    Ok(path)
}

/// `YYYYMMDDTHHMMSSZ` for now, in UTC.
fn default_id() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let (year, month, day) = crate::time::civil_from_days(seconds / 86_400);
    let time = seconds % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_new_key_is_private_loadable_and_never_overwritten() {
        let directory = tempfile::tempdir().unwrap();
        let keys = directory.path().join("keys");
        let path = keygen(&keys, Some("first")).unwrap();
        assert_eq!(path, keys.join("first.key"));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = crate::config::spool_keys::load_key_directory(&keys).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].id(), "first");
        assert!(keygen(&keys, Some("first")).is_err());
        assert!(keygen(&keys, Some("../escape")).is_err());
        let generated = keygen(&keys, None).unwrap();
        assert!(
            generated.to_string_lossy().ends_with("Z.key"),
            "{generated:?}"
        );
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(crate::time::civil_from_days(0), (1970, 1, 1));
        assert_eq!(crate::time::civil_from_days(20_426), (2025, 12, 4));
        assert_eq!(crate::time::civil_from_days(11_016), (2000, 2, 29));
    }
}
