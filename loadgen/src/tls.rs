//! TLS for `send` and `sink`: rustls with its ring provider only (DESIGN.md §6), driven over
//! glommio streams by futures-rustls. This file owns the stream that is plain or encrypted
//! (`Wire`, so a session can switch at STARTTLS, RFC 3207), the client configuration (verify
//! against `--ca FILE`, or `--insecure`: accept any certificate but still check the handshake
//! signatures), and the server configuration (a PEM certificate and key, or a self-signed
//! certificate for `localhost` made at start-up). It does no SMTP.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use postern::tls::client::AcceptAnyCertificate;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig};

/// How a session uses TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    None,
    /// Plain connect, then STARTTLS after the first EHLO (RFC 3207).
    StartTls,
    /// TLS from the first octet (RFC 8314).
    Implicit,
}

/// A connection that is plain, or TLS on the client or server side.
pub enum Wire {
    Plain(TcpStream),
    Client(Box<futures_rustls::client::TlsStream<TcpStream>>),
    Server(Box<futures_rustls::server::TlsStream<TcpStream>>),
    /// Only while a handshake is in progress; any I/O on it is a bug and fails.
    Upgrading,
}

impl Wire {
    pub fn is_tls(&self) -> bool {
        matches!(self, Wire::Client(_) | Wire::Server(_))
    }

    /// Takes the plain stream out for a handshake.
    pub fn take_plain(&mut self) -> io::Result<TcpStream> {
        match std::mem::replace(self, Wire::Upgrading) {
            Wire::Plain(stream) => Ok(stream),
            other => {
                *self = other;
                Err(io::Error::other("TLS is already active on this connection"))
            }
        }
    }
}

fn upgrading() -> io::Error {
    io::Error::other("I/O on a connection in the middle of a TLS handshake")
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wire::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Wire::Client(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
            Wire::Server(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
            Wire::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wire::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Wire::Client(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
            Wire::Server(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
            Wire::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Wire::Client(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            Wire::Server(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            Wire::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(stream) => Pin::new(stream).poll_close(cx),
            Wire::Client(stream) => Pin::new(stream.as_mut()).poll_close(cx),
            Wire::Server(stream) => Pin::new(stream.as_mut()).poll_close(cx),
            Wire::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client side: verify against the certificates in `ca`, or accept any (`insecure`).
pub fn client_config(ca: Option<&Path>, insecure: bool) -> anyhow::Result<Arc<ClientConfig>> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match (ca, insecure) {
        (_, true) => builder
            .dangerous()
            // `--insecure`: any certificate, but the handshake signatures are still verified,
            // so the session is at least encrypted with the key the server holds.
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider())))
            .with_no_client_auth(),
        (Some(ca), false) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in read_certificates(ca)? {
                roots.add(certificate).map_err(|error| {
                    anyhow::anyhow!("--ca {}: unusable certificate: {error}", ca.display())
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (None, false) => anyhow::bail!(
            "TLS needs a way to check the server: give --ca FILE (PEM) or, for a test server, \
             --insecure"
        ),
    };
    Ok(Arc::new(config))
}

/// The server side: the PEM certificate chain and key given, or a fresh self-signed
/// certificate for `localhost` and `127.0.0.1` (clients then need `--insecure`).
pub fn server_config(
    certificate: Option<&Path>,
    key: Option<&Path>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let (chain, key) = match (certificate, key) {
        (Some(certificate), Some(key)) => {
            let chain = read_certificates(certificate)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
                anyhow::anyhow!("--tls-key {}: no usable PEM key: {error}", key.display())
            })?;
            (chain, key)
        }
        (None, None) => {
            let generated = rcgen::generate_simple_self_signed(vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ])?;
            let key = PrivateKeyDer::try_from(generated.key_pair.serialize_der())
                .map_err(|error| anyhow::anyhow!("the generated key is unusable: {error}"))?;
            (vec![generated.cert.der().clone()], key)
        }
        _ => anyhow::bail!("give both --tls-cert and --tls-key, or neither for a self-signed one"),
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| {
            anyhow::anyhow!("{}: cannot read PEM certificates: {error}", path.display())
        })?;
    if certificates.is_empty() {
        anyhow::bail!("{}: no certificate in the file", path.display());
    }
    Ok(certificates)
}

/// The name to check the server's certificate against.
pub fn server_name(name: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|error| {
        anyhow::anyhow!("--tls-name `{name}` is not a host name or address: {error}")
    })
}
