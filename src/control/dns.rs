//! DNS for the shards, answered on the control thread by hickory's tokio resolver.
//!
//! It owns the resolver built from `[dns]` (the listed servers over UDP and TCP, or the system's
//! `resolv.conf`), its cache, and the rules that turn DNS answers into delivery decisions: MX
//! ordering, the implicit MX and the null MX (RFC 5321 §5.1, RFC 7505). Answers are cached for
//! their TTL and negative answers (NXDOMAIN, NODATA) for the SOA's negative TTL (RFC 2308 §5),
//! in a cache of bounded size. Each request runs as its own task, so a slow lookup delays
//! nothing else on the control thread, and at most `LOOKUPS_IN_FLIGHT_MAX` run at once. The
//! special-use names of RFC 6761 are answered without a query (`.invalid` does not exist,
//! `localhost` is the loopback address). It
//! guarantees that nothing but an authoritative "no such domain" or "no mail host" comes back as
//! permanent. It must never be called from a shard: shards ask through `shard::link`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::config::DnsConfig;
use crate::fatal::{ExitReason, Fatal};
use crate::shard::link::{DnsFailure, MxAnswer, MxHost};

/// Most answers (positive and negative) the cache holds; the least used go first.
pub const CACHE_ENTRIES_MAX: u64 = 8_192;

/// Longest a negative answer is trusted, whatever its SOA says. RFC 2308 §5 suggests one to
/// three hours as a sensible cap.
pub const NEGATIVE_TTL_MAX: Duration = Duration::from_secs(3 * 3600);

/// Longest a positive answer is trusted, whatever its TTL says.
pub const POSITIVE_TTL_MAX: Duration = Duration::from_secs(24 * 3600);

/// How long one query to one configured server may take before it is tried again (the
/// `resolv.conf` default); the system configuration brings its own.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a query to the configured servers is retried (the `resolv.conf` default).
pub const QUERY_ATTEMPTS: usize = 2;

/// Most lookups running at once; a request beyond this is answered `Temporary` at once rather
/// than queued without bound.
pub const LOOKUPS_IN_FLIGHT_MAX: usize = 256;

/// The resolver and its admission limit. Cheap to clone: clones share the cache.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    in_flight: Arc<Semaphore>,
}

