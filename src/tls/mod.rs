//! TLS for inbound sessions: the profile every listener serves, the certificates it serves them
//! with, and their reload while the relay runs.
//!
//! The profile is fixed in code, not configuration: TLS 1.3 and 1.2 only, and only the
//! forward-secret (ECDHE) suites of rustls's ring provider, which is all rustls implements. An
//! operator cannot weaken it by mistake; see docs/security.md for why nothing older is offered.
//!
//! Shards take a `rustls::ServerConfig` from [`InboundTls`] for each handshake. A reload builds
//! new ones from the same files and swaps them in; a handshake already under way, and every
//! session already encrypted, keeps the configuration it started with. The session cache and
//! the ticket keys survive a reload, so clients resume across it.

mod certificates;
pub mod client;

use std::sync::{Arc, RwLock};

use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;
use tracing::info;

use crate::config::{ConfigErrors, TlsConfig};
use certificates::{CertificateSet, ClientAuthorities};

/// Sessions remembered per process for resumption by session id (TLS 1.2) or stateful ticket.
/// At a few hundred bytes each, 16,384 sessions cost a few MiB.
const SESSION_CACHE_ENTRIES: usize = 16_384;

/// The server side of TLS, shared by every shard (`Arc`, read-mostly).
pub struct InboundTls {
    config: TlsConfig,
    source: String,
    resumption: Resumption,
    current: RwLock<Arc<Acceptors>>,
}

/// What makes resumption work across reloads: the session cache and the ticket keys.
struct Resumption {
    sessions: Arc<dyn StoresServerSessions>,
    tickets: Arc<dyn ProducesTickets>,
}

/// One server configuration per kind of listener.
struct Acceptors {
    /// For listeners that do not ask for client certificates.
    anonymous: Arc<ServerConfig>,
    /// For listeners with `client_certificates = true`; present when `tls.client_ca` is set.
    with_client_certificates: Option<Arc<ServerConfig>>,
    /// For the reload log line.
    certificate_count: usize,
}

/// What a successful reload loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    pub certificates: usize,
    pub client_ca: bool,
}

impl InboundTls {
    /// Reads every certificate, key and CA file of `config`. Every problem is reported at once,
    /// keyed like the configuration (`tls.sni[1].private_key`), with `source` as the file.
    pub fn load(config: &TlsConfig, source: &str) -> Result<InboundTls, ConfigErrors> {
        let tickets = rustls::crypto::ring::Ticketer::new().map_err(|error| {
            single_error(
                source,
                "tls",
                format!("cannot create TLS session ticket keys: {error}"),
            )
        })?;
        let resumption = Resumption {
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
            tickets,
        };
        let acceptors = build(config, source, &resumption)?;
        Ok(InboundTls {
            config: config.clone(),
            source: source.to_owned(),
            resumption,
            current: RwLock::new(Arc::new(acceptors)),
        })
    }

    /// The configuration for the next handshake on a listener of this kind.
    pub fn server_config(&self, client_certificates: bool) -> Arc<ServerConfig> {
        let acceptors = self.current();
        match (&acceptors.with_client_certificates, client_certificates) {
            (Some(verifying), true) => Arc::clone(verifying),
            // Start-up refuses `client_certificates` without a CA; a reload cannot remove one.
            _ => Arc::clone(&acceptors.anonymous),
        }
    }

    /// Reads the files again and, if all of them are usable, serves them from the next
    /// handshake on. On any error nothing changes: the relay keeps serving what it had.
    pub fn reload(&self) -> Result<Reloaded, ConfigErrors> {
        let acceptors = build(&self.config, &self.source, &self.resumption)?;
        let reloaded = Reloaded {
            certificates: acceptors.certificate_count,
            client_ca: acceptors.with_client_certificates.is_some(),
        };
        *self
            .current
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = Arc::new(acceptors);
        info!(
            certificates = reloaded.certificates,
            client_ca = reloaded.client_ca,
            "TLS certificates reloaded; new handshakes use them, open sessions keep theirs"
        );
        Ok(reloaded)
    }

    fn current(&self) -> Arc<Acceptors> {
        // A writer only swaps an Arc, so a poisoned lock still holds a whole value.
        let guard = self
            .current
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        Arc::clone(&guard)
    }
}

fn build(
    config: &TlsConfig,
    source: &str,
    resumption: &Resumption,
) -> Result<Acceptors, ConfigErrors> {
    let mut errors = crate::config::Errors::new(source);
    let certificates = CertificateSet::load(config, &mut errors);
    let authorities = config
        .client_ca
        .as_ref()
        .and_then(|path| ClientAuthorities::load(path, &mut errors));
    errors.into_result()?;
    let certificates = Arc::new(certificates.expect("loading without errors yields a set"));
    let certificate_count = certificates.len();

    let anonymous = server_config(resumption, &certificates, None)
        .map_err(|error| single_error(source, "tls", error))?;
    let with_client_certificates = match authorities {
        None => None,
        Some(authorities) => Some(
            server_config(resumption, &certificates, Some(&authorities))
                .map_err(|error| single_error(source, "tls.client_ca", error))?,
        ),
    };
    Ok(Acceptors {
        anonymous,
        with_client_certificates,
        certificate_count,
    })
}

fn server_config(
    resumption: &Resumption,
    certificates: &Arc<CertificateSet>,
    authorities: Option<&ClientAuthorities>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| format!("the TLS profile is not supported: {error}"))?;
    let builder = match authorities {
        None => builder.with_no_client_auth(),
        Some(authorities) => builder.with_client_cert_verifier(authorities.verifier(provider)?),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(certificates) as _);
    config.session_storage = Arc::clone(&resumption.sessions);
    config.ticketer = Arc::clone(&resumption.tickets);
    // The client's preference decides among suites that are all strong; honouring ours would
    // only cost clients without AES hardware the faster ChaCha20.
    config.ignore_client_order = false;
    Ok(Arc::new(config))
}

fn single_error(source: &str, key: &str, reason: String) -> ConfigErrors {
    let mut errors = crate::config::Errors::new(source);
    errors.push(key, reason);
    errors.into_result().expect_err("one error was just pushed")
}

/// A short, stable name for a client certificate in logs: the first 16 bytes of the SHA-256 of
/// its DER, in hex, as `openssl x509 -fingerprint -sha256` prints it (without colons).
pub fn fingerprint(certificate: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, certificate);
    digest.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
