//! Scenario: a message larger than the sink's --size-max is refused with a 5xx after the data,
//! send counts it as refused (not as a connection error), the session carries on, and nothing
//! refused reaches either id log.

mod common;

use common::{id_log, number, send, Sink};

#[test]
fn messages_over_the_size_limit_are_refused_and_the_session_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::start(dir.path(), "z", &["--size-max", "8k"]);
    let (_, sent) = send(
        dir.path(),
        "z",
        &sink.address,
        &[
            "--messages",
            "60",
            "--concurrency",
            "2",
            "--size",
            "uniform:1k-16k",
        ],
    );
    let received = sink.stop();

    let refused = number(&sent, "refused");
    assert!(refused > 0 && refused < 60, "{sent}");
    assert_eq!(number(&sent, "accepted") + refused, 60);
    assert_eq!(number(&sent, "connection_errors"), 0);
    // Reused sessions survive each refusal (RSET, then the next message).
    assert_eq!(number(&sent, "connections"), 2);
    assert_eq!(number(&received, "accepted"), number(&sent, "accepted"));
    assert_eq!(id_log(&dir.path().join("z.sent")), id_log(&sink.ids));
}
