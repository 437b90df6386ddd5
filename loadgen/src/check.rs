//! `postern-loadgen check`: the end-to-end proof. It joins the sender's log of accepted ids with
//! the sink's log of received ids and counts what was lost (sent, never received), corrupted
//! (received with a body that failed its checksum), duplicated (received more than once) and
//! unexpected (received, never recorded as sent). Loss and corruption fail the check; duplicates
//! are what at-least-once delivery allows after a retry, and unexpected ids what a sender sees
//! when a reply is lost after the relay made a message durable, so they fail only with
//! `--strict`. It reads files and prints; it touches no network.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::idlog::CORRUPT_MARK;

/// How many example ids of each kind are printed.
const EXAMPLES_MAX: usize = 10;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct CheckReport {
    /// Distinct ids in the sent log.
    pub sent: u64,
    /// Lines in the received log (copies included).
    pub received: u64,
    pub delivered: u64,
    pub lost: u64,
    pub corrupted: u64,
    /// Distinct ids received more than once.
    pub duplicated: u64,
    /// Extra copies beyond the first, over all duplicated ids.
    pub duplicate_copies: u64,
    pub unexpected: u64,
    /// Ids that appear more than once in the sent log (a sender bug, or two logs concatenated).
    pub sent_twice: u64,
    pub passed: bool,
    pub examples_lost: Vec<String>,
    pub examples_corrupted: Vec<String>,
    pub examples_duplicated: Vec<String>,
    pub examples_unexpected: Vec<String>,
}

#[derive(Default)]
struct Tally {
    sent: u32,
    received: u32,
    corrupt: bool,
}

/// Joins the two logs.
pub fn check(sent: &Path, received: &Path, strict: bool) -> anyhow::Result<CheckReport> {
    let sent_text = read(sent, "--sent")?;
    let received_text = read(received, "--received")?;
    Ok(join(&sent_text, &received_text, strict))
}

fn read(path: &Path, flag: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|error| {
        anyhow::anyhow!(
            "cannot read the {flag} log {}: {error}; give the file that send --ids-out or sink \
             --ids-out wrote",
            path.display()
        )
    })
}

/// The join itself, on the logs' text.
pub fn join(sent: &str, received: &str, strict: bool) -> CheckReport {
    let mut tallies: HashMap<&str, Tally> = HashMap::new();
    let mut report = CheckReport::default();

    for line in sent.lines() {
        let Some(id) = line.split_whitespace().next() else {
            continue;
        };
        let tally = tallies.entry(id).or_default();
        tally.sent += 1;
        if tally.sent == 2 {
            report.sent_twice += 1;
        }
    }
    for line in received.lines() {
        let mut words = line.split_whitespace();
        let Some(id) = words.next() else {
            continue;
        };
        report.received += 1;
        let tally = tallies.entry(id).or_default();
        tally.received += 1;
        tally.corrupt |= words.next() == Some(CORRUPT_MARK);
    }

    let mut ids: Vec<(&str, &Tally)> = tallies.iter().map(|(id, tally)| (*id, tally)).collect();
    ids.sort_unstable_by_key(|(id, _)| *id);
    for (id, tally) in ids {
        if tally.sent > 0 {
            report.sent += 1;
            if tally.received == 0 {
                report.lost += 1;
                example(&mut report.examples_lost, id);
            } else if !tally.corrupt {
                report.delivered += 1;
            }
        } else {
            report.unexpected += 1;
            example(&mut report.examples_unexpected, id);
        }
        if tally.corrupt {
            report.corrupted += 1;
            example(&mut report.examples_corrupted, id);
        }
        if tally.received > 1 {
            report.duplicated += 1;
            report.duplicate_copies += u64::from(tally.received - 1);
            example(&mut report.examples_duplicated, id);
        }
    }

    report.passed = report.lost == 0
        && report.corrupted == 0
        && (!strict
            || (report.duplicated == 0 && report.unexpected == 0 && report.sent_twice == 0));
    report
}

fn example(examples: &mut Vec<String>, id: &str) {
    if examples.len() < EXAMPLES_MAX {
        examples.push(id.to_owned());
    }
}

impl CheckReport {
    pub fn print(&self) {
        println!(
            "postern-loadgen check: {}",
            if self.passed { "PASSED" } else { "FAILED" }
        );
        println!(
            "  sent {}  received {}  delivered intact {}",
            self.sent, self.received, self.delivered
        );
        println!(
            "  lost {}  corrupted {}  duplicated {} ({} extra copies)  unexpected {}  \
             sent twice {}",
            self.lost,
            self.corrupted,
            self.duplicated,
            self.duplicate_copies,
            self.unexpected,
            self.sent_twice
        );
        for (name, examples) in [
            ("lost", &self.examples_lost),
            ("corrupted", &self.examples_corrupted),
            ("duplicated", &self.examples_duplicated),
            ("unexpected", &self.examples_unexpected),
        ] {
            if !examples.is_empty() {
                println!("  {name}: {}", examples.join(" "));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_join_passes() {
        let report = join("r-1\nr-2\n", "r-2\nr-1\n", true);
        assert!(report.passed);
        assert_eq!((report.sent, report.delivered, report.lost), (2, 2, 0));
    }

    #[test]
    fn loss_corruption_duplicates_and_strangers_are_counted() {
        let report = join(
            "r-1\nr-2\nr-3\nr-4\n",
            "r-1\nr-2 corrupt\nr-4\nr-4\nx-9\n",
            false,
        );
        assert_eq!(report.lost, 1);
        assert_eq!(report.examples_lost, vec!["r-3"]);
        assert_eq!(report.corrupted, 1);
        assert_eq!(report.duplicated, 1);
        assert_eq!(report.duplicate_copies, 1);
        assert_eq!(report.unexpected, 1);
        assert_eq!(report.delivered, 2);
        assert!(!report.passed);
    }

    #[test]
    fn duplicates_fail_only_when_strict() {
        assert!(join("r-1\n", "r-1\nr-1\n", false).passed);
        assert!(!join("r-1\n", "r-1\nr-1\n", true).passed);
    }
}
