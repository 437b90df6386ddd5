//! Scenario: a shard asks the control thread DNS questions, answered by a real DNS server
//! (dnsmasq, authoritative for `example.test`) on 127.0.0.1: MX order, implicit and null MX,
//! NXDOMAIN, a name without mail host, A/AAAA, a server that never answers, and answers served
//! from the cache after the server is gone.
//!
//! The shard side is a glommio executor holding a `ControlClient`, exactly as a shard holds one;
//! the control thread is the real one. dnsmasq comes from the Debian package `dnsmasq-base`
//! (installed by `.ci/run`); without it these tests fail, they never skip.

use std::future::Future;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

mod common;

use common::dns_server::DnsServer;
use glommio::{LocalExecutorBuilder, Placement};
use postern::config::{DnsConfig, VerificationConfig};
use postern::control::Control;
use postern::shard::link::{self, ControlClient, DnsFailure, MxAnswer, MxHost};

/// The longest any one test may take, start to finish.
const TEST_PATIENCE: Duration = Duration::from_secs(60);

/// How long a test waits for one DNS answer through the control thread.
const ANSWER_PATIENCE: Duration = Duration::from_secs(10);

/// The TTL of every record in the test zone, and so how long answers stay cached.
const ZONE_TTL_SECONDS: u32 = 300;

/// The test zone, as dnsmasq options.
fn zone_options() -> Vec<String> {
    let ttl = ZONE_TTL_SECONDS;
    [
        "--auth-zone=example.test".to_owned(),
        "--auth-server=ns.example.test,127.0.0.1".to_owned(),
        format!("--auth-ttl={ttl}"),
        // serial, hostmaster, refresh, retry, expiry; the SOA minimum (the negative TTL of
        // RFC 2308 §4) is dnsmasq's own.
        "--auth-soa=1,hostmaster.example.test,1200,180,1209600".to_owned(),
        // Three exchangers, two of equal preference.
        "--mx-host=mx.example.test,mx1.example.test,10".to_owned(),
        "--mx-host=mx.example.test,mx2.example.test,20".to_owned(),
        "--mx-host=mx.example.test,mx3.example.test,20".to_owned(),
        "--host-record=mx1.example.test,127.0.0.11".to_owned(),
        // No MX, but addresses: the implicit MX.
        "--host-record=implicit.example.test,127.0.0.12,::1".to_owned(),
        "--host-record=v6only.example.test,::2".to_owned(),
        // RFC 7505 null MX: preference 0, exchange "." (the root, one zero octet), raw RDATA.
        "--dns-rr=nullmx.example.test,15,000000".to_owned(),
        // Exists (a TXT record) but has neither MX nor address.
        "--txt-record=nomail.example.test,no mail here".to_owned(),
    ]
    .into()
}

/// Starts a control thread resolving with `servers`, runs `body` on a glommio executor with the
/// shard's `ControlClient`, then stops the control thread. The whole run is bounded by
/// `TEST_PATIENCE`.
fn with_control<F, Fut>(servers: Vec<SocketAddr>, body: F)
where
    F: FnOnce(ControlClient) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        let (control_link, mut shard_links) = link::links(1);
        let dns = DnsConfig { servers };
        let verification = test_verification();
        let control = Control::start(
            control_link,
            Duration::from_secs(1),
            &dns,
            &verification,
            "relay.test",
            None,
            postern::control::reload::Reloadable::default(),
        )
        .expect("start the control thread");
        let client = shard_links.remove(0).control;
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .make()
            .expect("glommio executor");
        executor.run(body(client));
        control.stop();
        let _ = done_tx.send(());
    });

    match done_rx.recv_timeout(TEST_PATIENCE) {
        Ok(()) => runner.join().expect("test body"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked; re-raise its panic here.
            if let Err(panic) = runner.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test did not finish within {TEST_PATIENCE:?}")
        }
    }
}

