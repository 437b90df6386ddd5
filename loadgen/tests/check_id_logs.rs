//! Scenario: `check` on hand-made id logs. Each kind of fault (a lost id, a corrupted one, a
//! duplicate, a stranger) must be counted, and loss or corruption must fail the check with
//! exit code 1; duplicates and strangers fail only under --strict.

mod common;

use common::{check, number};

fn logs(sent: &str, received: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let sent_path = dir.path().join("sent");
    let received_path = dir.path().join("received");
    std::fs::write(&sent_path, sent).unwrap();
    std::fs::write(&received_path, received).unwrap();
    (dir, sent_path, received_path)
}

#[test]
fn a_lost_message_fails_the_check() {
    let (dir, sent, received) = logs("r-0\nr-1\nr-2\n", "r-0\nr-2\n");
    let (code, report) = check(dir.path(), &sent, &received, false);
    assert_eq!(code, 1);
    assert_eq!(number(&report, "lost"), 1);
    assert_eq!(report["examples_lost"][0], "r-1");
}

#[test]
fn a_corrupted_message_fails_the_check() {
    let (dir, sent, received) = logs("r-0\nr-1\n", "r-0\nr-1 corrupt\n");
    let (code, report) = check(dir.path(), &sent, &received, false);
    assert_eq!(code, 1);
    assert_eq!(number(&report, "corrupted"), 1);
    assert_eq!(number(&report, "lost"), 0);
}

#[test]
fn a_duplicate_is_reported_and_fails_only_when_strict() {
    let (dir, sent, received) = logs("r-0\nr-1\n", "r-0\nr-1\nr-1\n");
    let (code, report) = check(dir.path(), &sent, &received, false);
    assert_eq!(code, 0);
    assert_eq!(number(&report, "duplicated"), 1);
    let (code, _) = check(dir.path(), &sent, &received, true);
    assert_eq!(code, 1);
}

#[test]
fn an_id_never_sent_is_reported() {
    let (dir, sent, received) = logs("r-0\n", "r-0\nq-5\n");
    let (code, report) = check(dir.path(), &sent, &received, false);
    assert_eq!(code, 0);
    assert_eq!(number(&report, "unexpected"), 1);
    let (code, _) = check(dir.path(), &sent, &received, true);
    assert_eq!(code, 1);
}
