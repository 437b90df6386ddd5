//! Scenario: environmental dead ends at start-up exit with their own code and one line that
//! names the cause and the fix: an address already in use (12) and an unwritable spool (14).

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::postern_binary;

const ROUTE: &str = "\n[[route]]\ndomains = [\"*\"]\nmx = true\n";

fn serve_with(config: &str) -> (Option<i32>, String) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("postern.toml");
    std::fs::write(
        &path,
        config.replace("{dir}", &directory.path().display().to_string()),
    )
    .expect("write config");
    let output = Command::new(postern_binary())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run serve");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn address_in_use_exits_12_with_a_fix() {
    // Held without SO_REUSEPORT, so postern's bind must fail.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("address").port();
    let (code, stderr) = serve_with(&format!(
        "[server]\nspool = \"{{dir}}/spool\"\nshards = 1\n\n\
         [[listener]]\naddress = \"127.0.0.1:{port}\"\n{ROUTE}"
    ));
    assert_eq!(code, Some(12), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains("fix"), "{stderr}");
}

#[test]
fn unwritable_spool_exits_14_with_a_fix() {
    // A spool under a regular file cannot be created, even by root.
    let (code, stderr) = serve_with(&format!(
        "[server]\nspool = \"{{dir}}/postern.toml/spool\"\nshards = 1\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\n{ROUTE}"
    ));
    assert_eq!(code, Some(14), "{stderr}");
    assert!(stderr.contains("spool"), "{stderr}");
}
