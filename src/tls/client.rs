//! TLS for outbound delivery: one client configuration per kind of route policy.
//!
//! `tls = "required"` verifies the next hop's certificate against the route's `tls_ca_file`, or
//! the system's CA bundle, for the host name postern connected to (the smart host as written,
//! or the MX host name). `tls = "opportunistic"` encrypts without verifying (RFC 7435): it
//! protects against passive listeners only, which is what opportunistic TLS between MTAs is,
//! and it must not fail delivery over a self-signed certificate. Both speak the inbound
//! profile: TLS 1.3 and 1.2, forward-secret suites only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{Config, ConfigErrors, Errors, OutboundTls};

/// Where Debian, Fedora/RHEL and Alpine-like systems keep their CA bundle, in the order tried;
/// `SSL_CERT_FILE` comes first when set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The client configurations delivery uses, built once at start and shared by the shards.
pub struct OutboundTlsConfigs {
    opportunistic: Arc<ClientConfig>,
    /// For `required` routes, by route index.
    verifying: HashMap<usize, Arc<ClientConfig>>,
}

impl OutboundTlsConfigs {
    /// Loads the CA files every `required` route needs; every problem reported at once.
    pub fn load(config: &Config) -> Result<OutboundTlsConfigs, ConfigErrors> {
        let mut errors = Errors::new(&config.source);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut by_file: HashMap<PathBuf, Arc<ClientConfig>> = HashMap::new();
        let mut verifying = HashMap::new();
        for (index, route) in config.routes.iter().enumerate() {
            if route.tls != OutboundTls::Required {
                continue;
            }
            let (file, key) = match &route.tls_ca_file {
                Some(file) => (file.clone(), format!("route[{index}].tls_ca_file")),
                None => match system_bundle() {
                    Some(file) => (file, format!("route[{index}].tls")),
                    None => {
                        errors.push(
                            format!("route[{index}].tls"),
                            "is \"required\" but no system CA bundle was found (tried \
                             SSL_CERT_FILE and the usual paths); install ca-certificates or set \
                             tls_ca_file on this route",
                        );
                        continue;
                    }
                },
            };
            if let Some(shared) = by_file.get(&file) {
                verifying.insert(index, Arc::clone(shared));
                continue;
            }
            let Some(roots) = read_roots(&file, &key, &mut errors) else {
                continue;
            };
            match verifying_config(&provider, roots) {
                Ok(client) => {
                    by_file.insert(file, Arc::clone(&client));
                    verifying.insert(index, client);
                }
                Err(reason) => errors.push(key, reason),
            }
        }
        let opportunistic = opportunistic_config(&provider);
        if let Err(reason) = &opportunistic {
            errors.push("route", reason.clone());
        }
        errors.into_result()?;
        Ok(OutboundTlsConfigs {
            opportunistic: opportunistic.map_err(|_| unreachable_error())?,
            verifying,
        })
    }

    /// The configuration for a route's policy; `None` for `tls = "none"`.
    pub fn for_route(&self, index: usize, policy: OutboundTls) -> Option<Arc<ClientConfig>> {
        match policy {
            OutboundTls::None => None,
            OutboundTls::Opportunistic => Some(Arc::clone(&self.opportunistic)),
            OutboundTls::Required => self.verifying.get(&index).cloned(),
        }
    }
}

/// Never built: an error was pushed and returned above.
fn unreachable_error() -> ConfigErrors {
    ConfigErrors { errors: Vec::new() }
}

fn system_bundle() -> Option<PathBuf> {
    let from_environment = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    from_environment
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|path| path.is_file())
}

fn read_roots(file: &Path, key: &str, errors: &mut Errors) -> Option<RootCertStore> {
    let shown = file.display();
    let certificates = match CertificateDer::pem_file_iter(file) {
        Ok(iterator) => iterator.collect::<Result<Vec<_>, _>>(),
        Err(error) => {
            errors.push(key, format!("cannot read {shown}: {error}"));
            return None;
        }
    };
    let certificates = match certificates {
        Ok(certificates) => certificates,
        Err(error) => {
            errors.push(key, format!("{shown} is not valid PEM: {error}"));
            return None;
        }
    };
    let mut roots = RootCertStore::empty();
    // A system bundle may hold a certificate webpki cannot use; the others still count.
    let (added, _ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        errors.push(key, format!("{shown} holds no usable CA certificate"));
        return None;
    }
    Some(roots)
}

fn verifying_config(
    provider: &Arc<CryptoProvider>,
    roots: RootCertStore,
) -> Result<Arc<ClientConfig>, String> {
    let config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| format!("the TLS profile is not supported: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn opportunistic_config(provider: &Arc<CryptoProvider>) -> Result<Arc<ClientConfig>, String> {
    let verifier = Arc::new(AnyCertificate {
        provider: Arc::clone(provider),
    });
    let config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| format!("the TLS profile is not supported: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts whatever certificate the next hop shows, for opportunistic TLS only. The handshake
/// signatures are still checked, so the session key really is shared with the holder of the
/// certificate's key; what is not checked is who that holder is.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
