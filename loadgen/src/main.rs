//! postern-loadgen: the SMTP load generator (`send`), the verifying sink (`sink`) and the
//! end-to-end proof (`check`) described in DESIGN.md §5 and docs/loadgen.md. This file owns the
//! command line: flags, their defaults and validation, and the exit codes (0 done or passed,
//! 1 check failed, 2 could not run). Everything else lives in the modules it calls.

mod check;
mod dkim;
mod idlog;
mod message;
mod reply;
mod report;
mod runtime;
mod safety;
mod send;
mod sink;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use message::SizeChoice;

/// Exit code when a run could not happen at all (bad flags, refused target, I/O error).
const EXIT_CANNOT_RUN: u8 = 2;

/// Exit code when `check` found loss or corruption (or, with --strict, anything odd).
const EXIT_CHECK_FAILED: u8 = 1;

#[derive(Parser)]
#[command(
    name = "postern-loadgen",
    version,
    about = "SMTP load generator and verifying sink"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send generated messages to one or more SMTP servers and report rates and latencies.
    Send(SendArgs),
    /// Accept messages, verify their checksums, record their ids and report.
    Sink(SinkArgs),
    /// Join a sender's and a sink's id logs: lost, duplicated, corrupted.
    Check(CheckArgs),
}

#[derive(Args)]
struct SendArgs {
    /// Target HOST:PORT; repeat the flag (or separate with commas) for several targets, which
    /// new connections use in turn.
    #[arg(long, required = true, value_delimiter = ',')]
    to: Vec<String>,
    /// Messages to send at most (the run also stops at --duration).
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Longest run, e.g. 30s, 10m, 8h (the run also stops at --messages).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent SMTP sessions.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Body size: 4096, 4k, 1m, or uniform:MIN-MAX (drawn from 32 evenly spaced sizes).
    #[arg(long, default_value = "4k", value_parser = SizeChoice::parse)]
    size: SizeChoice,
    /// Open loop: start messages at this fixed rate per second (latency then counts from each
    /// message's intended start). Without it, closed loop: each session sends back to back.
    #[arg(long)]
    rate: Option<f64>,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    /// Envelope sender (MAIL FROM) and From: header.
    #[arg(long, default_value = "loadgen@localhost")]
    from: String,
    /// Envelope recipient; with --recipients K > 1 the local part gets `+1` … `+K`.
    #[arg(long, default_value = "sink@localhost")]
    rcpt: String,
    /// Name given in EHLO.
    #[arg(long, default_value = "postern-loadgen.localhost")]
    helo: String,
    /// Messages per connection; 1 opens a new connection for each message, 0 never closes.
    #[arg(long, default_value_t = 0)]
    per_connection: u64,
    /// Do not pipeline the envelope even when the server offers PIPELINING.
    #[arg(long)]
    no_pipelining: bool,
    /// Longest wait for a connection or any reply.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Write the id of every accepted message to FILE, one per line.
    #[arg(long, value_name = "FILE")]
    ids_out: Option<PathBuf>,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    threads: ThreadArgs,
    /// Allow targets outside 127.0.0.0/8 and ::1. Only point a load generator at servers you
    /// run.
    #[arg(long)]
    allow_remote: bool,
    /// Use STARTTLS after the first EHLO (RFC 3207); a server that does not offer it counts as
    /// a connection error.
    #[arg(long, conflicts_with = "implicit_tls")]
    starttls: bool,
    /// Speak TLS from the first octet (RFC 8314, as on port 465).
    #[arg(long)]
    implicit_tls: bool,
    /// Verify the server's certificate against the PEM certificates in FILE.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Dangerous outside tests: accept any server certificate (the handshake is still checked).
    #[arg(long)]
    insecure: bool,
    /// Name to check the server certificate against (and to send as SNI).
    #[arg(long, default_value = "localhost")]
    tls_name: String,
    /// No live progress line, even on a terminal.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ThreadArgs {
    /// Executor threads; 0 means one per online core (each pinned to its core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Pin the threads to these cores in turn, e.g. 0,1. Without it, threads are pinned only
    /// when there is one per online core.
    #[arg(long, value_delimiter = ',')]
    cpus: Option<Vec<usize>>,
}

