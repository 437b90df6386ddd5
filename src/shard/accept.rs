//! Taking new connections off a shard's listening socket.
//!
//! A connection that is already waiting, the common case under load, costs one `accept4` here,
//! which also returns the peer's address and marks the socket close-on-exec. glommio's accept
//! has its own fast path that would instead spend three `fcntl` calls per connection toggling
//! O_NONBLOCK on the listener (ours is non-blocking from birth), return a socket that a later
//! `exec` inherits, and leave the peer address to a `getpeername`. Only when nothing is waiting
//! does this wait in glommio's accept. It may still take the connection by that fast path (one
//! that arrives just after `accept4` found none), so its sockets are marked close-on-exec here
//! as well.
//!
//! TCP_NODELAY needs no call per connection either: it is set on the listening socket
//! (`listener::bind_reuseport`), and Linux gives every accepted socket its listener's setting.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use glommio::net::{TcpListener, TcpStream};
use socket2::SockAddr;

/// One listening socket of this shard.
pub(crate) struct Acceptor {
    listener: TcpListener,
    /// The listener's descriptor, which `listener` owns and closes.
    fd: RawFd,
}

impl Acceptor {
    /// Takes over `socket`, a listening TCP socket that this shard owns exclusively.
    pub fn new(socket: OwnedFd) -> Acceptor {
        let fd = socket.as_raw_fd();
        // SAFETY: `into_raw_fd` gives up the OwnedFd's ownership to the TcpListener, so the
        // descriptor is closed exactly once, when the listener drops; `fd` is only used while
        // the listener lives, since both live in this struct.
        let listener = unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };
        Acceptor { listener, fd }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr().map_err(io::Error::from)
    }

    /// The next connection and its peer's address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            match self.take_waiting() {
                Err(error) if try_again_now(&error) => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                taken => return taken,
            }

            let stream = self.listener.accept().await.map_err(io::Error::from)?;
            set_close_on_exec(stream.as_raw_fd())?;
            // A client that reset before this point has no peer address any more: it is gone,
            // which is no reason to pause accepting.
            if let Ok(peer) = stream.peer_addr() {
                return Ok((stream, peer));
            }
        }
    }

    fn take_waiting(&self) -> io::Result<(TcpStream, SocketAddr)> {
        // SAFETY: accept4 writes at most `length` bytes of address into the zeroed storage that
        // socket2 hands in, and sets `length` to what it wrote.
        let (fd, peer) = unsafe {
            SockAddr::try_init(|storage, length| {
                let fd = libc::accept4(self.fd, storage.cast(), length, libc::SOCK_CLOEXEC);
                if fd < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(fd)
                }
            })
        }?;
        // SAFETY: accept4 just created `fd`, and nothing else owns it.
        let stream = unsafe { TcpStream::from_raw_fd(fd) };
        let peer = peer.as_socket().ok_or_else(|| {
            io::Error::other("a TCP listener returned a peer without an IP address")
        })?;
        Ok((stream, peer))
    }
}

/// Errors after which the next `accept4` may well succeed: a signal interrupted the call, or
/// the connection that was waiting gave up before it was taken.
fn try_again_now(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    )
}

fn set_close_on_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor this shard owns; it changes no memory.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
