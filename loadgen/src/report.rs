//! The figures a run reports and their two renderings: the summary printed at the end and the
//! `--json FILE` document with the same numbers. This file owns latency recording (hdrhistogram,
//! microseconds, three significant digits) and the report field names, which docs/loadgen.md
//! documents and other tests parse. It does no network I/O.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency recorded exactly; anything slower is clamped (and still counted).
const LATENCY_MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Latency {
    pub fn new() -> Latency {
        // Invariant: bounds 1..=LATENCY_MAX_MICROS with 3 significant figures are valid
        // hdrhistogram parameters (low >= 1, high >= 2 * low, sigfig <= 5).
        let histogram = Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
            .expect("fixed histogram bounds are valid");
        Latency { histogram }
    }

    pub fn record(&mut self, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, LATENCY_MAX_MICROS);
        // Clamped into range above, so recording cannot fail.
        let _ = self.histogram.record(micros);
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both histograms share the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn summary(&self) -> LatencySummary {
        let at = |quantile: f64| {
            if self.histogram.is_empty() {
                0
            } else {
                self.histogram.value_at_quantile(quantile)
            }
        };
        LatencySummary {
            count: self.histogram.len(),
            mean_us: self.histogram.mean().round() as u64,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p99_9_us: at(0.999),
            max_us: if self.histogram.is_empty() {
                0
            } else {
                self.histogram.max()
            },
        }
    }
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

/// Percentiles of one latency, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    fn line(&self, name: &str) -> String {
        format!(
            "  {name:<12} p50 {:>9}  p90 {:>9}  p99 {:>9}  p99.9 {:>9}  max {:>9}  (n={})",
            micros(self.p50_us),
            micros(self.p90_us),
            micros(self.p99_us),
            micros(self.p99_9_us),
            micros(self.max_us),
            self.count
        )
    }
}

/// `1234` µs as `1.23ms`, short enough for a table.
fn micros(value: u64) -> String {
    match value {
        0..=999 => format!("{value}us"),
        1_000..=999_999 => format!("{:.2}ms", value as f64 / 1e3),
        _ => format!("{:.2}s", value as f64 / 1e6),
    }
}

/// Connection-level failures, by kind, so a relay's bug is easy to tell from a network one.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ConnectionErrors {
    /// The TCP connection could not be made (refused, unreachable, connect timeout).
    pub connect: u64,
    /// A reply did not arrive within --timeout.
    pub timeout: u64,
    /// The server closed the connection mid-transaction (or at the greeting).
    pub closed: u64,
    /// The server answered something that is not an SMTP reply, or an unexpected code.
    pub protocol: u64,
    /// Any other socket error (reset, broken pipe).
    pub io: u64,
}

impl ConnectionErrors {
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.closed + self.protocol + self.io
    }

    pub fn add(&mut self, other: &ConnectionErrors) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.closed += other.closed;
        self.protocol += other.protocol;
        self.io += other.io;
    }
}

/// Everything `send` reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SendReport {
    pub run: String,
    /// "closed" (a number of concurrent sessions) or "open" (a fixed rate).
    pub mode: &'static str,
    pub rate_target_per_second: Option<f64>,
    pub threads: usize,
    pub concurrency: usize,
    pub attempted: u64,
    pub accepted: u64,
    pub temporarily_refused: u64,
    pub refused: u64,
    pub connection_errors: u64,
    pub connection_error_kinds: ConnectionErrors,
    /// RCPT TO commands refused (4xx or 5xx) in transactions that carried on.
    pub recipients_refused: u64,
    pub connections: u64,
    pub elapsed_seconds: f64,
    /// Accepted messages per second of elapsed time.
    pub messages_per_second: f64,
    /// Accepted message octets (headers and body as sent) per second, in 10^6 octets.
    pub megabytes_per_second: f64,
    pub latency_connect: LatencySummary,
    pub latency_data_reply: LatencySummary,
    pub latency_transaction: LatencySummary,
    /// Id log lines that could not be written (the log is then incomplete).
    pub ids_out_errors: u64,
    /// The first connection error seen, in words, to tell a relay bug from a network one.
    pub first_error: Option<String>,
}