/// Verification as the defaults have it; these tests never ask for it.
fn test_verification() -> VerificationConfig {
    VerificationConfig {
        enabled: true,
        authserv_id: "relay.test".to_owned(),
        dmarc_reject: false,
        timeout: Duration::from_secs(10),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn host(preference: u16, exchange: &str) -> MxHost {
    MxHost {
        preference,
        exchange: exchange.to_owned(),
    }
}

#[test]
fn mx_hosts_come_lowest_preference_first_with_ties_shuffled() {
    let server = DnsServer::start(zone_options());
    with_control(vec![server.address], |client| async move {
        let mut first_of_the_tie = std::collections::HashSet::new();
        for _ in 0..64 {
            let answer = client.resolve_mx("mx.example.test", ANSWER_PATIENCE).await;
            let Ok(MxAnswer::Hosts(hosts)) = answer else {
                panic!("expected MX hosts, got {answer:?}");
            };
            assert_eq!(hosts.len(), 3, "{hosts:?}");
            assert_eq!(hosts[0], host(10, "mx1.example.test"));
            assert_eq!(hosts[1].preference, 20);
            assert_eq!(hosts[2].preference, 20);
            first_of_the_tie.insert(hosts[1].exchange.clone());
        }

        // RFC 5321 §5.1: equal preferences in random order. 64 identical shuffles: 2^-63.
        let expected = ["mx2.example.test", "mx3.example.test"].map(String::from);
        assert_eq!(first_of_the_tie, expected.into_iter().collect());

        // Upper case and a trailing root dot name the same domain.
        let answer = client.resolve_mx("MX.Example.Test.", ANSWER_PATIENCE).await;
        assert!(matches!(answer, Ok(MxAnswer::Hosts(ref hosts)) if hosts.len() == 3));
    });
}

#[test]
fn a_domain_with_addresses_but_no_mx_is_its_own_exchanger() {
    let server = DnsServer::start(zone_options());
    with_control(vec![server.address], |client| async move {
        let answer = client
            .resolve_mx("implicit.example.test", ANSWER_PATIENCE)
            .await;
        assert_eq!(answer, Ok(MxAnswer::Implicit));

        let answer = client
            .resolve_mx("v6only.example.test", ANSWER_PATIENCE)
            .await;
        assert_eq!(answer, Ok(MxAnswer::Implicit), "an AAAA record is enough");
    });
}

#[test]
fn a_null_mx_says_the_domain_takes_no_mail() {
    let server = DnsServer::start(zone_options());
    with_control(vec![server.address], |client| async move {
        let answer = client
            .resolve_mx("nullmx.example.test", ANSWER_PATIENCE)
            .await;
        assert_eq!(answer, Ok(MxAnswer::NullMx));
    });
}

#[test]
fn nxdomain_is_a_permanent_no_such_domain() {
    let server = DnsServer::start(zone_options());
    with_control(vec![server.address], |client| async move {
        let answer = client
            .resolve_mx("absent.example.test", ANSWER_PATIENCE)
            .await;
        assert_eq!(answer, Err(DnsFailure::NoSuchDomain));
        let answer = client
            .resolve_host("absent.example.test", ANSWER_PATIENCE)
            .await;
        assert_eq!(answer, Err(DnsFailure::NoSuchDomain));
        assert!(DnsFailure::NoSuchDomain.is_permanent());

        // RFC 6761 §6.4: `.invalid` names never exist; the resolver says so without asking.
        let answer = client.resolve_mx("anything.invalid", ANSWER_PATIENCE).await;
        assert_eq!(answer, Err(DnsFailure::NoSuchDomain));
    });
}

#[test]
fn a_name_with_neither_mx_nor_address_has_no_mail_host() {
    let server = DnsServer::start(zone_options());
    with_control(vec![server.address], |client| async move {
        let answer = client
            .resolve_mx("nomail.example.test", ANSWER_PATIENCE)
            .await;
        assert_eq!(answer, Err(DnsFailure::NoMailHost));
        let answer = client
            .resolve_host("nomail.example.test", ANSWER_PATIENCE)
            .await;
        assert_eq!(answer, Err(DnsFailure::NoMailHost));
    });
}

#[test]
fn hosts_resolve_to_their_a_and_aaaa_addresses_ipv4_first() {
    let server = DnsServer::start(zone_options());
    with_control(vec![server.address], |client| async move {
        let answer = client
            .resolve_host("mx1.example.test", ANSWER_PATIENCE)
            .await;
        assert_eq!(answer, Ok(vec![ip("127.0.0.11")]));

        let answer = client
            .resolve_host("implicit.example.test", ANSWER_PATIENCE)
            .await;
        assert_eq!(answer, Ok(vec![ip("127.0.0.12"), ip("::1")]));

        let answer = client
            .resolve_host("v6only.example.test", ANSWER_PATIENCE)
            .await;
        assert_eq!(answer, Ok(vec![ip("::2")]));

        // An address literal needs no query.
        let answer = client.resolve_host("127.0.0.99", ANSWER_PATIENCE).await;
        assert_eq!(answer, Ok(vec![ip("127.0.0.99")]));
    });
}

#[test]
fn a_refusing_server_is_a_temporary_failure() {
    let server = DnsServer::start(zone_options());
    with_control(vec![server.address], |client| async move {
        // dnsmasq is authoritative for example.test only and has no upstream: REFUSED.
        let answer = client
            .resolve_mx("elsewhere.example", ANSWER_PATIENCE)
            .await;
        assert!(
            matches!(answer, Err(DnsFailure::Temporary(_))),
            "{answer:?}"
        );
    });
}

#[test]
fn a_server_that_never_answers_is_temporary_and_does_not_hold_up_pings() {
    // A bound UDP socket that nobody reads: queries vanish, as into a dead server. Nothing
    // listens on its TCP port, so the TCP fallback is refused.
    let black_hole = UdpSocket::bind("127.0.0.1:0").expect("bind a black hole");
    let address = black_hole.local_addr().expect("local address");
    with_control(vec![address], |client| async move {
        let patience = Duration::from_secs(2);
        let finished = std::rc::Rc::new(std::cell::Cell::new(false));
        let slow = glommio::spawn_local({
            let client = client.clone();
            let finished = std::rc::Rc::clone(&finished);
            async move {
                let started = Instant::now();
                let answer = client.resolve_mx("mx.example.test", patience).await;
                finished.set(true);
                (answer, started.elapsed())
            }
        });

        // While that lookup waits on the network, the control thread still answers a ping.
        glommio::timer::sleep(Duration::from_millis(100)).await;
        client
            .ping(0, Duration::from_secs(1))
            .await
            .expect("a ping is answered while a lookup is stuck");
        assert!(
            !finished.get(),
            "the ping was answered only after the lookup ended"
        );

        // The patience bounds the wait; the slack is for a loaded machine.
        let (answer, elapsed) = slow.await;
        let Err(failure) = answer else {
            panic!("a dead server gave an answer: {answer:?}");
        };
        assert!(!failure.is_permanent(), "{failure:?}");
        assert!(elapsed >= patience, "gave up early: {elapsed:?}");
        assert!(
            elapsed < patience + Duration::from_secs(3),
            "gave up late: {elapsed:?}"
        );

        let answer = client.resolve_host("mx1.example.test", patience).await;
        assert!(
            matches!(answer, Err(DnsFailure::Temporary(_))),
            "{answer:?}"
        );
    });
    drop(black_hole);
}

#[test]
fn without_a_control_thread_every_answer_is_temporary() {
    let (control_link, mut shard_links) = link::links(1);
    let client = shard_links.remove(0).control;
    drop(control_link);
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .expect("glommio executor");
    executor.run(async move {
        let answer = client.resolve_mx("mx.example.test", ANSWER_PATIENCE).await;
        assert!(
            matches!(answer, Err(DnsFailure::Temporary(_))),
            "{answer:?}"
        );
        let answer = client
            .resolve_host("mx1.example.test", ANSWER_PATIENCE)
            .await;
        assert!(
            matches!(answer, Err(DnsFailure::Temporary(_))),
            "{answer:?}"
        );
    });
}

#[test]
fn answers_and_negative_answers_come_from_the_cache_once_the_server_is_gone() {
    let mut server = DnsServer::start(zone_options());
    let address = server.address;
    with_control(vec![address], move |client| async move {
        let first = ask_everything(&client).await;
        server.stop();

        // The server is really gone: a question not asked before finds nobody.
        let answer = client
            .resolve_host("mx2.example.test", Duration::from_secs(2))
            .await;
        assert!(
            matches!(answer, Err(DnsFailure::Temporary(_))),
            "{answer:?}"
        );

        // Within the TTL everything asked before, positive or negative (RFC 2308 §5), is
        // answered from the cache.
        let second = ask_everything(&client).await;
        assert_eq!(second, first);
    });
}

/// One question of each kind, with MX hosts sorted so that shuffled ties compare equal.
async fn ask_everything(client: &ControlClient) -> Vec<String> {
    let mut answers = Vec::new();
    for domain in [
        "mx.example.test",
        "implicit.example.test",
        "nullmx.example.test",
        "absent.example.test",
        "nomail.example.test",
    ] {
        let answer = match client.resolve_mx(domain, ANSWER_PATIENCE).await {
            Ok(MxAnswer::Hosts(mut hosts)) => {
                hosts.sort_by(|a, b| (a.preference, &a.exchange).cmp(&(b.preference, &b.exchange)));
                Ok(MxAnswer::Hosts(hosts))
            }
            other => other,
        };
        assert!(
            !matches!(answer, Err(DnsFailure::Temporary(_))),
            "{domain}: {answer:?}"
        );
        answers.push(format!("{domain}: {answer:?}"));
    }
    for name in ["mx1.example.test", "absent.example.test"] {
        let answer = client.resolve_host(name, ANSWER_PATIENCE).await;
        answers.push(format!("{name}: {answer:?}"));
    }
    answers
}