impl Dns {
    /// Builds the resolver. Nothing is sent until the first question. Must run inside the
    /// control runtime.
    pub fn new(config: &DnsConfig) -> Result<Dns, Fatal> {
        let mut builder = if config.servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|error| {
                Fatal::new(
                    ExitReason::ConfigInvalid,
                    format!("cannot read the system DNS configuration (/etc/resolv.conf): {error}"),
                    "fix /etc/resolv.conf, or list the resolvers in `dns.servers`",
                )
            })?
        } else {
            let servers = config.servers.iter().map(|&server| name_server(server));
            let resolver_config = ResolverConfig::from_parts(None, Vec::new(), servers.collect());
            let mut builder =
                Resolver::builder_with_config(resolver_config, TokioRuntimeProvider::default());
            let options = builder.options_mut();
            options.timeout = QUERY_TIMEOUT;
            options.attempts = QUERY_ATTEMPTS;

            // Explicit servers mean the operator wants their answers, not /etc/hosts.
            options.use_hosts_file = ResolveHosts::Never;
            builder
        };

        // LIMITATION(L14): answers are trusted as the servers give them (no DNSSEC), and none is
        // served past its TTL when the servers are down.
        set_cache_bounds(builder.options_mut());
        let resolver = builder
            .build()
            .map_err(|error| Fatal::internal(format!("cannot build the DNS resolver: {error}")))?;
        Ok(Dns {
            resolver,
            in_flight: Arc::new(Semaphore::new(LOOKUPS_IN_FLIGHT_MAX)),
        })
    }

    /// The resolver itself, for the verifier that asks the same servers (see `verify`).
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// Answers `resolve_mx` on its own task; the answer goes to `reply` by `deadline`.
    pub fn spawn_resolve_mx(
        &self,
        domain: String,
        deadline: Instant,
        reply: flume::Sender<Result<MxAnswer, DnsFailure>>,
    ) {
        let dns = self.clone();
        self.spawn(
            deadline,
            reply,
            async move { dns.resolve_mx(&domain).await },
        );
    }

    /// Answers `resolve_host` on its own task; the answer goes to `reply` by `deadline`.
    pub fn spawn_resolve_host(
        &self,
        name: String,
        deadline: Instant,
        reply: flume::Sender<Result<Vec<IpAddr>, DnsFailure>>,
    ) {
        let dns = self.clone();
        self.spawn(
            deadline,
            reply,
            async move { dns.resolve_host(&name).await },
        );
    }

    /// Where mail for `domain` goes: its MX hosts, the implicit MX, or the null MX.
    pub async fn resolve_mx(&self, domain: &str) -> Result<MxAnswer, DnsFailure> {
        let name = fully_qualified(domain)?;
        let negative = match self.resolver.lookup(name.clone(), RecordType::MX).await {
            Ok(lookup) => match mx_answer(lookup.answers()) {
                Some(answer) => return Ok(answer),
                None => Negative::NoData,
            },
            Err(error) => classify(&error).map_err(DnsFailure::Temporary)?,
        };
        debug!(%domain, ?negative, "no MX records");

        // RFC 5321 §5.1: with no MX records at all, the domain itself is the exchanger, if it
        // has an address. A domain without MX and without address cannot take mail.
        match negative {
            Negative::NxDomain => Err(DnsFailure::NoSuchDomain),
            Negative::NoData => self.addresses(name).await.map(|_| MxAnswer::Implicit),
        }
    }

    /// The addresses of `name`, IPv4 first. An IP address literal is its own answer.
    pub async fn resolve_host(&self, name: &str) -> Result<Vec<IpAddr>, DnsFailure> {
        if let Ok(address) = name.parse::<IpAddr>() {
            return Ok(vec![address]);
        }
        self.addresses(fully_qualified(name)?).await
    }

    async fn addresses(&self, name: Name) -> Result<Vec<IpAddr>, DnsFailure> {
        let (ipv4, ipv6) = tokio::join!(
            self.resolver.lookup(name.clone(), RecordType::A),
            self.resolver.lookup(name, RecordType::AAAA)
        );
        combine_addresses(ipv4, ipv6)
    }

    /// Runs one lookup on its own task, admitted by the in-flight limit and bounded by the
    /// asking shard's deadline.
    fn spawn<T, F>(&self, deadline: Instant, reply: flume::Sender<Result<T, DnsFailure>>, work: F)
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, DnsFailure>> + Send + 'static,
    {
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            debug!(
                limit = LOOKUPS_IN_FLIGHT_MAX,
                "DNS lookup refused: too many in flight"
            );
            let busy = format!("more than {LOOKUPS_IN_FLIGHT_MAX} DNS lookups in flight");
            let _ = reply.send(Err(DnsFailure::Temporary(busy)));
            return;
        };

        tokio::spawn(async move {
            let deadline = tokio::time::Instant::from_std(deadline);
            let answer = tokio::time::timeout_at(deadline, work)
                .await
                .unwrap_or_else(|_| Err(DnsFailure::Temporary("DNS lookup timed out".into())));

            // The shard may have stopped waiting; then nobody needs the answer.
            let _ = reply.send(answer);
            drop(permit);
        });
    }
}

/// A configured server, asked over UDP first and over TCP when an answer is truncated
/// (RFC 7766 §5).
fn name_server(server: SocketAddr) -> NameServerConfig {
    let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
    for connection in &mut name_server.connections {
        connection.port = server.port();
    }
    name_server
}

fn set_cache_bounds(options: &mut ResolverOpts) {
    options.cache_size = CACHE_ENTRIES_MAX;
    options.positive_max_ttl = Some(POSITIVE_TTL_MAX);
    options.negative_max_ttl = Some(NEGATIVE_TTL_MAX);

    // Names are always asked fully qualified (see `fully_qualified`); search lists never apply.
    options.ndots = 0;
}

/// The domain as an absolute DNS name, in A-labels. Mail domains are fully qualified (RFC 5321
/// §2.3.5), so a local search list must never be applied to them.
fn fully_qualified(domain: &str) -> Result<Name, DnsFailure> {
    let mut name = Name::from_utf8(domain).map_err(|error| {
        debug!(%domain, %error, "not a valid domain name");
        DnsFailure::NoSuchDomain
    })?;
    name.set_fqdn(true);

    // The root (from "" or ".") has no MX and no address to ask for.
    if name.is_root() {
        return Err(DnsFailure::NoSuchDomain);
    }
    Ok(name)
}

/// A lookup that found nothing, as the DNS said it (RFC 2308 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Negative {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// NOERROR without records of the asked type: the name exists.
    NoData,
}

/// Sorts a lookup failure into a negative answer, or the text of a temporary failure.
fn classify(error: &NetError) -> Result<Negative, String> {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => {
            if no_records.response_code == ResponseCode::NXDomain {
                Ok(Negative::NxDomain)
            } else {
                Ok(Negative::NoData)
            }
        }
        other => Err(other.to_string()),
    }
}

