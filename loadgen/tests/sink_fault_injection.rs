//! Scenario: the sink injects faults and `send` must account for every one of them. A share
//! of 451 replies must come back as "temporarily refused", 554 as "refused", cut connections as
//! connection errors, and the ids send logged as accepted must be exactly those the sink logged.

mod common;

use common::{check, id_log, number, send, Sink};

#[test]
fn injected_4xx_and_5xx_are_counted_as_refusals_and_the_logs_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::start(
        dir.path(),
        "f",
        &["--fail-4xx", "0.2", "--fail-5xx", "0.1", "--seed", "7"],
    );
    let (_, sent) = send(
        dir.path(),
        "f",
        &sink.address,
        &[
            "--messages",
            "500",
            "--concurrency",
            "6",
            "--per-connection",
            "5",
        ],
    );
    let received = sink.stop();

    let injected_4xx = number(&received, "injected_4xx");
    let injected_5xx = number(&received, "injected_5xx");
    // With 500 draws at 20% and 10%, far more than zero of each (the seed fixes the draws).
    assert!(injected_4xx > 50, "{received}");
    assert!(injected_5xx > 20, "{received}");
    assert_eq!(number(&sent, "temporarily_refused"), injected_4xx);
    assert_eq!(number(&sent, "refused"), injected_5xx);
    assert_eq!(number(&sent, "connection_errors"), 0);
    assert_eq!(number(&sent, "accepted"), 500 - injected_4xx - injected_5xx);
    assert_eq!(number(&sent, "accepted"), number(&received, "intact"));
    assert_eq!(id_log(&dir.path().join("f.sent")), id_log(&sink.ids));

    let (code, report) = check(dir.path(), &dir.path().join("f.sent"), &sink.ids, true);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn dropped_connections_are_connection_errors_and_never_logged_as_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::start(dir.path(), "d", &["--drop", "0.1", "--seed", "3"]);
    let (_, sent) = send(
        dir.path(),
        "d",
        &sink.address,
        &["--messages", "300", "--concurrency", "4"],
    );
    let received = sink.stop();

    let drops = number(&received, "injected_drops");
    assert!(drops > 10, "{received}");
    assert_eq!(number(&sent, "connection_errors"), drops);
    assert_eq!(number(&sent["connection_error_kinds"], "closed"), drops);
    assert_eq!(number(&sent, "accepted"), 300 - drops);
    assert_eq!(number(&received, "aborted_transactions"), 0);
    assert_eq!(id_log(&dir.path().join("d.sent")), id_log(&sink.ids));
}
