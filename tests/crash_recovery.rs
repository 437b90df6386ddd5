//! Scenario: `kill -9` under concurrent load, again and again. Every message that was answered
//! `250` must be in the spool after the restart — the durability promise itself.
//!
//! Each trial runs several senders against a real relay, kills it with SIGKILL at a random
//! moment (the seed is printed so a failure can be replayed), restarts it on the same spool,
//! and checks that every acknowledged id is recovered. Messages in flight at the kill may or may
//! not be there; duplicates are impossible here (no sender retries) and are counted anyway.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Options, Relay};

const TRIALS: usize = 20;
const SENDERS: usize = 8;
const MESSAGES_PER_CONNECTION: usize = 20;

/// A tiny deterministic generator, so a failing seed can be replayed with POSTERN_CRASH_SEED.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn every_acknowledged_message_survives_kill_9() {
    let seed = std::env::var("POSTERN_CRASH_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    println!("crash_recovery seed: {seed} (replay with POSTERN_CRASH_SEED={seed})");
    let mut random = XorShift(seed);

    let mut relay = Relay::start(Options {
        shards: Some(2),
        ..Options::default()
    });
    let mut acknowledged_total = 0;
    for trial in 0..TRIALS {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let senders: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
                let address = relay.address;
                thread::spawn(move || {
                    send_until_stopped(address, trial, sender, &stop, &acknowledged)
                })
            })
            .collect();

        thread::sleep(Duration::from_millis(30 + random.next() % 400));
        relay.kill_hard();
        stop.store(true, Ordering::SeqCst);
        for sender in senders {
            sender.join().expect("sender thread");
        }

        relay.restart();
        let recovered = recovered_ids(&relay);
        let acknowledged = acknowledged.lock().expect("ids").clone();
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|id| !recovered.contains_key(*id))
            .collect();
        assert!(
            lost.is_empty(),
            "trial {trial} (seed {seed}): {} of {} acknowledged messages lost: {:?}",
            lost.len(),
            acknowledged.len(),
            &lost[..lost.len().min(10)]
        );
        let duplicated = recovered.values().filter(|count| **count > 1).count();
        assert_eq!(
            duplicated, 0,
            "trial {trial}: duplicated messages in the spool"
        );
        acknowledged_total += acknowledged.len();
    }
    println!(
        "crash_recovery: {acknowledged_total} acknowledged messages over {TRIALS} kills, none lost"
    );
    assert!(
        acknowledged_total > 0,
        "no message was acknowledged: the test tested nothing"
    );
}

/// Every X-Test-Id in the recovered spool, with how often it occurs.
fn recovered_ids(relay: &Relay) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for message in relay.stored() {
        let text = message.message_text();
        if let Some(id) = text
            .lines()
            .find_map(|line| line.strip_prefix("X-Test-Id: "))
        {
            *ids.entry(id.trim().to_owned()).or_insert(0) += 1;
        }
    }
    ids
}

/// Sends messages over reused connections until told to stop; records each id answered 250.
fn send_until_stopped(
    address: SocketAddr,
    trial: usize,
    sender: usize,
    stop: &AtomicBool,
    acknowledged: &Mutex<Vec<String>>,
) {
    let mut sequence = 0;
    let mut seen = BTreeSet::new();
    while !stop.load(Ordering::SeqCst) {
        let Ok(stream) = TcpStream::connect(address) else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut connection = Connection {
            reader: BufReader::new(stream),
        };
        if connection.reply() != Some(220) || connection.command("EHLO crash.test") != Some(250) {
            continue;
        }
        for _ in 0..MESSAGES_PER_CONNECTION {
            sequence += 1;
            let id = format!("t{trial}-s{sender}-m{sequence}");
            match connection.transaction(&id) {
                Some(250) => {
                    assert!(seen.insert(id.clone()));
                    acknowledged.lock().expect("ids").push(id);
                }
                Some(_) => {}
                None => break,
            }
        }
    }
}

struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn command(&mut self, line: &str) -> Option<u16> {
        self.reader
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .ok()?;
        self.reply()
    }

    fn reply(&mut self) -> Option<u16> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 || line.len() < 4 {
                return None;
            }
            if line.as_bytes()[3] != b'-' {
                return line[..3].parse().ok();
            }
        }
    }

    /// One transaction, pipelined up to DATA as RFC 2920 allows; the reply code to the end of
    /// data, or None if the connection broke.
    fn transaction(&mut self, id: &str) -> Option<u16> {
        let envelope = "MAIL FROM:<crash@client.test>\r\nRCPT TO:<r@example.com>\r\nDATA\r\n";
        self.reader.get_mut().write_all(envelope.as_bytes()).ok()?;
        let codes = [self.reply()?, self.reply()?, self.reply()?];
        if codes != [250, 250, 354] {
            return Some(codes[0]);
        }
        let body = format!(
            "X-Test-Id: {id}\r\nSubject: crash trial\r\n\r\n{}\r\n.\r\n",
            "0123456789".repeat(40)
        );
        self.reader.get_mut().write_all(body.as_bytes()).ok()?;
        self.reply()
    }
}
