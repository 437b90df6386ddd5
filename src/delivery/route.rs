//! Route selection: which `[[route]]` carries mail for a recipient, and the destination that
//! recipients sharing a route and a next hop are grouped under.
//!
//! Pure code over the validated configuration: the first route whose `domains` match the
//! recipient's domain wins (the configuration guarantees a route list with no unreachable
//! entries). It never resolves names; MX lookups happen later, per destination.

use std::fmt;
use std::sync::Arc;

use crate::config::{domain_matches, RouteConfig, RouteTarget};

/// Where one group of recipients goes: a route's smart hosts (shared by every domain the route
/// carries), or one domain's MX hosts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Smarthost { route: usize },
    Mx { route: usize, domain: String },
}

impl Destination {
    pub fn route(&self) -> usize {
        match self {
            Destination::Smarthost { route } | Destination::Mx { route, .. } => *route,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Smarthost { route } => write!(f, "route[{route}] smarthost"),
            Destination::Mx { route, domain } => write!(f, "route[{route}] mx:{domain}"),
        }
    }
}

/// The routes of the running configuration.
#[derive(Clone)]
pub struct Router {
    routes: Arc<[RouteConfig]>,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Router {
        Router {
            routes: routes.into(),
        }
    }

    pub fn route(&self, index: usize) -> &RouteConfig {
        &self.routes[index]
    }

    /// The destination for `address`, or `None` when no route matches its domain (mail that
    /// can never leave; the caller fails that recipient).
    pub fn destination(&self, address: &str) -> Option<Destination> {
        let domain = recipient_domain(address);
        let route = self
            .routes
            .iter()
            .position(|route| route.domains.iter().any(|p| domain_matches(p, &domain)))?;
        Some(match self.routes[route].target {
            RouteTarget::Smarthost(_) => Destination::Smarthost { route },
            RouteTarget::Mx => Destination::Mx { route, domain },
        })
    }
}

/// The lower-cased domain of a mailbox: what follows its last `@`. The domainless
/// `postmaster` of RFC 5321 §4.1.1.3 has none and matches only `*` routes.
pub fn recipient_domain(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("", |(_, domain)| domain)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutboundTls;

    fn route(domains: &[&str], target: RouteTarget) -> RouteConfig {
        RouteConfig {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            target,
            tls: OutboundTls::None,
            tls_ca_file: None,
            connections_max: 1,
            messages_per_connection_max: 1,
            source_address: None,
            mx_port: 25,
        }
    }

    #[test]
    fn first_matching_route_wins() {
        let router = Router::new(&[
            route(
                &["example.com"],
                RouteTarget::Smarthost(vec!["a:25".into()]),
            ),
            route(&["*.example.com"], RouteTarget::Mx),
            route(&["*"], RouteTarget::Smarthost(vec!["b:25".into()])),
        ]);
        assert_eq!(
            router.destination("u@Example.COM"),
            Some(Destination::Smarthost { route: 0 })
        );
        assert_eq!(
            router.destination("u@mail.example.com"),
            Some(Destination::Mx {
                route: 1,
                domain: "mail.example.com".into()
            })
        );
        assert_eq!(
            router.destination("u@other.org"),
            Some(Destination::Smarthost { route: 2 })
        );
        assert_eq!(
            router.destination("postmaster"),
            Some(Destination::Smarthost { route: 2 })
        );
    }

    #[test]
    fn no_route_for_an_unlisted_domain() {
        let router = Router::new(&[route(&["example.com"], RouteTarget::Mx)]);
        assert_eq!(router.destination("u@example.org"), None);
        assert_eq!(router.destination("u@sub.example.com"), None);
    }
}
