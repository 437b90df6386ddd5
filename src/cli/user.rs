//! `postern user add|remove|list`: the SMTP AUTH users file, edited in place.
//!
//! Passwords come from standard input (`--password-stdin`, the first line) or from a prompt on
//! the terminal with echo turned off, never from the command line, where any local user could
//! read them in the process list. The file is rewritten atomically with mode 0600, keeping its
//! comments and, where the caller may, its owner. A running relay sees the change after SIGHUP.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;

use zeroize::Zeroizing;

use crate::fatal::{ExitReason, Fatal};
use crate::sasl::users::{check_username, write_atomically};
use crate::sasl::{hash_password, UserTable, UsersFileError};

/// What to do to the users file.
pub enum Action {
    /// Add the user, or set a new password for an existing one.
    Add {
        username: String,
        password_stdin: bool,
    },
    Remove {
        username: String,
    },
    List,
}

/// Runs `action` on `users_file` and returns what to tell the operator.
pub fn run(users_file: &Path, action: Action) -> Result<String, Fatal> {
    match action {
        Action::List => {
            let table = UserTable::load(users_file).map_err(unreadable)?;
            let mut listing = String::new();
            for username in table.usernames() {
                listing.push_str(username);
                listing.push('\n');
            }
            Ok(listing)
        }
        Action::Add {
            username,
            password_stdin,
        } => {
            check_username(&username).map_err(|reason| {
                Fatal::new(
                    ExitReason::Usage,
                    reason,
                    "pick a name of visible characters without a colon",
                )
            })?;
            let mut table = UserTable::load_or_empty(users_file).map_err(unreadable)?;
            let password = read_password(password_stdin)?;
            let phc = hash_password(&password)
                .map_err(|reason| Fatal::internal(format!("cannot hash the password: {reason}")))?;
            let added = table.set(&username, phc);
            write_atomically(users_file, &table.render()).map_err(unwritable)?;
            let done = if added { "added" } else { "password changed" };
            Ok(format!(
                "{username}: {done} in {}; send SIGHUP to a running postern to load it\n",
                users_file.display()
            ))
        }
        Action::Remove { username } => {
            let mut table = UserTable::load(users_file).map_err(unreadable)?;
            if !table.remove(&username) {
                return Err(Fatal::new(
                    ExitReason::NotFound,
                    format!("no user {username:?} in {}", users_file.display()),
                    "check the name with `postern user list`",
                ));
            }
            write_atomically(users_file, &table.render()).map_err(unwritable)?;
            Ok(format!(
                "{username}: removed from {}; send SIGHUP to a running postern to load it\n",
                users_file.display()
            ))
        }
    }
}

/// The new password: the first line of standard input, or typed twice at a prompt.
fn read_password(from_stdin: bool) -> Result<Zeroizing<String>, Fatal> {
    let password = if from_stdin {
        read_line(&mut io::stdin().lock())
            .map_err(|error| Fatal::internal(format!("cannot read standard input: {error}")))?
    } else if io::stdin().is_terminal() {
        let first = prompt("New password: ")?;
        let second = prompt("Retype the password: ")?;
        if *first != *second {
            return Err(Fatal::new(
                ExitReason::Usage,
                "the two passwords differ",
                "run the command again",
            ));
        }
        first
    } else {
        return Err(Fatal::new(
            ExitReason::Usage,
            "standard input is not a terminal, so there is nowhere to prompt for the password",
            "pass --password-stdin and write the password on standard input",
        ));
    };
    if password.is_empty() {
        return Err(Fatal::new(
            ExitReason::Usage,
            "the password is empty",
            "give a password of at least one character",
        ));
    }
    Ok(password)
}

/// One line without its line ending, in a buffer wiped when dropped.
fn read_line(input: &mut impl BufRead) -> io::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    input.read_line(&mut line)?;
    let kept = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(kept);
    Ok(line)
}

/// Asks on standard error and reads the answer from the terminal with echo off.
fn prompt(question: &str) -> Result<Zeroizing<String>, Fatal> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};

    let terminal_failed =
        |error: nix::Error| Fatal::internal(format!("cannot turn off the terminal echo: {error}"));
    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).map_err(terminal_failed)?;
    let mut silent = saved.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    silent.local_flags.insert(LocalFlags::ECHONL);

    // Echo goes off before the prompt appears, so that nothing typed as soon as it shows is
    // echoed. TCSANOW rather than TCSAFLUSH: typed-ahead input is kept, not thrown away.
    tcsetattr(&stdin, SetArg::TCSANOW, &silent).map_err(terminal_failed)?;
    eprint!("{question}");
    let _ = io::stderr().flush();
    let answer = read_line(&mut stdin.lock());
    // Restored whatever the read did, so the terminal never stays silent.
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    let answer =
        answer.map_err(|error| Fatal::internal(format!("cannot read the password: {error}")))?;
    restored.map_err(terminal_failed)?;
    Ok(answer)
}

fn unreadable(error: UsersFileError) -> Fatal {
    Fatal::new(
        ExitReason::ConfigInvalid,
        error.to_string(),
        "fix the line named, or point --users-file at the right file",
    )
}

fn unwritable(error: UsersFileError) -> Fatal {
    Fatal::new(
        ExitReason::UsersFileNotWritable,
        error.to_string(),
        "check that the directory exists and that this user may write to it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_line_loses_only_its_line_ending() {
        let mut input = io::Cursor::new(b" pass word \r\nsecond line\n".to_vec());
        assert_eq!(read_line(&mut input).unwrap().as_str(), " pass word ");
        let mut empty = io::Cursor::new(Vec::new());
        assert_eq!(read_line(&mut empty).unwrap().as_str(), "");
    }
}
