//! Scenario: `postern user add/list/remove` edits the AUTH users file. Passwords come from
//! standard input or a terminal prompt without echo (driven through util-linux `script`), never
//! argv; the file is rewritten atomically with mode 0600 and keeps its
//! comments; mistakes exit with their own codes (2 usage, 3 no such user, 78 bad file).

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::postern_binary;

/// Runs `postern user ARGS` with `stdin` as its standard input.
fn user(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(postern_binary())
        .arg("user")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run postern user");
    // A command that refuses early never reads its input, so a broken pipe is no failure.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("wait for postern user")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn add_list_remove_round_trip() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let users = directory.path().join("users");
    let file = users.to_str().expect("utf-8 path");

    let added = user(
        &["add", "alice", "--password-stdin", "--users-file", file],
        b"s3cret\n",
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert!(text(&added.stdout).contains("alice: added"));
    assert_eq!(mode(&users), 0o600);

    // Comments survive a rewrite.
    let with_comment = format!(
        "# submission users\n{}",
        std::fs::read_to_string(&users).unwrap()
    );
    std::fs::write(&users, with_comment).expect("add a comment");
    let bob = user(
        &["add", "bob", "--password-stdin", "--users-file", file],
        b"pw2\r\n",
    );
    assert!(bob.status.success(), "{}", text(&bob.stderr));

    let contents = std::fs::read_to_string(&users).expect("read users");
    assert!(
        contents.starts_with("# submission users\nalice:$argon2id$v=19$"),
        "{contents}"
    );
    assert!(contents.contains("\nbob:$argon2id$v=19$"), "{contents}");
    assert!(!contents.contains("s3cret") && !contents.contains("pw2"));
    assert_eq!(mode(&users), 0o600);

    let listed = user(&["list", "--users-file", file], b"");
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert_eq!(text(&listed.stdout), "alice\nbob\n");

    // A second add sets a new password rather than a second line.
    let again = user(
        &["add", "alice", "--password-stdin", "--users-file", file],
        b"new\n",
    );
    assert!(text(&again.stdout).contains("password changed"));
    assert_eq!(
        text(&user(&["list", "--users-file", file], b"").stdout),
        "alice\nbob\n"
    );

    let removed = user(&["remove", "alice", "--users-file", file], b"");
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert_eq!(
        text(&user(&["list", "--users-file", file], b"").stdout),
        "bob\n"
    );
    assert_eq!(mode(&users), 0o600);
    let leftovers = std::fs::read_dir(directory.path()).expect("list").count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");

    let missing = user(&["remove", "alice", "--users-file", file], b"");
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing.stderr));
}

#[test]
fn the_users_file_comes_from_the_configuration() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let users = directory.path().join("users");
    let config = directory.path().join("postern.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\nauth = \"optional\"\n\n\
             [[route]]\ndomains = [\"*\"]\nmx = true\n\n\
             [auth]\nusers_file = \"{}\"\n",
            users.display()
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");

    let added = user(
        &["add", "carol", "--password-stdin", "--config", config],
        b"pw\n",
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert!(std::fs::read_to_string(&users)
        .unwrap()
        .starts_with("carol:$argon2id$"));

    let check = Command::new(postern_binary())
        .args(["check-config", "--config", config])
        .output()
        .expect("run check-config");
    assert!(check.status.success(), "{}", text(&check.stderr));

    // The embedded default names no users file, so the error says how to give one.
    let nowhere = user(&["list"], b"");
    assert_eq!(nowhere.status.code(), Some(78));
    assert!(
        text(&nowhere.stderr).contains("--users-file"),
        "{}",
        text(&nowhere.stderr)
    );
}

#[test]
fn mistakes_exit_with_their_codes() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let users = directory.path().join("users");
    let file = users.to_str().expect("utf-8 path");

    // No terminal to prompt on, and no --password-stdin: refused, nothing written.
    let no_prompt = user(&["add", "alice", "--users-file", file], b"pw\n");
    assert_eq!(
        no_prompt.status.code(),
        Some(2),
        "{}",
        text(&no_prompt.stderr)
    );
    assert!(text(&no_prompt.stderr).contains("--password-stdin"));
    assert!(!users.exists());

    let empty = user(
        &["add", "alice", "--password-stdin", "--users-file", file],
        b"\n",
    );
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty.stderr));

    let colon = user(
        &["add", "a:b", "--password-stdin", "--users-file", file],
        b"pw\n",
    );
    assert_eq!(colon.status.code(), Some(2), "{}", text(&colon.stderr));
    assert!(!users.exists());

    std::fs::write(&users, "alice:not-a-hash\n").expect("write a bad file");
    let bad = user(&["list", "--users-file", file], b"");
    assert_eq!(bad.status.code(), Some(78));
    assert!(
        text(&bad.stderr).contains("line 1"),
        "{}",
        text(&bad.stderr)
    );
}

/// Takes terminal output from `chunks` until `marker` has appeared, failing the test after
/// `REPLY_PATIENCE`.
fn read_until(chunks: &std::sync::mpsc::Receiver<Vec<u8>>, seen: &mut Vec<u8>, marker: &str) {
    let deadline = std::time::Instant::now() + common::REPLY_PATIENCE;
    while !text(seen).contains(marker) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match chunks.recv_timeout(left) {
            Ok(chunk) => seen.extend_from_slice(&chunk),
            Err(_) => panic!("no {marker:?} on the terminal; it showed {:?}", text(seen)),
        }
    }
}

#[test]
fn the_prompt_reads_the_password_twice_without_echo() {
    use std::io::Read;

    let directory = tempfile::tempdir().expect("temporary directory");
    let users = directory.path().join("users");
    let command = format!(
        "{} user add dave --users-file {}",
        postern_binary(),
        users.display()
    );
    // util-linux `script` gives the command a pseudo-terminal, as an operator's shell would.
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run `script` (Debian package bsdutils) to give postern a terminal");
    let mut stdout = child.stdout.take().expect("stdout");
    let (sender, chunks) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1024];
        while let Ok(read) = stdout.read(&mut buffer) {
            if read == 0 || sender.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().expect("stdin");
    let mut seen = Vec::new();

    // Each answer is typed only once its prompt is up, as a person would, so the terminal's
    // echo is already off.
    read_until(&chunks, &mut seen, "New password: ");
    stdin
        .write_all(b"typed-s3cret\n")
        .expect("type the password");
    read_until(&chunks, &mut seen, "Retype the password: ");
    stdin.write_all(b"typed-s3cret\n").expect("type it again");
    read_until(&chunks, &mut seen, "dave: added");
    drop(stdin);
    assert!(child.wait().expect("wait for script").success());

    assert!(
        !text(&seen).contains("typed-s3cret"),
        "echoed: {}",
        text(&seen)
    );
    let contents = std::fs::read_to_string(&users).expect("read users");
    assert!(contents.starts_with("dave:$argon2id$"), "{contents}");
}
