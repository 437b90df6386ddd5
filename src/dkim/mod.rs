//! DKIM signing at ingest (RFC 6376, RFC 8463 for Ed25519).
//!
//! The keys of every `[[dkim]]` entry are read once at start into [`SigningKeys`], shared
//! read-only by all shards. A session that may sign (a trusted client; see
//! `Session::may_sign`) feeds each message through a [`MessageSigner`] while it streams in: the
//! header fields to sign are captured (bounded) and the body hash is computed on the fly, so no
//! second copy of the message is made. At end of data the signer builds one `DKIM-Signature:`
//! field per key of the header From domain. This module does no I/O after start-up and never
//! blocks; it never logs key material or message content.

pub mod canonical;
pub mod key;
pub mod keygen;
mod signer;

use crate::config::{ConfigError, ConfigErrors, DkimConfig};

pub use key::SigningKey;
pub use signer::{MessageSigner, SIGNED_FIELDS};

/// One `[[dkim]]` entry with its key loaded.
#[derive(Debug)]
pub struct DomainKey {
    /// The `d=` domain, in lowercase.
    pub domain: String,
    /// The `s=` selector, in lowercase.
    pub selector: String,
    pub key: SigningKey,
}

/// Every configured signing key, in configuration order.
#[derive(Debug, Default)]
pub struct SigningKeys {
    keys: Vec<DomainKey>,
}

impl SigningKeys {
    /// Keys already loaded (tests and fuzz targets; the relay uses [`SigningKeys::load`]).
    pub fn new(keys: Vec<DomainKey>) -> SigningKeys {
        SigningKeys { keys }
    }

    /// Loads the key of every entry. Every bad key is reported, each as an error at
    /// `dkim[i].private_key` in `source` (the configuration file) naming the key file.
    pub fn load(source: &str, entries: &[DkimConfig]) -> Result<SigningKeys, ConfigErrors> {
        let mut keys = Vec::with_capacity(entries.len());
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match key::load_key_file(&entry.private_key, entry.algorithm) {
                Ok(key) => keys.push(DomainKey {
                    domain: entry.domain.to_ascii_lowercase(),
                    selector: entry.selector.to_ascii_lowercase(),
                    key,
                }),
                Err(reason) => errors.push(ConfigError {
                    file: source.to_owned(),
                    key: format!("dkim[{index}].private_key"),
                    reason: format!("{}: {reason}", entry.private_key.display()),
                }),
            }
        }
        if errors.is_empty() {
            Ok(SigningKeys { keys })
        } else {
            Err(ConfigErrors { errors })
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that sign for `domain` (compared without regard to case), in configuration
    /// order: one signature each.
    pub fn for_domain<'a>(&'a self, domain: &'a str) -> impl Iterator<Item = &'a DomainKey> + 'a {
        self.keys
            .iter()
            .filter(move |key| key.domain.eq_ignore_ascii_case(domain))
    }

    /// Whether any key signs for `domain`.
    pub fn signs_for(&self, domain: &str) -> bool {
        self.for_domain(domain).next().is_some()
    }
}
