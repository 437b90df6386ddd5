//! The safe-by-default rule (issue 5, item 5): a load generator pointed at someone else's
//! server is an attack, so every address outside 127.0.0.0/8 and ::1 needs `--allow-remote`.
//! This file owns that decision for `send`'s targets and for `sink`'s listen address. It does
//! no I/O: names are resolved by the caller, and every resolved address is checked.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Whether `ip` is loopback in the sense of the rule (IPv4-mapped ::ffff:127.x counts).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets()[0] == 127,
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// Resolves `text` (`host:port`) and refuses any non-loopback result unless `allow_remote`.
/// `role` names the flag in the error ("target", "listen address").
pub fn resolve_checked(
    text: &str,
    allow_remote: bool,
    role: &str,
) -> anyhow::Result<Vec<SocketAddr>> {
    let addresses: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|error| {
            anyhow::anyhow!("cannot resolve the {role} `{text}`: {error}; write it as HOST:PORT")
        })?
        .collect();
    if addresses.is_empty() {
        anyhow::bail!("the {role} `{text}` resolves to no address");
    }
    if !allow_remote {
        if let Some(remote) = addresses.iter().find(|address| !is_loopback(address.ip())) {
            anyhow::bail!(
                "refusing the {role} {remote} (from `{text}`): it is not loopback \
                 (127.0.0.0/8 or ::1). Pointing a load generator at a server you do not run is \
                 an attack; if you run it, add --allow-remote"
            );
        }
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ranges() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("127.255.3.4".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("0.0.0.0".parse().unwrap()));
        assert!(!is_loopback("::".parse().unwrap()));
    }

    #[test]
    fn remote_needs_the_flag() {
        assert!(resolve_checked("192.0.2.1:25", false, "target").is_err());
        assert!(resolve_checked("192.0.2.1:25", true, "target").is_ok());
        assert!(resolve_checked("127.0.0.1:25", false, "target").is_ok());
    }
}
