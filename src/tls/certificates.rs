//! Certificates and keys from PEM files, and the choice among them by the name a client asks
//! for (SNI, RFC 6066 §3).
//!
//! Every file is checked when it is loaded, not at the first handshake: a chain must hold at
//! least one certificate, its key must be one rustls can sign with and must belong to the
//! chain's first certificate, and every name an `[[tls.sni]]` entry claims must be one its
//! certificate is valid for. A mistake is then an error at start or at reload, which keeps
//! the old certificates, instead of failed handshakes later.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::config::{Errors, TlsConfig};

/// The certificates of `[tls]` and `[[tls.sni]]`, indexed by the names they serve.
#[derive(Debug)]
pub(super) struct CertificateSet {
    default: Arc<CertifiedKey>,
    /// Exact names, lowercase.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.org` stored as `example.org`: serves names exactly one label below it.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    count: usize,
}

impl CertificateSet {
    /// Loads every configured pair; `None` after recording each problem in `errors`.
    pub(super) fn load(config: &TlsConfig, errors: &mut Errors) -> Option<CertificateSet> {
        let default = load_pair(
            &config.certificate,
            &config.private_key,
            "tls.certificate",
            "tls.private_key",
            errors,
        );

        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (index, sni) in config.sni.iter().enumerate() {
            let key = format!("tls.sni[{index}]");
            let Some(pair) = load_pair(
                &sni.certificate,
                &sni.private_key,
                &format!("{key}.certificate"),
                &format!("{key}.private_key"),
                errors,
            ) else {
                continue;
            };
            for (position, name) in sni.names.iter().enumerate() {
                let name_key = format!("{key}.names[{position}]");
                if let Err(reason) = check_name(&pair, name) {
                    errors.push(name_key, reason);
                    continue;
                }
                let (table, stored) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent),
                    None => (&mut exact, name.as_str()),
                };
                if table.insert(stored.to_owned(), Arc::clone(&pair)).is_some() {
                    errors.push(
                        name_key,
                        format!("{name} is already served by an earlier entry"),
                    );
                }
            }
        }

        Some(CertificateSet {
            default: default?,
            exact,
            wildcard,
            count: 1 + config.sni.len(),
        })
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    fn choose(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(pair) = self.exact.get(&name) {
            return pair;
        }
        let parent = name.split_once('.').map(|(_, parent)| parent);
        parent
            .and_then(|parent| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for CertificateSet {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.choose(client_hello.server_name())))
    }
}

/// The CAs whose client certificates make a client a trusted relay.
pub(super) struct ClientAuthorities {
    roots: Arc<RootCertStore>,
}

impl ClientAuthorities {
    pub(super) fn load(path: &Path, errors: &mut Errors) -> Option<ClientAuthorities> {
        let key = "tls.client_ca";
        let certificates = read_certificates(path, key, errors)?;
        let mut roots = RootCertStore::empty();
        for (position, certificate) in certificates.into_iter().enumerate() {
            if let Err(error) = roots.add(certificate) {
                errors.push(
                    key,
                    format!(
                        "certificate {} in {} is not a usable CA certificate: {error}",
                        position + 1,
                        path.display()
                    ),
                );
                return None;
            }
        }
        Some(ClientAuthorities {
            roots: Arc::new(roots),
        })
    }

    /// A verifier that asks every client for a certificate but lets clients without one carry
    /// on as any other client: the certificate grants relaying, its absence denies nothing.
    pub(super) fn verifier(
        &self,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&self.roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|error| format!("cannot check client certificates: {error}"))
    }
}

fn load_pair(
    certificate_path: &Path,
    key_path: &Path,
    certificate_key: &str,
    private_key_key: &str,
    errors: &mut Errors,
) -> Option<Arc<CertifiedKey>> {
    let chain = read_certificates(certificate_path, certificate_key, errors);
    let key = read_private_key(key_path, private_key_key, errors);
    let (chain, key) = (chain?, key?);

    let provider = rustls::crypto::ring::default_provider();
    let signing_key = match provider.key_provider.load_private_key(key) {
        Ok(signing_key) => signing_key,
        Err(error) => {
            errors.push(
                private_key_key,
                format!(
                    "{} holds a key rustls cannot sign with ({error}); use an RSA (2048 bits or \
                     more), ECDSA P-256/P-384 or Ed25519 key",
                    key_path.display()
                ),
            );
            return None;
        }
    };
    let pair = CertifiedKey::new(chain, signing_key);
    match pair.keys_match() {
        Ok(()) => Some(Arc::new(pair)),
        // A key whose public half cannot be derived cannot be compared; the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Some(Arc::new(pair))
        }
        Err(error) => {
            errors.push(
                private_key_key,
                format!(
                    "{} is not the key of the first certificate in {} ({error}); the chain must \
                     start with the server certificate that matches this key",
                    key_path.display(),
                    certificate_path.display()
                ),
            );
            None
        }
    }
}

