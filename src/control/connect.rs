//! Outbound connections bound to a source address (`route.source_address`).
//!
//! The shards' runtime connects through io_uring without a bind step, so a connection that must
//! leave from a chosen local address is opened here instead, with tokio's `TcpSocket` (bind,
//! then connect), and the connected socket is handed back to the shard that asked. The socket
//! is the same kernel object either way; only who waited for the handshake differs. Each
//! connect runs as its own task, so a slow peer never delays the control thread's other work.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Instant;

use tokio::net::TcpSocket;

/// Connects to `address` from `source` in a task of its own and sends the result to `reply`.
pub(super) fn spawn_connect_from(
    source: IpAddr,
    address: SocketAddr,
    deadline: Instant,
    reply: flume::Sender<Result<OwnedFd, String>>,
) {
    tokio::spawn(async move {
        let connected = tokio::time::timeout_at(deadline.into(), connect_from(source, address))
            .await
            .unwrap_or_else(|_| Err(format!("connect to {address} from {source}: timed out")));
        // A shard that stopped waiting dropped its receiver; the socket then closes here.
        let _ = reply.send(connected);
    });
}

async fn connect_from(source: IpAddr, address: SocketAddr) -> Result<OwnedFd, String> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|error| format!("cannot create a socket for {address}: {error}"))?;
    socket.bind(SocketAddr::new(source, 0)).map_err(|error| {
        format!(
            "cannot bind to source address {source} ({error}); check that route.source_address \
             is configured on an interface of this host"
        )
    })?;
    let stream = socket
        .connect(address)
        .await
        .map_err(|error| format!("connect to {address} from {source}: {error}"))?;
    let _ = stream.set_nodelay(true);
    let stream = stream
        .into_std()
        .map_err(|error| format!("cannot hand over the connection to {address}: {error}"))?;
    Ok(OwnedFd::from(stream))
}
