//! Shared harness for the integration tests: a real `postern` process on loopback with its own
//! spool in a temporary directory, and a small blocking SMTP client that reads whole replies.
//!
//! Each test file is one scenario; they all start the binary Cargo built for this test run, so
//! what is tested is exactly what an operator runs.

#![allow(dead_code)] // Each scenario file uses a different part of the harness.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod certificates;
pub mod dkim;
pub mod dns_server;
pub mod next_hop;
pub mod verification;

/// How long a test waits for the relay to start listening.
const START_PATIENCE: Duration = Duration::from_secs(20);

/// How long the client waits for one reply before the test fails.
pub const REPLY_PATIENCE: Duration = Duration::from_secs(15);

/// Configuration pieces a scenario may set; everything else is the harness default.
#[derive(Default)]
pub struct Options {
    /// Lines inside `[server]`, after hostname/spool/shards.
    pub server: &'static str,
    /// Lines inside the first `[[listener]]`, after its address (`tls = "starttls"`).
    pub listener: String,
    /// Lines inside `[relay]`; default: relay for 127.0.0.0/8.
    pub relay: Option<&'static str>,
    /// Lines inside `[smtp]`.
    pub smtp: &'static str,
    /// Number of shards; default 1 so per-shard limits are predictable.
    pub shards: Option<usize>,
    /// The whole `[[route]]` part. Default: every domain to a smart host on a port where
    /// nothing listens, so accepted mail stays in the spool for the test to inspect.
    pub routes: Option<String>,
    /// Lines inside `[delivery]`.
    pub delivery: String,
    /// Whole sections appended at the end of the file (`[admin]`, `[dns]`).
    pub extra: String,
}

/// A `[[route]]` for every domain through one smart host, with short idle connections.
pub fn smarthost_route(address: SocketAddr) -> String {
    format!("[[route]]\ndomains = [\"*\"]\nsmarthost = \"{address}\"\ntls = \"none\"\n")
}

/// A running relay. Killed when dropped.
pub struct Relay {
    child: Child,
    pub address: SocketAddr,
    pub spool: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    _directory: TempDir,
}

pub fn postern_binary() -> &'static str {
    env!("CARGO_BIN_EXE_postern")
}