impl SendReport {
    pub fn print(&self) {
        let rate = match self.rate_target_per_second {
            Some(rate) => format!(", target {rate}/s"),
            None => String::new(),
        };
        println!(
            "postern-loadgen send: run {} ({} loop{rate}, {} sessions on {} threads)",
            self.run, self.mode, self.concurrency, self.threads
        );
        println!(
            "  attempted {}  accepted {}  temporarily refused {}  refused {}  connection errors {}",
            self.attempted,
            self.accepted,
            self.temporarily_refused,
            self.refused,
            self.connection_errors
        );
        let kinds = &self.connection_error_kinds;
        if kinds.total() > 0 {
            println!(
                "  connection errors: connect {}  timeout {}  closed {}  protocol {}  io {}",
                kinds.connect, kinds.timeout, kinds.closed, kinds.protocol, kinds.io
            );
            if let Some(error) = &self.first_error {
                println!("  first connection error: {error}");
            }
        }
        println!(
            "  {:.1} messages/s  {:.2} MB/s  {} connections  {} recipients refused  {:.2}s",
            self.messages_per_second,
            self.megabytes_per_second,
            self.connections,
            self.recipients_refused,
            self.elapsed_seconds
        );
        if self.mode == "open" {
            println!(
                "  latency counted from each message's intended start \
                 (coordinated omission corrected)"
            );
        }
        println!("{}", self.latency_connect.line("connect"));
        println!("{}", self.latency_data_reply.line("data reply"));
        println!("{}", self.latency_transaction.line("transaction"));
    }
}

/// Everything `sink` reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SinkReport {
    pub listen: String,
    pub threads: usize,
    pub sessions: u64,
    /// Messages answered with 250 (intact, corrupted and unidentified together).
    pub accepted: u64,
    /// Message octets accepted (after dot-unstuffing).
    pub bytes: u64,
    pub intact: u64,
    pub corrupted: u64,
    /// Accepted messages with no X-Loadgen-Id header.
    pub unidentified: u64,
    /// Accepted messages whose id this sink had already accepted.
    pub duplicates: u64,
    /// Fault injection: answered 451 / 554 / cut off without a reply at end of data.
    pub injected_4xx: u64,
    pub injected_5xx: u64,
    pub injected_drops: u64,
    /// Sessions that ended in the middle of a transaction (client gone, timeout).
    pub aborted_transactions: u64,
    /// TLS handshakes that failed (implicit TLS or after STARTTLS).
    pub tls_failures: u64,
    /// With --dkim-key: accepted messages with a verified signature, with signatures none of
    /// which verified, and with no signature.
    pub dkim_pass: u64,
    pub dkim_fail: u64,
    pub dkim_none: u64,
    pub elapsed_seconds: f64,
    pub messages_per_second: f64,
    pub megabytes_per_second: f64,
    pub ids_out_errors: u64,
}

impl SinkReport {
    pub fn add(&mut self, other: &SinkReport) {
        self.sessions += other.sessions;
        self.accepted += other.accepted;
        self.bytes += other.bytes;
        self.intact += other.intact;
        self.corrupted += other.corrupted;
        self.unidentified += other.unidentified;
        self.duplicates += other.duplicates;
        self.injected_4xx += other.injected_4xx;
        self.injected_5xx += other.injected_5xx;
        self.injected_drops += other.injected_drops;
        self.aborted_transactions += other.aborted_transactions;
        self.tls_failures += other.tls_failures;
        self.dkim_pass += other.dkim_pass;
        self.dkim_fail += other.dkim_fail;
        self.dkim_none += other.dkim_none;
        self.ids_out_errors += other.ids_out_errors;
    }

    pub fn print(&self) {
        println!(
            "postern-loadgen sink: {} on {} threads, {} sessions, {:.2}s",
            self.listen, self.threads, self.sessions, self.elapsed_seconds
        );
        println!(
            "  accepted {}  intact {}  corrupted {}  unidentified {}  duplicates {}",
            self.accepted, self.intact, self.corrupted, self.unidentified, self.duplicates
        );
        println!(
            "  injected: 4xx {}  5xx {}  drops {}  aborted transactions {}  TLS failures {}",
            self.injected_4xx,
            self.injected_5xx,
            self.injected_drops,
            self.aborted_transactions,
            self.tls_failures
        );
        if self.dkim_pass + self.dkim_fail + self.dkim_none > 0 {
            println!(
                "  DKIM: pass {}  fail {}  unsigned {}",
                self.dkim_pass, self.dkim_fail, self.dkim_none
            );
        }
        println!(
            "  {:.1} messages/s  {:.2} MB/s  {} bytes",
            self.messages_per_second, self.megabytes_per_second, self.bytes
        );
    }
}

/// Writes `report` as pretty JSON to `path`.
pub fn write_json(path: &Path, report: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").map_err(|error| {
        anyhow::anyhow!(
            "cannot write the report {}: {error}; check that its directory exists",
            path.display()
        )
    })
}
