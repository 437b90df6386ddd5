//! Scenario: `postern check-config` and `postern serve` with good and bad configuration files.
//! Every error is reported at once, with the file, the key path and a reason, and the exit code
//! is 78 (EX_CONFIG).

mod common;

use std::process::Command;

use common::postern_binary;

const EX_CONFIG: i32 = 78;

fn check(text: &str) -> (i32, String, String) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("bad.toml");
    std::fs::write(&path, text).expect("write config");
    let output = Command::new(postern_binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run check-config");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_error_is_reported_at_once() {
    let (code, _, stderr) = check(
        "[server]\nbogus = 1\nshards = \"many\"\n\n\
         [[listener]]\naddress = \"not an address\"\n\n\
         [smtp]\ncommand_timeout = \"forever\"\nmessage_size_max = \"lots\"\n\n\
         [nonsense]\nx = 1\n",
    );
    assert_eq!(code, EX_CONFIG, "{stderr}");
    for key in [
        "server.bogus",
        "server.shards",
        "listener[0].address",
        "smtp.command_timeout",
        "smtp.message_size_max",
        "nonsense",
    ] {
        assert!(stderr.contains(key), "{key} missing from:\n{stderr}");
    }
    assert!(stderr.contains("bad.toml"), "the file is named:\n{stderr}");
}

#[test]
fn a_valid_file_passes() {
    let (code, stdout, stderr) = check(
        "[server]\nhostname = \"relay.example.net\"\nspool = \"/tmp/x\"\n\n\
         [[listener]]\naddress = \"127.0.0.1:2525\"\n\n\
         [smtp]\nmessage_size_max = \"10MiB\"\ncommand_timeout = \"2m\"\n\n\
         [[route]]\ndomains = [\"*\"]\nsmarthost = \"127.0.0.1:2526\"\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
}

#[test]
fn the_embedded_default_is_valid() {
    let output = Command::new(postern_binary())
        .arg("check-config")
        .output()
        .expect("run check-config");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn serve_refuses_a_bad_file_with_the_same_report() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("bad.toml");
    std::fs::write(&path, "[server]\nshards = -1\n").expect("write config");
    let output = Command::new(postern_binary())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run serve");
    assert_eq!(output.status.code(), Some(EX_CONFIG));
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.shards"));
}