/// A port that was free a moment ago. The tiny race with other processes is acceptable in tests.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl Relay {
    pub fn start(options: Options) -> Relay {
        let directory = tempfile::tempdir().expect("temporary directory");
        let spool = directory.path().join("spool");
        let port = free_port();
        let relay = options
            .relay
            .unwrap_or("allow_networks = [\"127.0.0.0/8\"]\nlocal_domains = [\"example.com\"]");
        let routes = options.routes.unwrap_or_else(|| {
            // Two ephemeral ports picked in a row may be the same one; the relay must not
            // deliver to its own listener.
            let dead = std::iter::repeat_with(free_port)
                .find(|&candidate| candidate != port)
                .expect("an endless supply of ports");
            smarthost_route(SocketAddr::from(([127, 0, 0, 1], dead)))
        });
        let config = format!(
            "[server]\nhostname = \"relay.test\"\nspool = \"{spool}\"\nshards = {shards}\n{server}\n\n\
             [[listener]]\naddress = \"127.0.0.1:{port}\"\n{listener}\n\n\
             [relay]\n{relay}\n\n[smtp]\n{smtp}\n\n{routes}\n\
             [delivery]\n{delivery}\n\n[log]\nlevel = \"debug\"\n\n{extra}\n",
            spool = spool.display(),
            shards = options.shards.unwrap_or(1),
            server = options.server,
            listener = options.listener,
            smtp = options.smtp,
            delivery = options.delivery,
            extra = options.extra,
        );
        let config_path = directory.path().join("postern.toml");
        fs::write(&config_path, config).expect("write config");
        let log_path = directory.path().join("postern.log");
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let child = spawn_relay(&config_path, &log_path);
        let mut relay = Relay {
            child,
            address,
            spool,
            config_path,
            log_path,
            _directory: directory,
        };
        relay.wait_until_listening();
        relay
    }

    /// Kills the relay with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the relay again on the same configuration and spool, after a stop or a kill.
    pub fn restart(&mut self) {
        let _ = fs::remove_file(&self.log_path);
        self.child = spawn_relay(&self.config_path, &self.log_path);
        self.wait_until_listening();
    }

    fn wait_until_listening(&mut self) {
        let started = Instant::now();
        while started.elapsed() < START_PATIENCE {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "postern exited during start-up with {status}:\n{}",
                    self.log()
                );
            }
            if self.log().contains("postern ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("postern did not become ready:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects and reads the greeting, which must be a 220.
    pub fn connect(&self) -> Client {
        let mut client = Client::connect(self.address);
        let greeting = client.reply();
        assert_eq!(greeting.code, 220, "greeting: {greeting:?}");
        client
    }

    /// Every message the store holds: (envelope lines, message bytes).
    pub fn stored(&self) -> Vec<Stored> {
        stored_messages(&self.spool)
    }

    /// Sends SIGTERM and waits for the process to exit, at most `patience`.
    pub fn terminate(&mut self, patience: Duration) -> ExitStatus {
        signal(self.child.id(), libc_sigterm());
        self.wait(patience)
    }

    /// Sends SIGHUP: reload certificates (and whatever else reloads).
    pub fn hangup(&self) {
        signal(self.child.id(), 1);
    }

    pub fn wait(&mut self, patience: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if started.elapsed() > patience {
                let _ = self.child.kill();
                panic!("postern did not exit within {patience:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size of the relay process, in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_relay(config_path: &Path, log_path: &Path) -> Child {
    let log = fs::File::create(log_path).expect("log file");
    Command::new(postern_binary())
        .args(["serve", "--config"])
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start postern")
}

fn libc_sigterm() -> i32 {
    15
}

fn signal(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// One stored message, split as `postern spool export` writes it.
#[derive(Debug)]
pub struct Stored {
    pub path: PathBuf,
    pub envelope: Vec<String>,
    pub message: Vec<u8>,
}

impl Stored {
    pub fn message_text(&self) -> String {
        String::from_utf8_lossy(&self.message).into_owned()
    }

    /// The message without our Received header (everything after its first line break that
    /// does not start with whitespace).
    pub fn body_after_received(&self) -> Vec<u8> {
        let text = &self.message;
        assert!(text.starts_with(b"Received: "), "no Received header first");
        let mut position = 0;
        loop {
            let end = position + find(&text[position..], b"\r\n").expect("header line end") + 2;
            position = end;
            if !matches!(text.get(position), Some(b' ') | Some(b'\t')) {
                return text[position..].to_vec();
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Every queued message in `spool`, read with `postern spool export` (the operator's tool), so
/// the tests see exactly what recovery would see after a crash.
/// The segment files (`seg-*.log`) of one generation directory, in log order. The spare
/// segment (`spare.zero`) holds no records and is left out.
pub fn generation_segments(directory: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    found.sort();
    found
}

/// Segment files of shard 0, over every generation.
pub fn shard_0_segment_count(spool: &Path) -> usize {
    let Ok(generations) = fs::read_dir(spool.join("shard-0")) else {
        return 0;
    };
    generations
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|generation| generation_segments(&generation.path()).len())
        .sum()
}

pub fn stored_messages(spool: &Path) -> Vec<Stored> {
    let output = tempfile::tempdir().expect("export directory");
    let status = Command::new(postern_binary())
        .args(["spool", "export", "--spool"])
        .arg(spool)
        .arg("--output")
        .arg(output.path())
        .stdout(Stdio::null())
        .status()
        .expect("run postern spool export");
    assert!(status.success(), "postern spool export failed: {status}");

    let mut found = Vec::new();
    for entry in fs::read_dir(output.path())
        .expect("export directory")
        .flatten()
    {
        let path = entry.path();
        let bytes = fs::read(&path).expect("read exported message");
        let split = find(&bytes, b"DATA\r\n").expect("envelope ends with DATA");
        let envelope = String::from_utf8_lossy(&bytes[..split])
            .lines()
            .map(str::to_owned)
            .collect();
        found.push(Stored {
            path,
            envelope,
            message: bytes[split + 6..].to_vec(),
        });
    }
    found
}

/// An SMTP reply: the code and the text of each line (without the code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The enhanced status code (RFC 3463) at the start of the first line, if any.
    pub fn enhanced(&self) -> &str {
        self.lines
            .first()
            .and_then(|line| line.split_whitespace().next())
            .unwrap_or("")
    }
}

/// A blocking SMTP client that speaks raw bytes, so tests can send anything.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).expect("connect to postern");
        stream
            .set_read_timeout(Some(REPLY_PATIENCE))
            .expect("read timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("send");
    }

    /// Sends `line` with CRLF and returns the reply.
    pub fn command(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Reads one (possibly multi-line) reply.
    pub fn reply(&mut self) -> Reply {
        self.try_reply().expect("a reply from postern")
    }

    /// Reads one reply, or None if the connection closed first.
    pub fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(error) => panic!("reading a reply failed: {error} (after {lines:?})"),
            }
            assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
            let code: u16 = line[..3].parse().expect("reply code");
            let more = line.as_bytes()[3] == b'-';
            lines.push(line[4..].trim_end().to_owned());
            if !more {
                return Some(Reply { code, lines });
            }
        }
    }

    /// True when the server has closed the connection (EOF on the next read).
    pub fn is_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }

    /// EHLO, MAIL, RCPT (each must succeed), DATA (354), then `body` and the terminator; returns
    /// the reply to the end of data.
    pub fn send_message(&mut self, from: &str, to: &[&str], body: &[u8]) -> Reply {
        assert_eq!(self.command("EHLO client.test").code, 250);
        assert_eq!(self.command(&format!("MAIL FROM:<{from}>")).code, 250);
        for recipient in to {
            assert_eq!(self.command(&format!("RCPT TO:<{recipient}>")).code, 250);
        }
        assert_eq!(self.command("DATA").code, 354);
        self.send(body);
        self.send(b".\r\n");
        self.reply()
    }
}

/// The open flags of descriptor `fd` of process `pid`, from the octal `flags:` line of fdinfo.
pub fn open_flags(pid: u32, fd: &str) -> Option<i32> {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let octal = info.lines().find_map(|line| line.strip_prefix("flags:"))?;
    i32::from_str_radix(octal.trim(), 8).ok()
}

/// Polls `condition` until it holds or `patience` runs out; returns whether it held. For state
/// that another process settles asynchronously (a session's cleanup after a disconnect).
pub fn eventually(patience: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if started.elapsed() > patience {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sum over shards of one counter on `/metrics` of the admin API at `admin`.
pub fn metric_total(admin: SocketAddr, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(admin).expect("connect to the admin API");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The loadgen binary beside the relay's (`cargo test --workspace` builds both); built here
/// when a single test file is run on its own.
pub fn loadgen_binary() -> PathBuf {
    let beside = PathBuf::from(postern_binary()).with_file_name("postern-loadgen");
    if !beside.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "postern-loadgen"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p postern-loadgen");
        assert!(status.success(), "cargo build -p postern-loadgen failed");
    }
    beside
}
