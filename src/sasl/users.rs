//! The users file: one `username:$argon2id$...` line per user, `#` comments and blank lines kept.
//!
//! This file owns the format, its validation (with the line number of each mistake), the
//! argon2id hashing of new passwords, the verification of a password, and the atomic rewrite
//! that `postern user` performs (temporary file, fsync, rename, directory fsync, mode 0600).
//! Verification of an unknown user runs against a dummy hash of the same cost, so that the time
//! an answer takes does not tell which users exist. It never logs a password or a hash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Longest user name accepted; RFC 4616 §2 allows 255 octets for the authentication identity.
pub const USERNAME_MAX_BYTES: usize = 255;

/// Octets of random salt per hash (the PHC recommendation is at least 16).
const SALT_BYTES: usize = 16;

/// Why a users file could not be used; the display names the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("{}: line {line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },
}

impl UsersFileError {
    /// The start-up failure for a users file that cannot be used; `place` names it (the
    /// configuration key, with the file when known).
    pub fn to_fatal(&self, place: &str) -> crate::fatal::Fatal {
        crate::fatal::Fatal::new(
            crate::fatal::ExitReason::ConfigInvalid,
            format!("{place}: {self}"),
            "fix the line named, or (re)create the file with `postern user add NAME`",
        )
    }
}

/// One line of the file, kept in order so a rewrite preserves the operator's comments.
#[derive(Clone, Debug)]
enum Line {
    /// A comment or blank line, as written.
    Verbatim(String),
    User {
        name: String,
        phc: String,
    },
}

/// The parsed users file.
#[derive(Clone, Debug, Default)]
pub struct UserTable {
    lines: Vec<Line>,
}

impl UserTable {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<UserTable, UsersFileError> {
        let text = fs::read_to_string(path).map_err(|error| UsersFileError::Read {
            path: path.to_owned(),
            error,
        })?;
        UserTable::parse(&text).map_err(|(line, reason)| UsersFileError::Line {
            path: path.to_owned(),
            line,
            reason,
        })
    }

    /// Like `load`, but a file that does not exist yet is an empty table (for `user add`).
    pub fn load_or_empty(path: &Path) -> Result<UserTable, UsersFileError> {
        match UserTable::load(path) {
            Err(UsersFileError::Read { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
                Ok(UserTable::default())
            }
            other => other,
        }
    }

    /// Parses the text of a users file; an error carries its line number (from 1).
    pub fn parse(text: &str) -> Result<UserTable, (usize, String)> {
        let mut table = UserTable::default();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                table.lines.push(Line::Verbatim(raw.to_owned()));
                continue;
            }
            let Some((name, phc)) = trimmed.split_once(':') else {
                return Err((number, "expected username:$argon2id$... (no colon)".into()));
            };
            check_username(name).map_err(|reason| (number, reason))?;
            check_phc(phc).map_err(|reason| (number, format!("user {name:?}: {reason}")))?;
            if table.contains(name) {
                return Err((number, format!("user {name:?} is listed twice")));
            }
            table.lines.push(Line::User {
                name: name.to_owned(),
                phc: phc.to_owned(),
            });
        }
        Ok(table)
    }

    /// The user names, in file order.
    pub fn usernames(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            Line::User { name, .. } => Some(name.as_str()),
            Line::Verbatim(_) => None,
        })
    }

    pub fn len(&self) -> usize {
        self.usernames().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, username: &str) -> bool {
        self.phc(username).is_some()
    }

    /// Adds `username` with the hash `phc`, or replaces the hash of an existing user. Returns
    /// true when the user is new.
    pub fn set(&mut self, username: &str, phc: String) -> bool {
        for line in &mut self.lines {
            if let Line::User { name, phc: old } = line {
                if name == username {
                    *old = phc;
                    return false;
                }
            }
        }
        self.lines.push(Line::User {
            name: username.to_owned(),
            phc,
        });
        true
    }

    /// Removes `username`; false when there was no such user.
    pub fn remove(&mut self, username: &str) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|line| !matches!(line, Line::User { name, .. } if name == username));
        self.lines.len() != before
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Verbatim(raw) => text.push_str(raw),
                Line::User { name, phc } => {
                    text.push_str(name);
                    text.push(':');
                    text.push_str(phc);
                }
            }
            text.push('\n');
        }
        text
    }

    /// Whether `password` is the password of `username`. An unknown user is checked against
    /// `dummy_phc` so that both answers cost the same time. Slow by design: never on a shard.
    pub fn verify(&self, username: &str, password: &str, dummy_phc: &str) -> bool {
        match self.phc(username) {
            Some(phc) => verify_phc(phc, password),
            None => {
                let _ = verify_phc(dummy_phc, password);
                false
            }
        }
    }

    // LIMITATION(L17): names (and passwords, in `verify_phc`) are compared as the octets the
    // client sent, without SASLprep (RFC 4013).
    fn phc(&self, username: &str) -> Option<&str> {
        self.lines.iter().find_map(|line| match line {
            Line::User { name, phc } if name == username => Some(phc.as_str()),
            _ => None,
        })
    }
}