#[derive(Args)]
struct SinkArgs {
    /// Address to listen on, HOST:PORT; port 0 picks a free port (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:2526")]
    listen: String,
    /// Write the id of every message answered 250 to FILE (` corrupt` follows a bad body).
    #[arg(long, value_name = "FILE")]
    ids_out: Option<PathBuf>,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Share of messages answered `451 4.3.0` at end of data (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    fail_4xx: f64,
    /// Share of messages answered `554 5.3.0` at end of data.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    fail_5xx: f64,
    /// Share of messages whose connection is cut at end of data, without a reply.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    drop: f64,
    /// Wait this long before every end-of-data reply, e.g. 50ms.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    delay: Duration,
    /// Seed of the fault draws, for reproducible runs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after accepting this many messages.
    #[arg(long)]
    messages: Option<u64>,
    /// Stop after this long. Without it (or --messages), the sink runs until SIGINT/SIGTERM.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Close a session idle for this long.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    timeout: Duration,
    /// Largest message accepted (after unstuffing), e.g. 64m; larger ones get 552.
    #[arg(long, default_value = "64m", value_parser = message::parse_bytes)]
    size_max: usize,
    #[command(flatten)]
    threads: ThreadArgs,
    /// Allow listening on an address outside 127.0.0.0/8 and ::1.
    #[arg(long)]
    allow_remote: bool,
    /// Offer STARTTLS (RFC 3207).
    #[arg(long, conflicts_with = "implicit_tls")]
    starttls: bool,
    /// Speak TLS from the first octet on every connection (RFC 8314).
    #[arg(long)]
    implicit_tls: bool,
    /// PEM certificate chain for TLS; without it (and --tls-key) a self-signed certificate for
    /// localhost is made at start-up.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Verify DKIM signatures against the key of `selector._domainkey.domain`, whose DNS TXT
    /// record text (`v=DKIM1; k=…; p=…`) is in FILE. Repeat for several keys; DNS is never
    /// used.
    #[arg(long, value_name = "NAME=FILE")]
    dkim_key: Vec<String>,
}

#[derive(Args)]
struct CheckArgs {
    /// The sender's log: `send --ids-out`.
    #[arg(long, value_name = "FILE")]
    sent: PathBuf,
    /// The sink's log: `sink --ids-out`.
    #[arg(long, value_name = "FILE")]
    received: PathBuf,
    /// Also fail on duplicates, unexpected ids and ids sent twice.
    #[arg(long)]
    strict: bool,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send(args) => run_send(args),
        Command::Sink(args) => run_sink(args),
        Command::Check(args) => run_check(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("postern-loadgen: {error:#}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}

fn run_send(args: SendArgs) -> anyhow::Result<ExitCode> {
    if args.concurrency == 0 || args.recipients == 0 {
        anyhow::bail!("--concurrency and --recipients must be at least 1");
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            anyhow::bail!("--rate must be a positive number of messages per second");
        }
    }
    let mut targets = Vec::new();
    for target in &args.to {
        targets.extend(safety::resolve_checked(
            target,
            args.allow_remote,
            "target",
        )?);
    }
    let tls_args = TlsClientArgs {
        mode: tls_mode(args.starttls, args.implicit_tls),
        ca: args.ca.clone(),
        insecure: args.insecure,
        name: args.tls_name.clone(),
    };
    let options = send::SendOptions {
        targets,
        messages: args.messages,
        duration: args.duration,
        concurrency: args.concurrency,
        size: args.size,
        rate: args.rate,
        recipients: recipients(&args.rcpt, args.recipients)?,
        from: args.from,
        helo: args.helo,
        per_connection: args.per_connection,
        pipelining: !args.no_pipelining,
        timeout: args.timeout,
        ids_out: args.ids_out,
        json: args.json,
        threads: args.threads.threads,
        cpus: args.threads.cpus,
        quiet: args.quiet,
    };
    let tls = client_tls(&tls_args)?;
    let report = send::run(options, send::SendTls(std::sync::Arc::new(tls)))?;
    report.print();
    Ok(ExitCode::SUCCESS)
}

struct TlsClientArgs {
    mode: tls::TlsMode,
    ca: Option<PathBuf>,
    insecure: bool,
    name: String,
}

fn tls_mode(starttls: bool, implicit: bool) -> tls::TlsMode {
    match (starttls, implicit) {
        (true, _) => tls::TlsMode::StartTls,
        (false, true) => tls::TlsMode::Implicit,
        (false, false) => tls::TlsMode::None,
    }
}

fn client_tls(args: &TlsClientArgs) -> anyhow::Result<send::ClientTls> {
    let connector = match args.mode {
        tls::TlsMode::None => None,
        _ => Some(futures_rustls::TlsConnector::from(tls::client_config(
            args.ca.as_deref(),
            args.insecure,
        )?)),
    };
    Ok(send::ClientTls {
        mode: args.mode,
        connector,
        name: tls::server_name(&args.name)?,
    })
}

/// `sink@localhost` with 3 recipients: `sink+1@localhost`, `sink+2@localhost`, ….
fn recipients(rcpt: &str, count: usize) -> anyhow::Result<Vec<String>> {
    if count == 1 {
        return Ok(vec![rcpt.to_owned()]);
    }
    let (local, domain) = rcpt
        .rsplit_once('@')
        .ok_or_else(|| anyhow::anyhow!("--rcpt `{rcpt}` needs a domain (local@domain)"))?;
    Ok((1..=count)
        .map(|i| format!("{local}+{i}@{domain}"))
        .collect())
}

fn run_sink(args: SinkArgs) -> anyhow::Result<ExitCode> {
    if args.fail_4xx + args.fail_5xx + args.drop > 1.0 {
        anyhow::bail!("--fail-4xx, --fail-5xx and --drop add up to more than 1.0");
    }
    let listen = safety::resolve_checked(&args.listen, args.allow_remote, "listen address")?[0];
    let dkim = if args.dkim_key.is_empty() {
        None
    } else {
        let keys = dkim::DkimKeys::from_arguments(&args.dkim_key)?;
        Some(std::sync::Arc::new(dkim::DkimVerifier::new(keys)?))
    };
    let tls_mode = tls_mode(args.starttls, args.implicit_tls);
    let tls = match tls_mode {
        tls::TlsMode::None => None,
        _ => Some(tls::server_config(
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
        )?),
    };
    let options = sink::SinkOptions {
        listen,
        threads: args.threads.threads,
        cpus: args.threads.cpus,
        ids_out: args.ids_out,
        json: args.json,
        fail_4xx: args.fail_4xx,
        fail_5xx: args.fail_5xx,
        drop: args.drop,
        delay: args.delay,
        seed: args.seed,
        messages: args.messages,
        duration: args.duration,
        timeout: args.timeout,
        message_size_max_bytes: args.size_max as u64,
        tls_mode,
        tls,
        dkim,
    };
    let bound = sink::bind(options)?;
    // Scripts and tests read this line to learn the port; it goes out before any session.
    println!("postern-loadgen sink listening on {}", bound.address);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let report = bound.run()?;
    report.print();
    Ok(ExitCode::SUCCESS)
}

fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = check::check(&args.sent, &args.received, args.strict)?;
    report.print();
    if let Some(path) = &args.json {
        report::write_json(path, &report)?;
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

/// `250ms`, `30s`, `10m`, `8h`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 250ms, 30s, 10m, 8h)"))?;
    let seconds = match unit {
        "ms" => number / 1e3,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("`{text}`: {error}"))
}

/// A share between 0.0 and 1.0.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("`{text}` is not a share between 0.0 and 1.0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn recipients_are_numbered() {
        assert_eq!(
            recipients("a@b", 2).unwrap(),
            vec!["a+1@b".to_owned(), "a+2@b".to_owned()]
        );
        assert_eq!(recipients("a@b", 1).unwrap(), vec!["a@b".to_owned()]);
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
