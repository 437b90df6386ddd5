//! The per-client failure window that rate-limits password guessing.
//!
//! One counter per client address: how many AUTH attempts failed since the first failure of the
//! window. An attempt is counted as a failure when it is admitted and forgiven only when it
//! succeeds, so that many attempts in flight at once from one address cannot all slip past the
//! limit before the first verdict lands. IPv6 clients are counted per /64, since one host
//! usually owns the whole prefix. The table is bounded; when full, expired entries go first,
//! then the oldest. It reads no clock: the caller passes `now`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Client addresses tracked at once. Each entry is a few dozen bytes, so the table stays under a
/// few megabytes even when a botnet tries every address it has.
pub const CLIENTS_TRACKED_MAX: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Entry {
    window_start: Instant,
    failures: u32,
}

/// Failed attempts per client address within a sliding-start window.
#[derive(Debug)]
pub struct FailureWindow {
    failures_max: u32,
    window: Duration,
    entries: HashMap<IpAddr, Entry>,
}

impl FailureWindow {
    /// A client may fail `failures_max` times per `window`; the next attempt is refused until
    /// the window that began with its first failure has passed.
    pub fn new(failures_max: u32, window: Duration) -> FailureWindow {
        assert!(
            failures_max > 0,
            "a limit of zero would refuse every attempt"
        );
        FailureWindow {
            failures_max,
            window,
            entries: HashMap::new(),
        }
    }

    /// Whether `client` may try now. An admitted attempt counts as a failure until
    /// `succeeded` forgives it.
    pub fn admit(&mut self, client: IpAddr, now: Instant) -> bool {
        let key = counted_address(client);
        if let Some(entry) = self.entries.get_mut(&key) {
            if now.saturating_duration_since(entry.window_start) >= self.window {
                *entry = Entry {
                    window_start: now,
                    failures: 0,
                };
            }
            if entry.failures >= self.failures_max {
                return false;
            }
            entry.failures += 1;
            return true;
        }

        if self.entries.len() >= CLIENTS_TRACKED_MAX {
            self.make_room(now);
        }
        self.entries.insert(
            key,
            Entry {
                window_start: now,
                failures: 1,
            },
        );
        true
    }

    /// The attempt admitted for `client` was never checked (the asker stopped waiting): it no
    /// longer counts as a failure.
    pub fn not_checked(&mut self, client: IpAddr) {
        if let Some(entry) = self.entries.get_mut(&counted_address(client)) {
            entry.failures = entry.failures.saturating_sub(1);
        }
    }

    /// The attempt admitted for `client` succeeded: its failures are forgotten.
    pub fn succeeded(&mut self, client: IpAddr) {
        self.entries.remove(&counted_address(client));
    }

    /// Clients currently tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops expired entries; if none had expired, drops the one whose window began first.
    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.entries
            .retain(|_, entry| now.saturating_duration_since(entry.window_start) < window);
        if self.entries.len() < CLIENTS_TRACKED_MAX {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.window_start)
            .map(|(address, _)| *address);
        if let Some(oldest) = oldest {
            self.entries.remove(&oldest);
        }
    }
}

/// IPv4 addresses (and IPv4-mapped IPv6 ones) as they are; other IPv6 addresses as their /64.
fn counted_address(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn limit_holds_until_the_window_passes() {
        let start = Instant::now();
        let mut window = FailureWindow::new(3, Duration::from_secs(600));
        for _ in 0..3 {
            assert!(window.admit(CLIENT, start));
        }
        assert!(!window.admit(CLIENT, start + Duration::from_secs(599)));
        assert!(window.admit(CLIENT, start + Duration::from_secs(600)));
    }

    #[test]
    fn success_forgives_and_other_clients_are_apart() {
        let now = Instant::now();
        let mut window = FailureWindow::new(1, Duration::from_secs(60));
        assert!(window.admit(CLIENT, now));
        assert!(!window.admit(CLIENT, now));
        assert!(window.admit("192.0.2.8".parse().unwrap(), now));
        window.succeeded(CLIENT);
        assert!(window.admit(CLIENT, now));
    }

    #[test]
    fn an_unchecked_attempt_is_not_a_failure() {
        let now = Instant::now();
        let mut window = FailureWindow::new(1, Duration::from_secs(60));
        assert!(window.admit(CLIENT, now));
        window.not_checked(CLIENT);
        assert!(window.admit(CLIENT, now));
        assert!(!window.admit(CLIENT, now));
    }

    #[test]
    fn ipv6_counts_per_prefix_and_mapped_ipv4_as_ipv4() {
        let now = Instant::now();
        let mut window = FailureWindow::new(1, Duration::from_secs(60));
        assert!(window.admit("2001:db8:1:2::1".parse().unwrap(), now));
        assert!(!window.admit("2001:db8:1:2::ffff:1".parse().unwrap(), now));
        assert!(window.admit("2001:db8:1:3::1".parse().unwrap(), now));
        assert!(window.admit("::ffff:192.0.2.7".parse().unwrap(), now));
        assert!(!window.admit(CLIENT, now));
    }

    #[test]
    fn table_stays_bounded() {
        let now = Instant::now();
        let mut window = FailureWindow::new(5, Duration::from_secs(60));
        for n in 0..(CLIENTS_TRACKED_MAX as u32 + 10) {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            window.admit(address, now);
        }
        assert!(window.len() <= CLIENTS_TRACKED_MAX);
    }
}