/// A user name fit for the file and for SMTP logs: visible characters, no colon.
pub fn check_username(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the user name is empty".into());
    }
    if name.len() > USERNAME_MAX_BYTES {
        return Err(format!(
            "the user name is longer than {USERNAME_MAX_BYTES} bytes"
        ));
    }
    if name
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "the user name {name:?} holds a colon, white space or a control character"
        ));
    }
    Ok(())
}

/// The argon2id PHC string of `password` under a fresh random salt, with the crate's default
/// cost (RFC 9106's second recommended option: 19 MiB, 2 passes, 1 lane).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt_bytes = [0u8; SALT_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt_bytes)
        .map_err(|_| "the system random source failed".to_owned())?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|error| error.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| error.to_string())
}

/// A hash of a random password that nobody knows, to verify unknown users against.
pub fn dummy_hash() -> Result<String, String> {
    let mut secret = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| "the system random source failed".to_owned())?;
    let password: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
    hash_password(&password)
}

/// Writes `text` to `path` so that a reader sees either the old file or the new one, never a
/// torn one, and so that the new one survives a crash: temporary file beside it (mode 0600),
/// fsync, rename over, fsync of the directory.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), UsersFileError> {
    let failed = |error| UsersFileError::Write {
        path: path.to_owned(),
        error,
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| failed(io::Error::other("the path names no file")))?;
    let temporary = directory.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));

    // The relay must still be able to read the file after root edits it, so the new file keeps
    // the old one's owner when the caller is allowed to give it away (root is).
    let owner = fs::metadata(path)
        .ok()
        .map(|metadata| (metadata.uid(), metadata.gid()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        File::open(&directory)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(failed)
}

fn check_phc(phc: &str) -> Result<(), String> {
    if !phc.starts_with("$argon2id$") {
        return Err("the hash is not an argon2id PHC string ($argon2id$v=19$...)".into());
    }
    let hash =
        PasswordHash::new(phc).map_err(|error| format!("the hash does not parse: {error}"))?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("the hash does not parse: it lacks its salt or its output".into());
    }
    argon2::Params::try_from(&hash)
        .map(|_| ())
        .map_err(|error| format!("the hash does not parse: {error}"))
}

fn verify_phc(phc: &str, password: &str) -> bool {
    // A hash that no longer parses was checked at load time, so this only fails on a bug.
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_round_trips_through_the_file() {
        let phc = hash_password("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$"));
        let text = format!("# submission users\nalice:{phc}\n\n");
        let table = UserTable::parse(&text).expect("valid");
        let dummy = dummy_hash().expect("dummy");

        assert!(table.verify("alice", "correct horse", &dummy));
        assert!(!table.verify("alice", "wrong", &dummy));
        assert!(!table.verify("bob", "correct horse", &dummy));
        assert_eq!(table.render(), text);
        assert_eq!(table.usernames().collect::<Vec<_>>(), ["alice"]);
    }

    #[test]
    fn mistakes_name_their_line() {
        let phc = hash_password("x").expect("hash");
        let cases = [
            ("alice\n".to_owned(), 1, "no colon"),
            ("# c\nalice:$2y$10$abc\n".to_owned(), 2, "not an argon2id"),
            ("alice:$argon2id$junk\n".to_owned(), 1, "does not parse"),
            (format!("alice:{phc}\nalice:{phc}\n"), 2, "twice"),
            (format!("al ice:{phc}\n"), 1, "white space"),
        ];
        for (text, line, reason) in cases {
            let (number, message) = UserTable::parse(&text).expect_err(&text);
            assert_eq!(number, line, "{text}");
            assert!(message.contains(reason), "{message}");
        }
    }

    #[test]
    fn set_and_remove_keep_comments() {
        let mut table = UserTable::parse("# keep me\n").expect("valid");
        assert!(table.set("alice", "$argon2id$a".into()));
        assert!(!table.set("alice", "$argon2id$b".into()));
        assert!(table.set("bob", "$argon2id$c".into()));
        assert!(table.remove("alice"));
        assert!(!table.remove("alice"));
        assert_eq!(table.render(), "# keep me\nbob:$argon2id$c\n");
    }

    #[test]
    fn atomic_write_leaves_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("users");
        write_atomically(&path, "# one\n").expect("write");
        write_atomically(&path, "# two\n").expect("rewrite");
        assert_eq!(fs::read_to_string(&path).expect("read"), "# two\n");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read_dir(directory.path()).expect("list").count(), 1);
    }
}
