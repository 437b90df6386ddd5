//! A real DNS server for the tests: dnsmasq (Debian package `dnsmasq-base`), authoritative for
//! the zone a test gives it (addresses, MX and TXT records: SPF, DKIM keys, DMARC policies), on
//! a free port of 127.0.0.1. Killed when dropped. Without dnsmasq the tests fail with the
//! package to install; they never skip.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long dnsmasq may take to start answering.
const SERVER_START_PATIENCE: Duration = Duration::from_secs(10);

/// A dnsmasq process serving the test zone on 127.0.0.1. Killed when dropped.
pub struct DnsServer {
    child: Option<Child>,
    pub address: SocketAddr,
    _directory: tempfile::TempDir,
}

impl DnsServer {
    /// Starts dnsmasq with `zone`, a list of its options (`--auth-zone=…`, `--mx-host=…`).
    pub fn start(zone: Vec<String>) -> DnsServer {
        let binary = dnsmasq_binary();
        let mut log = String::new();

        // The port is chosen free a moment before dnsmasq binds it; if something took it in
        // between, another port is tried.
        for _ in 0..5 {
            let directory = tempfile::tempdir().expect("temporary directory");
            let log_path = directory.path().join("dnsmasq.log");
            let port = free_udp_and_tcp_port();
            let log_file = std::fs::File::create(&log_path).expect("dnsmasq log file");
            let child = Command::new(&binary)
                .args([
                    "--no-daemon",
                    &format!("--port={port}"),
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--conf-file=/dev/null",
                    "--pid-file",
                    "--log-queries",
                ])
                .args(&zone)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .expect("start dnsmasq");
            let mut server = DnsServer {
                child: Some(child),
                address: SocketAddr::from(([127, 0, 0, 1], port)),
                _directory: directory,
            };
            if server.wait_until_answering() {
                return server;
            }

            server.stop();
            log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if !log.contains("Address already in use") {
                break;
            }
        }
        panic!("dnsmasq did not start answering; its log:\n{log}");
    }

    /// Polls with a real query until dnsmasq answers, or it exits, or patience runs out.
    fn wait_until_answering(&mut self) -> bool {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("probe timeout");
        let started = Instant::now();
        while started.elapsed() < SERVER_START_PATIENCE {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().expect("dnsmasq status").is_some() {
                    return false;
                }
            }
            let _ = socket.send_to(&soa_query(), self.address);
            let mut buffer = [0u8; 512];
            if socket.recv_from(&mut buffer).is_ok() {
                return true;
            }
        }
        false
    }

    /// Kills dnsmasq and waits until it has gone, so nothing answers on its port any more.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The dnsmasq options that make it authoritative for `zone` with a short TTL.
pub fn authoritative_zone(zone: &str) -> Vec<String> {
    vec![
        format!("--auth-zone={zone}"),
        format!("--auth-server=ns.{zone},127.0.0.1"),
        "--auth-ttl=60".to_owned(),
        format!("--auth-soa=1,hostmaster.{zone},1200,180,1209600"),
    ]
}

/// A dnsmasq option serving one TXT record. dnsmasq splits its text at commas into character
/// strings, and a character string holds at most 255 octets (RFC 1035 §3.3), so long texts
/// (DKIM keys) are cut into pieces that SPF, DKIM and DMARC readers join again.
pub fn txt_record(name: &str, text: &str) -> String {
    assert!(
        !text.contains(',') && text.is_ascii(),
        "a TXT text for dnsmasq must be ASCII without commas: {text:?}"
    );
    let pieces: Vec<&str> = text
        .as_bytes()
        .chunks(255)
        .map(|piece| std::str::from_utf8(piece).expect("ASCII"))
        .collect();
    format!("--txt-record={name},{}", pieces.join(","))
}

/// A UDP and TCP port on 127.0.0.1 that takes DNS queries and never answers them, for as long
/// as it is kept: the resolver waits until its own timeout.
pub struct SilentDnsServer {
    _udp: UdpSocket,
    _tcp: TcpListener,
    pub address: SocketAddr,
}

impl SilentDnsServer {
    pub fn start() -> SilentDnsServer {
        loop {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
            let address = udp.local_addr().expect("local address");
            if let Ok(tcp) = TcpListener::bind(address) {
                return SilentDnsServer {
                    _udp: udp,
                    _tcp: tcp,
                    address,
                };
            }
        }
    }
}

/// dnsmasq lives in /usr/sbin, which is not on every PATH.
fn dnsmasq_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let directories = std::env::split_paths(&path).chain([
        "/usr/sbin".into(),
        "/sbin".into(),
        "/usr/local/sbin".into(),
    ]);
    for directory in directories {
        let candidate = directory.join("dnsmasq");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "dnsmasq is not installed; these tests need a real DNS server: install the Debian \
         package `dnsmasq-base` (apt-get install --no-install-recommends dnsmasq-base)"
    );
}

fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A DNS query for the SOA of `example.test` (RFC 1035 §4.1), used only to see that the server
/// answers.
fn soa_query() -> Vec<u8> {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["example", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 6, 0, 1]);
    query
}