fn read_certificates(
    path: &Path,
    key: &str,
    errors: &mut Errors,
) -> Option<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let iterator = match CertificateDer::pem_file_iter(path) {
        Ok(iterator) => iterator,
        Err(error) => {
            errors.push(key, format!("cannot read {shown}: {error}"));
            return None;
        }
    };
    let mut chain = Vec::new();
    for certificate in iterator {
        match certificate {
            Ok(certificate) => chain.push(certificate),
            Err(error) => {
                errors.push(key, format!("{shown} is not valid PEM: {error}"));
                return None;
            }
        }
    }
    if chain.is_empty() {
        errors.push(
            key,
            format!("{shown} holds no CERTIFICATE block; expected a PEM certificate chain"),
        );
        return None;
    }
    Some(chain)
}

fn read_private_key(path: &Path, key: &str, errors: &mut Errors) -> Option<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_file(path) {
        Ok(private_key) => Some(private_key),
        Err(error) => {
            errors.push(
                key,
                format!(
                    "{} holds no usable private key ({error}); expected a PEM PRIVATE KEY, RSA \
                     PRIVATE KEY or EC PRIVATE KEY block",
                    path.display()
                ),
            );
            None
        }
    }
}

/// Whether the pair's certificate is valid for `name` (a wildcard is checked with a name one
/// label below it), so a typo in `names` is an error and not a certificate warning at clients.
fn check_name(pair: &CertifiedKey, name: &str) -> Result<(), String> {
    let probe = match name.strip_prefix("*.") {
        Some(parent) => format!("postern-sni-check.{parent}"),
        None => name.to_owned(),
    };
    let server_name = ServerName::try_from(probe.as_str())
        .map_err(|error| format!("{name} is not a host name: {error}"))?;
    let end_entity = pair.end_entity_cert().map_err(|error| error.to_string())?;
    let parsed = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|error| format!("the certificate cannot be parsed: {error}"))?;
    parsed
        .verify_is_valid_for_subject_name(&server_name)
        .map_err(|_| format!("the certificate is not valid for {name}; check its names (SAN)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair_for(names: &[&str]) -> Arc<CertifiedKey> {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        let key = PrivateKeyDer::try_from(generated.key_pair.serialize_der()).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider.key_provider.load_private_key(key).unwrap();
        Arc::new(CertifiedKey::new(
            vec![generated.cert.der().clone()],
            signing,
        ))
    }

    #[test]
    fn names_choose_exact_then_wildcard_then_default() {
        let default = pair_for(&["relay.example.net"]);
        let exact = pair_for(&["mx.example.org"]);
        let wildcard = pair_for(&["*.example.com"]);
        let set = CertificateSet {
            default: Arc::clone(&default),
            exact: HashMap::from([("mx.example.org".to_owned(), Arc::clone(&exact))]),
            wildcard: HashMap::from([("example.com".to_owned(), Arc::clone(&wildcard))]),
            count: 3,
        };
        assert!(Arc::ptr_eq(set.choose(Some("MX.Example.org.")), &exact));
        assert!(Arc::ptr_eq(set.choose(Some("a.example.com")), &wildcard));
        assert!(Arc::ptr_eq(set.choose(Some("a.b.example.com")), &default));
        assert!(Arc::ptr_eq(set.choose(Some("example.com")), &default));
        assert!(Arc::ptr_eq(set.choose(None), &default));
    }

    #[test]
    fn names_are_checked_against_the_certificate() {
        let pair = pair_for(&["mx.example.org", "*.example.com"]);
        assert_eq!(check_name(&pair, "mx.example.org"), Ok(()));
        assert_eq!(check_name(&pair, "*.example.com"), Ok(()));
        assert!(check_name(&pair, "mail.example.org").is_err());
        assert!(check_name(&pair, "*.example.org").is_err());
    }
}
