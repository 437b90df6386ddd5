//! The byte stream under one SMTP session, inbound or outbound: the TCP socket, or TLS over it
//! once the session is encrypted (at accept for implicit TLS, after STARTTLS otherwise).
//!
//! One enum rather than a generic session, because STARTTLS changes the stream's type in the
//! middle of a session: the owner swaps the variant in place and carries on with the same
//! session state.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

/// What the session knows about its TLS layer, for logs and the `Received:` header.
#[derive(Debug, Clone)]
pub(crate) struct TlsDetails {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The IANA suite name, such as `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The host name the client asked for, if any.
    pub server_name: Option<String>,
    /// Fingerprint of a client certificate that verified against `tls.client_ca`.
    pub client_certificate: Option<String>,
    pub resumed: bool,
}

pub(crate) enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
    /// Only while a STARTTLS handshake owns the socket; a failed handshake leaves it here and
    /// the session ends.
    Detached,
}

/// An inbound session's stream.
pub(crate) type SessionStream = MaybeTls<TlsStream<TcpStream>>;

/// An outbound session's stream.
pub(crate) type DeliveryStream = MaybeTls<futures_rustls::client::TlsStream<TcpStream>>;

/// A TLS stream over a glommio socket, either side.
pub(crate) trait OverTcp {
    fn tcp(&self) -> &TcpStream;
}

impl OverTcp for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl OverTcp for futures_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl<T: OverTcp> MaybeTls<T> {
    /// The socket's descriptor, for the non-blocking peeks and drains done beside the stream.
    pub(crate) fn raw_fd(&self) -> Option<RawFd> {
        match self {
            MaybeTls::Plain(stream) => Some(stream.as_raw_fd()),
            MaybeTls::Tls(stream) => Some(stream.tcp().as_raw_fd()),
            MaybeTls::Detached => None,
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }
}

/// The stream a failed STARTTLS handshake left behind: every use is an error.
fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the TLS handshake consumed the socket",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, buffer),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_flush(context),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_close(context),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_close(context),
            MaybeTls::Detached => Poll::Ready(Ok(())),
        }
    }
}

/// What the handshake agreed, read from rustls's connection state.
pub(crate) fn tls_details(stream: &TlsStream<TcpStream>) -> TlsDetails {
    let connection = stream.get_ref().1;
    let version = match connection.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let cipher = connection
        .negotiated_cipher_suite()
        .map(|suite| format!("{:?}", suite.suite()))
        .unwrap_or_default();
    let client_certificate = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|certificate| crate::tls::fingerprint(certificate));
    TlsDetails {
        version,
        cipher,
        server_name: connection.server_name().map(str::to_owned),
        client_certificate,
        resumed: matches!(
            connection.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        ),
    }
}
