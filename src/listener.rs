//! Listening sockets, created outside any runtime with socket2.
//!
//! Each configured listener becomes one socket per shard, all bound to the same address with
//! SO_REUSEPORT so the kernel spreads new connections across shards, and each tagged with
//! SO_INCOMING_CPU so a connection tends to land on the shard pinned to the core that took its
//! interrupt. The sockets are plain file descriptors owned here, not runtime objects: a hot
//! upgrade hands exactly these descriptors to the next process, and a shard only wraps them.
//! Binding happens once, before any shard starts, so a taken port stops start-up cleanly.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::ListenerConfig;
use crate::fatal::{ExitReason, Fatal};

/// One configured listener, bound once per shard.
#[derive(Debug)]
pub struct BoundListener {
    /// The address actually bound (port 0 in the configuration becomes the kernel's choice).
    pub address: SocketAddr,
    /// Index of the `[[listener]]` entry this came from.
    pub config_index: usize,
    /// One listening socket per shard, in shard order.
    pub per_shard: Vec<OwnedFd>,
}

/// Binds every configured listener once per shard.
///
/// `cpus[i]` is the core shard `i` is pinned to; it becomes that socket's SO_INCOMING_CPU.
pub fn bind_all(listeners: &[ListenerConfig], cpus: &[usize]) -> Result<Vec<BoundListener>, Fatal> {
    listeners
        .iter()
        .enumerate()
        .map(|(config_index, listener)| bind_one(config_index, listener, cpus))
        .collect()
}

fn bind_one(
    config_index: usize,
    listener: &ListenerConfig,
    cpus: &[usize],
) -> Result<BoundListener, Fatal> {
    let mut address = listener.address;
    let mut per_shard = Vec::with_capacity(cpus.len());

    for &cpu in cpus {
        let socket = bind_reuseport(address, listener.backlog, Some(cpu))
            .map_err(|error| bind_failure(listener.address, error, "listener.address"))?;

        // With port 0 the first bind picks a port; the other shards must share that one.
        if address.port() == 0 {
            address = socket
                .local_addr()
                .ok()
                .and_then(|local| local.as_socket())
                .ok_or_else(|| Fatal::internal(format!("cannot read back {address}")))?;
        }
        per_shard.push(OwnedFd::from(socket));
    }

    Ok(BoundListener {
        address,
        config_index,
        per_shard,
    })
}

/// A non-blocking listening socket on `address` with SO_REUSEADDR and SO_REUSEPORT (so each
/// thread of a process can hold its own), IPv6-only for IPv6 addresses, and, with `cpu`,
/// SO_INCOMING_CPU. Shared with postern-loadgen's sink.
pub fn bind_reuseport(address: SocketAddr, backlog: u32, cpu: Option<usize>) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }

    // A hint, not a contract: the kernel may still deliver elsewhere, which is harmless.
    if let Some(cpu) = cpu {
        socket.set_cpu_affinity(cpu)?;
    }

    // Every accepted socket inherits it, so no session pays a setsockopt call. SMTP replies are
    // small and each one is awaited by the client: Nagle's delay would only add latency.
    socket.set_tcp_nodelay(true)?;

    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog)?;
    Ok(socket)
}

/// The fatal error for an address that cannot be bound; `key` names the setting to change.
pub(crate) fn bind_failure(address: SocketAddr, error: io::Error, key: &str) -> Fatal {
    match error.kind() {
        io::ErrorKind::AddrInUse => Fatal::new(
            ExitReason::AddressInUse,
            format!("cannot listen on {address}: the address is already in use"),
            format!("stop the other process on that port (`ss -ltnp`) or change `{key}`"),
        ),
        io::ErrorKind::PermissionDenied => Fatal::new(
            ExitReason::AddressNotAvailable,
            format!("cannot listen on {address}: permission denied"),
            "ports below 1024 need root or CAP_NET_BIND_SERVICE; or choose a higher port",
        ),
        io::ErrorKind::AddrNotAvailable => Fatal::new(
            ExitReason::AddressNotAvailable,
            format!("cannot listen on {address}: no interface on this host has that address"),
            "use an address this host owns, or 0.0.0.0 / [::] for all of them",
        ),
        _ => Fatal::internal(format!("cannot listen on {address}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listening = bind_reuseport("127.0.0.1:0".parse().unwrap(), 16, None).expect("bind");
        let address = listening.local_addr().unwrap().as_socket().unwrap();
        let _client = std::net::TcpStream::connect(address).expect("connect");

        listening.set_nonblocking(false).unwrap();
        let (accepted, _) = listening.accept().expect("accept");
        assert!(
            accepted.tcp_nodelay().unwrap(),
            "sessions rely on inheriting TCP_NODELAY instead of setting it each"
        );
    }
}
