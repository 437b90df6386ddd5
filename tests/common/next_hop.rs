//! Next hops for the delivery tests: Postfix's smtp-sink (a fast sink we did not write) and the
//! aiosmtpd-based `tests/peers/fault_smtp.py`, which can refuse, drop or hang on command.
//!
//! Both are real servers on loopback, started per test and killed when dropped.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::free_port;

/// Debian's Python, which carries python3-aiosmtpd (a pyenv `python3` on PATH may not).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// One message the faulty hop accepted.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Accepted {
    /// Client address and port: one value per connection.
    pub peer: String,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The X-Test-Id header.
    pub id: Option<String>,
    pub bytes: usize,
    pub content_type: String,
    pub report_type: Option<String>,
    pub subject: Option<String>,
    /// `TLSv1.3` when the message came over TLS, `None` in clear text.
    pub tls: Option<String>,
}

/// `tests/peers/fault_smtp.py` on a free loopback port.
pub struct FaultyHop {
    child: Child,
    pub address: SocketAddr,
    log: PathBuf,
    _directory: TempDir,
}

impl FaultyHop {
    /// Starts the hop with the given misbehaviour flags (see the script's usage).
    pub fn start(flags: &[&str]) -> FaultyHop {
        FaultyHop::start_on(free_port(), flags)
    }

    /// Starts the hop on a chosen loopback port: a next hop the relay could not reach before.
    pub fn start_on(port: u16, flags: &[&str]) -> FaultyHop {
        assert!(
            Path::new(SYSTEM_PYTHON).exists(),
            "{SYSTEM_PYTHON} is missing: install the Debian packages python3 and python3-aiosmtpd"
        );
        let directory = tempfile::tempdir().expect("temporary directory");
        let log = directory.path().join("accepted.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/fault_smtp.py");
        let mut child = Command::new(SYSTEM_PYTHON)
            .arg(script)
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log)
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fault_smtp.py");
        let mut ready = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut ready)
            .expect("read from fault_smtp.py");
        assert_eq!(
            ready.trim(),
            "ready",
            "fault_smtp.py did not start (is python3-aiosmtpd installed?)"
        );
        FaultyHop {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _directory: directory,
        }
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line from fault_smtp.py"))
            .collect()
    }

    /// Waits until at least `count` messages were accepted, at most `patience`.
    pub fn wait_for(&self, count: usize, patience: Duration) -> Vec<Accepted> {
        let started = Instant::now();
        loop {
            let accepted = self.accepted();
            if accepted.len() >= count || started.elapsed() > patience {
                return accepted;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FaultyHop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Postfix's smtp-sink, counting sessions and messages.
pub struct SmtpSink {
    child: Child,
    pub address: SocketAddr,
    output: PathBuf,
    _directory: TempDir,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        SmtpSink::start_with(&[])
    }

    /// smtp-sink with extra flags, e.g. `-e` (no ESMTP), `-8` (no 8BITMIME), `-p` (no
    /// PIPELINING).
    pub fn start_with(flags: &[&str]) -> SmtpSink {
        assert!(
            Path::new(SMTP_SINK).exists(),
            "{SMTP_SINK} is missing: install the Debian package postfix"
        );
        let directory = tempfile::tempdir().expect("temporary directory");
        let output = directory.path().join("sink.out");
        let port = free_port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(SMTP_SINK)
            .args(["-c", "-u", "nobody"])
            .args(flags)
            .args([&address.to_string(), "256"])
            .stdout(fs::File::create(&output).expect("sink output"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let started = Instant::now();
        while std::net::TcpStream::connect(address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "smtp-sink did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        SmtpSink {
            child,
            address,
            output,
            _directory: directory,
        }
    }

    /// `(sessions, messages)` from smtp-sink's `-c` counters. The probe connection made at
    /// start-up counts as one session.
    pub fn counts(&self) -> (u64, u64) {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.output) {
            let _ = file.read_to_string(&mut text);
        }
        let last = |key: &str| {
            text.rsplit(key)
                .next()
                .filter(|_| text.contains(key))
                .and_then(|rest| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                })
                .unwrap_or(0)
        };
        (last("sess="), last("mesg="))
    }

    /// Waits until smtp-sink has counted `messages`, at most `patience`.
    pub fn wait_for_messages(&self, messages: u64, patience: Duration) -> (u64, u64) {
        let started = Instant::now();
        loop {
            let counts = self.counts();
            if counts.1 >= messages || started.elapsed() > patience {
                return counts;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
