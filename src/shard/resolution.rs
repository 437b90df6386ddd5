//! The answers to the DNS questions a shard asks the control thread (`ControlClient::resolve_mx`
//! and `ControlClient::resolve_host`), as plain data.
//!
//! It owns the vocabulary the delivery code decides with: which exchangers a domain names, and
//! whether a failure is permanent. It guarantees that only the DNS itself saying a domain cannot
//! take mail is permanent; a timeout, a server failure, a busy or absent control thread is always
//! `Temporary`, because a temporary failure must never become a `5xx` or a bounce. It holds no
//! tokio or hickory type, so the shard side never learns the control thread's runtime, and it
//! never does I/O.

/// One mail exchanger of a domain (RFC 5321 §5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    /// Lower is preferred (RFC 1035 §3.3.9).
    pub preference: u16,
    /// The exchanger's host name in ASCII (A-labels), lower case, without the root dot.
    pub exchange: String,
}

/// Where mail for a domain goes, as the DNS says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxAnswer {
    /// The domain's MX records, lowest preference first; hosts of equal preference are in random
    /// order, so load spreads across them as RFC 5321 §5.1 asks. Never empty.
    Hosts(Vec<MxHost>),
    /// The domain has no MX records but has an address: the domain itself is the only exchanger,
    /// with preference 0 (the implicit MX of RFC 5321 §5.1). Resolve it with `resolve_host`.
    Implicit,
    /// The domain publishes a null MX (RFC 7505 §3): it accepts no mail at all. Delivery fails
    /// permanently, with `5.1.10` (RFC 7505 §4.2).
    NullMx,
}

/// Why a name could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsFailure {
    /// The name does not exist (NXDOMAIN, RFC 1035 §4.1.1), or cannot exist because it is not
    /// a valid domain name. Permanent.
    #[error("the domain does not exist")]
    NoSuchDomain,
    /// The name exists but has nothing to deliver to: for `resolve_mx` neither MX nor address
    /// records, for `resolve_host` no address records (RFC 5321 §5.1). Permanent.
    #[error("the domain has no mail exchanger and no address")]
    NoMailHost,
    /// The question could not be answered now: timeout, SERVFAIL or REFUSED, a network error,
    /// or the control thread busy or gone. Try again later.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
}

impl DnsFailure {
    /// Whether retrying later cannot help.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, DnsFailure::Temporary(_))
    }

    /// The enhanced status code (RFC 3463) that a delivery failing for this reason reports:
    /// X.1.2 "bad destination system address" for a domain that cannot take mail, X.4.3
    /// "directory server failure" for a resolver that did not answer.
    pub fn enhanced_status(&self) -> &'static str {
        match self {
            DnsFailure::NoSuchDomain | DnsFailure::NoMailHost => "5.1.2",
            DnsFailure::Temporary(_) => "4.4.3",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temporary_failures_are_retried() {
        assert!(DnsFailure::NoSuchDomain.is_permanent());
        assert!(DnsFailure::NoMailHost.is_permanent());
        assert!(!DnsFailure::Temporary("timed out".into()).is_permanent());
    }

    #[test]
    fn a_temporary_failure_never_has_a_permanent_status() {
        assert!(DnsFailure::Temporary("x".into())
            .enhanced_status()
            .starts_with('4'));
        assert!(DnsFailure::NoSuchDomain.enhanced_status().starts_with('5'));
    }
}
