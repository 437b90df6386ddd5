//! The spool key directory (`server.spool_keys`): reading every `<key id>.key` file in it into a
//! `KeyRing`, and checking `server.spool_key` names one of them.
//!
//! It reports every bad file at once, each with its path and the fix, as the rest of the config
//! does. It refuses key files that anyone may read (the "other" permission bits), never logs or
//! prints key bytes, and never writes anything; `postern spool keygen` writes keys.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::spool::{check_key_id, parse_key_file, KeyRing, SpoolKey};

/// The suffix of a key file; the rest of the file name is the key id.
pub const KEY_FILE_SUFFIX: &str = ".key";

/// Reads every key file in `directory`. On failure, each problem as (path, reason).
pub fn load_key_directory(directory: &Path) -> Result<Vec<SpoolKey>, Vec<(PathBuf, String)>> {
    let entries = fs::read_dir(directory).map_err(|error| {
        vec![(
            directory.to_path_buf(),
            format!("cannot read the key directory: {error}"),
        )]
    })?;
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                problems.push((directory.to_path_buf(), format!("cannot list: {error}")));
                continue;
            }
        };
        let path = entry.path();
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(KEY_FILE_SUFFIX)) else {
            // Anything else (a README, an editor's backup) is not a key.
            continue;
        };
        match load_key_file(&path, id) {
            Ok(key) => keys.push(key),
            Err(reason) => problems.push((path, reason)),
        }
    }
    if problems.is_empty() {
        keys.sort_by(|left, right| left.id().cmp(right.id()));
        Ok(keys)
    } else {
        problems.sort();
        Err(problems)
    }
}

fn load_key_file(path: &Path, id: &str) -> Result<SpoolKey, String> {
    check_key_id(id).map_err(|reason| format!("{reason}; rename the file"))?;
    let metadata = fs::metadata(path).map_err(|error| format!("cannot inspect: {error}"))?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    if metadata.permissions().mode() & 0o007 != 0 {
        return Err(format!(
            "readable by every user (mode {:o}); run `chmod 600` on it",
            metadata.permissions().mode() & 0o777
        ));
    }
    let contents = fs::read(path).map_err(|error| format!("cannot read: {error}"))?;
    Ok(SpoolKey::new(id, parse_key_file(&contents)?))
}

/// Builds the ring for `directory` (if set) and `active` (if set), reporting each problem
/// through `report(key, reason)` with `directory_key` or `active_key` as the config key.
pub(crate) fn key_ring(
    directory: Option<&Path>,
    active: Option<&str>,
    (directory_key, active_key): (&str, &str),
    report: &mut dyn FnMut(String, String),
) -> KeyRing {
    let Some(directory) = directory else {
        if active.is_some() {
            report(
                active_key.to_owned(),
                format!("needs `{directory_key}`, the directory holding the key files"),
            );
        }
        return KeyRing::default();
    };
    let keys = match load_key_directory(directory) {
        Ok(keys) => keys,
        Err(problems) => {
            for (path, reason) in problems {
                report(
                    directory_key.to_owned(),
                    format!("{}: {reason}", path.display()),
                );
            }
            return KeyRing::default();
        }
    };
    match KeyRing::new(keys, active) {
        Ok(ring) => ring,
        Err(_) => {
            let id = active.unwrap_or_default();
            report(
                active_key.to_owned(),
                format!(
                    "no key file {}/{id}{KEY_FILE_SUFFIX}; create it with `postern spool keygen \
                     --directory {} --id {id}`",
                    directory.display(),
                    directory.display()
                ),
            );
            KeyRing::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_key(directory: &Path, name: &str, contents: &[u8], mode: u32) {
        let path = directory.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn load(directory: Option<&Path>, active: Option<&str>) -> (KeyRing, Vec<String>) {
        let mut reported = Vec::new();
        let ring = key_ring(
            directory,
            active,
            ("server.spool_keys", "server.spool_key"),
            &mut |key, reason| reported.push(format!("{key}: {reason}")),
        );
        (ring, reported)
    }

    #[test]
    fn every_key_file_is_loaded_and_others_are_ignored() {
        let directory = tempfile::tempdir().unwrap();
        write_key(directory.path(), "old.key", &[1; 32], 0o600);
        write_key(
            directory.path(),
            "new.key",
            "ab".repeat(32).as_bytes(),
            0o640,
        );
        write_key(directory.path(), "README", b"not a key", 0o644);
        let (ring, reported) = load(Some(directory.path()), Some("new"));
        assert!(reported.is_empty(), "{reported:?}");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["new", "old"]);
        assert_eq!(ring.active().map(SpoolKey::id), Some("new"));
    }

    #[test]
    fn every_bad_key_file_is_reported_with_its_path() {
        let directory = tempfile::tempdir().unwrap();
        write_key(directory.path(), "short.key", &[1; 31], 0o600);
        write_key(directory.path(), "open.key", &[1; 32], 0o604);
        write_key(directory.path(), ".hidden.key", &[1; 32], 0o600);
        let (ring, reported) = load(Some(directory.path()), Some("short"));
        assert!(ring.is_empty());
        assert_eq!(reported.len(), 3, "{reported:?}");
        assert!(reported
            .iter()
            .all(|r| r.starts_with("server.spool_keys: ")));
        assert!(reported
            .iter()
            .any(|r| r.contains("short.key") && r.contains("keygen")));
        assert!(reported
            .iter()
            .any(|r| r.contains("open.key") && r.contains("chmod 600")));
        assert!(reported
            .iter()
            .any(|r| r.contains(".hidden.key") && r.contains("rename")));
    }

    #[test]
    fn the_active_key_must_exist_and_needs_a_directory() {
        let directory = tempfile::tempdir().unwrap();
        write_key(directory.path(), "a.key", &[1; 32], 0o600);
        let (_, reported) = load(Some(directory.path()), Some("b"));
        assert!(
            reported[0].contains("server.spool_key: no key file") && reported[0].contains("b.key")
        );
        let (_, reported) = load(None, Some("b"));
        assert!(reported[0].contains("needs `server.spool_keys`"));
        let (ring, reported) = load(Some(directory.path()), None);
        assert!(reported.is_empty() && ring.active().is_none() && ring.len() == 1);
        let missing = directory.path().join("absent");
        let (_, reported) = load(Some(&missing), None);
        assert!(reported[0].contains("cannot read the key directory"));
    }
}
