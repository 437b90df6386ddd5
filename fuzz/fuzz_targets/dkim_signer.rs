//! Fuzzes the DKIM signer differentially: the signature fields of a message (header capture,
//! From parsing, body canonicalization and hash) must not depend on where the message is split.
//! Ed25519 signatures are deterministic and `t=` is fixed, so "the same" means byte for byte.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use postern::config::DkimAlgorithm;
use postern::dkim::key::parse_private_key;
use postern::dkim::{DomainKey, MessageSigner, SigningKeys};

/// An Ed25519 key for the fuzzer only, as `openssl genpkey -algorithm ed25519` writes it.
const KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
    MC4CAQAwBQYDK2VwBCIEIKmC04d8cEpPiQKNSZoHyj0EWsP3tbLqBimkpH4aBw8s\n\
    -----END PRIVATE KEY-----\n";

fn sign(signer: &mut MessageSigner, message: &[u8], piece: usize) -> Vec<u8> {
    signer.begin();
    for chunk in message.chunks(piece) {
        signer.update(chunk);
    }
    signer.finish(1_700_000_000).to_vec()
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, message)) = data.split_first() else {
        return;
    };
    let key = parse_private_key(KEY.as_bytes(), DkimAlgorithm::Ed25519Sha256)
        .expect("the fuzz key loads");
    let keys = Arc::new(SigningKeys::new(vec![DomainKey {
        domain: "example.com".to_owned(),
        selector: "fuzz".to_owned(),
        key,
    }]));
    let mut signer = MessageSigner::new(keys);
    let whole = sign(&mut signer, message, message.len().max(1));
    let split = sign(&mut signer, message, usize::from(control) + 1);
    assert_eq!(whole, split);
});
