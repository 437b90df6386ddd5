//! Shared helpers for the loadgen integration tests: start a `sink` process on a free loopback
//! port and stop it with SIGTERM, run `send` and `check`, read their JSON reports and id logs.
//! Every process is bounded: the sink carries a --duration backstop, send a --duration and a
//! --timeout, so a broken build fails a test instead of hanging it.

#![allow(dead_code)] // Each test file uses a different subset of these helpers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BINARY: &str = env!("CARGO_BIN_EXE_postern-loadgen");

/// A running sink.
pub struct Sink {
    child: Child,
    /// Kept open so the sink can print its closing report.
    _stdout: BufReader<std::process::ChildStdout>,
    pub address: String,
    pub ids: PathBuf,
    pub json: PathBuf,
}

impl Sink {
    /// Starts a sink on 127.0.0.1 with a kernel-chosen port and the extra `flags`.
    pub fn start(dir: &Path, name: &str, flags: &[&str]) -> Sink {
        let ids = dir.join(format!("{name}.received"));
        let json = dir.join(format!("{name}.sink.json"));
        let mut child = Command::new(BINARY)
            .args([
                "sink",
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "2",
                "--duration",
                "120s",
            ])
            .arg("--ids-out")
            .arg(&ids)
            .arg("--json")
            .arg(&json)
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the sink starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first = String::new();
        let mut stdout = BufReader::new(stdout);
        stdout
            .read_line(&mut first)
            .expect("the sink prints its address");
        let address = first
            .trim()
            .rsplit(' ')
            .next()
            .expect("an address on the first line")
            .to_owned();
        assert!(
            address.starts_with("127.0.0.1:"),
            "unexpected first line {first:?}"
        );
        Sink {
            child,
            _stdout: stdout,
            address,
            ids,
            json,
        }
    }

    /// Stops the sink with SIGTERM and returns its JSON report.
    pub fn stop(&mut self) -> serde_json::Value {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = self.child.wait().expect("the sink exits");
        assert!(status.success(), "the sink failed: {status}");
        read_json(&self.json)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `send` against `address` with the given flags; returns its output and JSON report.
pub fn send(dir: &Path, name: &str, address: &str, flags: &[&str]) -> (Output, serde_json::Value) {
    let json = dir.join(format!("{name}.send.json"));
    let output = Command::new(BINARY)
        .args([
            "send",
            "--to",
            address,
            "--threads",
            "2",
            "--duration",
            "60s",
        ])
        .args(["--timeout", "20s", "--quiet"])
        .arg("--ids-out")
        .arg(dir.join(format!("{name}.sent")))
        .arg("--json")
        .arg(&json)
        .args(flags)
        .output()
        .expect("send runs");
    assert!(
        output.status.success(),
        "send failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output, read_json(&json))
}

/// Runs `check` on two logs; returns the exit code and the JSON report.
pub fn check(dir: &Path, sent: &Path, received: &Path, strict: bool) -> (i32, serde_json::Value) {
    let json = dir.join("check.json");
    let mut command = Command::new(BINARY);
    command
        .arg("check")
        .arg("--sent")
        .arg(sent)
        .arg("--received")
        .arg(received)
        .arg("--json")
        .arg(&json);
    if strict {
        command.arg("--strict");
    }
    let output = command.output().expect("check runs");
    let code = output.status.code().expect("check exits normally");
    (code, read_json(&json))
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the report exists");
    serde_json::from_str(&text).expect("the report is JSON")
}

pub fn number(report: &serde_json::Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {field} in {report}"))
}

/// An id log as id → (copies, copies marked corrupt).
pub fn id_log(path: &Path) -> BTreeMap<String, (u32, u32)> {
    let mut ids = BTreeMap::new();
    for line in std::fs::read_to_string(path)
        .expect("the id log exists")
        .lines()
    {
        let mut words = line.split_whitespace();
        let id = words.next().expect("an id on every line").to_owned();
        let entry = ids.entry(id).or_insert((0, 0));
        entry.0 += 1;
        if words.next() == Some("corrupt") {
            entry.1 += 1;
        }
    }
    ids
}