/// The MX records of an answer as delivery needs them, or `None` if it holds none (only a
/// CNAME, say), which is the same as NODATA.
fn mx_answer(records: &[Record]) -> Option<MxAnswer> {
    let mut hosts = Vec::new();
    let mut null_mx = false;
    for record in records {
        let RData::MX(mx) = &record.data else {
            continue;
        };

        // RFC 7505 §3: the exchange "." means "no mail here". A domain must not mix it with
        // other MX records; if one does, "." is no host anyone can deliver to, so the other
        // records are used.
        if mx.exchange.is_root() {
            null_mx = true;
            continue;
        }
        let exchange = mx.exchange.to_lowercase().to_ascii();
        hosts.push(MxHost {
            preference: mx.preference,
            exchange: exchange.trim_end_matches('.').to_owned(),
        });
    }

    if hosts.is_empty() {
        return null_mx.then_some(MxAnswer::NullMx);
    }
    order_by_preference(&mut hosts);
    Some(MxAnswer::Hosts(hosts))
}

/// Lowest preference first; equal preferences shuffled, as RFC 5321 §5.1 asks ("the SMTP
/// client SHOULD randomize them to spread the load"). Shuffle, then a stable sort.
fn order_by_preference(hosts: &mut [MxHost]) {
    fastrand::shuffle(hosts);
    hosts.sort_by_key(|host| host.preference);
}

/// Merges the A and AAAA lookups. Any address is an answer. With none, a temporary failure of
/// either family makes the whole answer temporary (that family might have had addresses);
/// otherwise NXDOMAIN on both is "no such domain" and anything else "no mail host".
fn combine_addresses(
    ipv4: Result<Lookup, NetError>,
    ipv6: Result<Lookup, NetError>,
) -> Result<Vec<IpAddr>, DnsFailure> {
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut negatives = Vec::new();
    let mut temporary = None;
    for lookup in [ipv4, ipv6] {
        match lookup {
            Ok(lookup) => {
                let before = addresses.len();
                addresses.extend(lookup.answers().iter().filter_map(address));
                if addresses.len() == before {
                    negatives.push(Negative::NoData);
                }
            }
            Err(error) => match classify(&error) {
                Ok(negative) => negatives.push(negative),
                Err(text) => temporary = Some(text),
            },
        }
    }

    if !addresses.is_empty() {
        let mut seen = std::collections::HashSet::new();
        addresses.retain(|address| seen.insert(*address));
        return Ok(addresses);
    }
    if let Some(text) = temporary {
        return Err(DnsFailure::Temporary(text));
    }
    if negatives
        .iter()
        .all(|negative| *negative == Negative::NxDomain)
    {
        return Err(DnsFailure::NoSuchDomain);
    }
    Err(DnsFailure::NoMailHost)
}

