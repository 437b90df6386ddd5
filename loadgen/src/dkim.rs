//! DKIM verification in the sink (RFC 6376), with mail-auth 0.13 on ring (DESIGN.md §6). The
//! public keys come from the command line (`--dkim-key selector._domainkey.domain=FILE`), never
//! from DNS: this file owns a key table that answers every TXT lookup mail-auth makes, with the
//! key when it was given and "no such record" otherwise, so verification never reaches a
//! resolver and its future completes on a glommio thread without a tokio runtime. Verdicts are
//! data (`DkimVerdict`), not errors.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DnsError, Error, MessageAuthenticator, Parameters,
    ResolverCache, Txt,
};

/// What the sink concludes about one message's signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DkimVerdict {
    /// At least one signature verified.
    Pass,
    /// Signatures were present and none verified (bad signature, body hash, unknown key).
    Fail,
    /// No DKIM-Signature header.
    None,
}

/// The keys given on the command line, as the TXT records mail-auth asks for.
pub struct DkimKeys {
    records: HashMap<Box<str>, Txt>,
}

impl DkimKeys {
    /// Parses `selector._domainkey.domain=FILE` arguments. FILE holds the DNS TXT record text
    /// (`v=DKIM1; k=ed25519; p=…`), bare or as a zone-file fragment with quoted strings (as
    /// `opendkim-genkey` writes it).
    pub fn from_arguments(arguments: &[String]) -> anyhow::Result<DkimKeys> {
        let mut records = HashMap::new();
        for argument in arguments {
            let (name, file) = argument.split_once('=').ok_or_else(|| {
                anyhow::anyhow!(
                    "--dkim-key `{argument}`: write it as selector._domainkey.domain=FILE"
                )
            })?;
            if !name.contains("._domainkey.") {
                anyhow::bail!("--dkim-key `{name}`: the name must be selector._domainkey.domain");
            }
            let text = std::fs::read_to_string(Path::new(file)).map_err(|error| {
                anyhow::anyhow!("--dkim-key {name}: cannot read {file}: {error}")
            })?;
            let record = record_text(&text);
            let key = DomainKey::parse(record.as_bytes()).map_err(|error| {
                anyhow::anyhow!("--dkim-key {name}: {file} is not a DKIM key record: {error}")
            })?;
            records.insert(fqdn(name), Txt::DomainKey(Arc::new(key)));
        }
        Ok(DkimKeys { records })
    }
}

/// The record text: the quoted strings joined when there are any, else the whole text.
fn record_text(text: &str) -> String {
    let quoted: Vec<&str> = text.split('"').skip(1).step_by(2).collect();
    if quoted.is_empty() {
        text.trim().to_owned()
    } else {
        quoted.concat()
    }
}

/// mail-auth asks with a trailing dot and in lower case.
fn fqdn(name: &str) -> Box<str> {
    let mut name = name.trim().to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name.into_boxed_str()
}

impl ResolverCache<Box<str>, Txt> for DkimKeys {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Every name gets an answer, so mail-auth never falls through to DNS.
        Some(
            self.records
                .get(name)
                .cloned()
                .unwrap_or(Txt::Error(Error::Dns(DnsError::RecordNotFound(
                    ResponseCode::NXDomain,
                )))),
        )
    }

    fn remove<Q>(&self, _name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _key: Box<str>, _value: Txt, _valid_until: Instant) {}
}

/// Verifies a message's signatures against the key table.
pub struct DkimVerifier {
    keys: DkimKeys,
    authenticator: MessageAuthenticator,
}

impl std::fmt::Debug for DkimVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DkimVerifier {{ keys: {} }}", self.keys.records.len())
    }
}

impl DkimVerifier {
    pub fn new(keys: DkimKeys) -> anyhow::Result<DkimVerifier> {
        // The resolver is never queried (see `DkimKeys::get`); it exists because mail-auth's
        // verifier is a method on it. Building it opens no socket.
        let authenticator = MessageAuthenticator::new(Default::default(), Default::default())
            .map_err(|error| anyhow::anyhow!("cannot set up DKIM verification: {error}"))?;
        Ok(DkimVerifier {
            keys,
            authenticator,
        })
    }

    pub async fn verify(&self, message: &[u8]) -> DkimVerdict {
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            return DkimVerdict::Fail;
        };
        if parsed.dkim_headers.is_empty() {
            return DkimVerdict::None;
        }
        let outputs = self
            .authenticator
            .verify_dkim(Parameters::new(&parsed).with_txt_cache(&self.keys))
            .await;
        if outputs
            .iter()
            .any(|output| matches!(output.result(), DkimResult::Pass))
        {
            DkimVerdict::Pass
        } else {
            DkimVerdict::Fail
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_text_from_a_zone_fragment() {
        let zone = "s._domainkey IN TXT ( \"v=DKIM1; k=rsa; \"\n  \"p=MIIB\" )  ; comment\n";
        assert_eq!(record_text(zone), "v=DKIM1; k=rsa; p=MIIB");
        assert_eq!(record_text(" v=DKIM1; p=abc\n"), "v=DKIM1; p=abc");
    }

    #[test]
    fn names_are_fully_qualified_lower_case() {
        assert_eq!(
            &*fqdn("S._domainkey.Example.COM"),
            "s._domainkey.example.com."
        );
    }
}