fn address(record: &Record) -> Option<IpAddr> {
    match &record.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::net::NoRecords;
    use hickory_resolver::proto::op::Query;
    use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX};

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("test name")
    }

    fn mx(preference: u16, exchange: &str) -> Record {
        let data = RData::MX(MX::new(preference, name(exchange)));
        Record::from_rdata(name("example.test."), 300, data)
    }

    fn host(preference: u16, exchange: &str) -> MxHost {
        MxHost {
            preference,
            exchange: exchange.into(),
        }
    }

    fn negative(code: ResponseCode, record_type: RecordType) -> NetError {
        let query = Query::query(name("example.test."), record_type);
        NetError::from(DnsError::NoRecordsFound(NoRecords::new(query, code)))
    }

    fn addresses(records: Vec<RData>) -> Result<Lookup, NetError> {
        let query = Query::query(name("host.test."), RecordType::A);
        let records = records
            .into_iter()
            .map(|data| Record::from_rdata(name("host.test."), 300, data));
        Ok(Lookup::new_with_max_ttl(query, records))
    }

    #[test]
    fn hosts_are_ordered_by_preference_and_lose_the_root_dot() {
        let records = [
            mx(20, "MX2.Example.Test."),
            mx(5, "mx0.example.test."),
            mx(10, "mx1.example.test."),
        ];
        assert_eq!(
            mx_answer(&records),
            Some(MxAnswer::Hosts(vec![
                host(5, "mx0.example.test"),
                host(10, "mx1.example.test"),
                host(20, "mx2.example.test"),
            ]))
        );
    }

    #[test]
    fn equal_preferences_come_in_both_orders() {
        let records = [
            mx(10, "a.example.test."),
            mx(10, "b.example.test."),
            mx(20, "z.example.test."),
        ];
        let mut first_seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let Some(MxAnswer::Hosts(hosts)) = mx_answer(&records) else {
                panic!("expected hosts");
            };
            assert_eq!(hosts[2], host(20, "z.example.test"));
            first_seen.insert(hosts[0].exchange.clone());
        }
        // The chance that 200 fair shuffles all agree is 2^-199.
        assert_eq!(first_seen.len(), 2, "{first_seen:?}");
    }

    #[test]
    fn a_lone_root_exchange_is_a_null_mx() {
        assert_eq!(mx_answer(&[mx(0, ".")]), Some(MxAnswer::NullMx));
    }

    #[test]
    fn a_root_exchange_beside_real_ones_is_ignored() {
        assert_eq!(
            mx_answer(&[mx(0, "."), mx(10, "mx.example.test.")]),
            Some(MxAnswer::Hosts(vec![host(10, "mx.example.test")]))
        );
    }

    #[test]
    fn an_answer_without_mx_records_is_nodata() {
        let cname = RData::CNAME(CNAME(name("elsewhere.test.")));
        let records = [Record::from_rdata(name("example.test."), 300, cname)];
        assert_eq!(mx_answer(&records), None);
    }

    #[test]
    fn nxdomain_and_nodata_are_negative_and_the_rest_temporary() {
        assert_eq!(
            classify(&negative(ResponseCode::NXDomain, RecordType::MX)),
            Ok(Negative::NxDomain)
        );
        assert_eq!(
            classify(&negative(ResponseCode::NoError, RecordType::MX)),
            Ok(Negative::NoData)
        );
        let servfail = NetError::from(DnsError::ResponseCode(ResponseCode::ServFail));
        assert!(classify(&servfail).is_err());
        assert!(classify(&NetError::Timeout).is_err());
    }

    #[test]
    fn addresses_merge_ipv4_first_without_duplicates() {
        let ipv4 = addresses(vec![
            RData::A(A::new(127, 0, 0, 2)),
            RData::A(A::new(127, 0, 0, 2)),
        ]);
        let ipv6 = addresses(vec![RData::AAAA(AAAA::new(0, 0, 0, 0, 0, 0, 0, 1))]);
        assert_eq!(
            combine_addresses(ipv4, ipv6),
            Ok(vec![
                "127.0.0.2".parse().expect("address"),
                "::1".parse().expect("address"),
            ])
        );
    }

    #[test]
    fn one_family_is_enough() {
        let ipv4 = addresses(vec![RData::A(A::new(127, 0, 0, 3))]);
        let ipv6 = Err(NetError::Timeout);
        assert_eq!(
            combine_addresses(ipv4, ipv6),
            Ok(vec!["127.0.0.3".parse().expect("address")])
        );
    }

    #[test]
    fn no_address_with_a_timeout_is_temporary_not_permanent() {
        let ipv4 = Err(negative(ResponseCode::NoError, RecordType::A));
        let ipv6 = Err(NetError::Timeout);
        let failure = combine_addresses(ipv4, ipv6).expect_err("no address");
        assert!(!failure.is_permanent(), "{failure:?}");
    }

    #[test]
    fn no_address_is_permanent_when_the_dns_says_so() {
        let nxdomain = || Err(negative(ResponseCode::NXDomain, RecordType::A));
        let nodata = || Err(negative(ResponseCode::NoError, RecordType::AAAA));
        assert_eq!(
            combine_addresses(nxdomain(), nxdomain()),
            Err(DnsFailure::NoSuchDomain)
        );
        assert_eq!(
            combine_addresses(nxdomain(), nodata()),
            Err(DnsFailure::NoMailHost)
        );
        assert_eq!(
            combine_addresses(addresses(Vec::new()), nodata()),
            Err(DnsFailure::NoMailHost)
        );
    }

    #[test]
    fn names_are_made_absolute_and_invalid_ones_cannot_exist() {
        assert_eq!(
            fully_qualified("Example.Test").expect("valid").to_ascii(),
            "example.test."
        );
        assert_eq!(
            fully_qualified("bücher.example").expect("valid").to_ascii(),
            "xn--bcher-kva.example."
        );
        assert_eq!(fully_qualified(""), Err(DnsFailure::NoSuchDomain));
        assert_eq!(fully_qualified("."), Err(DnsFailure::NoSuchDomain));
        let long_label = "a".repeat(64) + ".test";
        assert_eq!(fully_qualified(&long_label), Err(DnsFailure::NoSuchDomain));
    }
}
