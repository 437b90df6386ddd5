//! DKIM private keys: PEM files in, ring key pairs out, and the public half as DNS publishes it.
//!
//! Both algorithms take PKCS#8 ("PRIVATE KEY"); RSA also takes PKCS#1 ("RSA PRIVATE KEY"), which
//! older tools write. Ed25519 keys are loaded with ring's lenient PKCS#8 path because OpenSSL
//! writes version 1 documents (no public key inside), which ring's strict loader refuses. RSA
//! keys shorter than 2048 bits are refused (RFC 8301 §3.2 only requires 1024, but 1024-bit keys
//! have been factored at mail-provider scale and major receivers ignore them). Keys are parsed
//! once at start and then only read; nothing here logs or prints private key material.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};

use crate::config::DkimAlgorithm;

/// The shortest RSA modulus accepted, in bits.
pub const RSA_BITS_MIN: usize = 2048;

/// The longest RSA modulus ring signs with, in bits.
pub const RSA_BITS_MAX: usize = 4096;

/// The largest key file read; real ones are under 4 KiB.
const KEY_FILE_MAX_BYTES: u64 = 64 * 1024;

/// A loaded private key, ready to sign.
pub enum SigningKey {
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key itself is never shown; the algorithm and size are enough to tell keys apart.
        match self {
            SigningKey::Ed25519(_) => f.write_str("SigningKey::Ed25519"),
            SigningKey::Rsa(key) => write!(f, "SigningKey::Rsa({} bits)", rsa_bits(key)),
        }
    }
}

impl SigningKey {
    /// The `a=` tag value (RFC 6376 §3.5, RFC 8463 §3).
    pub fn algorithm_tag(&self) -> &'static str {
        match self {
            SigningKey::Ed25519(_) => "ed25519-sha256",
            SigningKey::Rsa(_) => "rsa-sha256",
        }
    }

    /// The `k=` tag of the DNS key record (RFC 6376 §3.6.1, RFC 8463 §4).
    pub fn key_type_tag(&self) -> &'static str {
        match self {
            SigningKey::Ed25519(_) => "ed25519",
            SigningKey::Rsa(_) => "rsa",
        }
    }

    /// The `p=` tag of the DNS key record: for RSA the SubjectPublicKeyInfo DER (RFC 6376
    /// §3.6.1), for Ed25519 the bare 32-byte public key (RFC 8463 §4), both in base64.
    pub fn public_key_base64(&self) -> String {
        let der = match self {
            SigningKey::Ed25519(key) => key.public_key().as_ref().to_vec(),
            SigningKey::Rsa(key) => rsa_subject_public_key_info(key.public_key().as_ref()),
        };
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    /// Signs `data_hash_input`, the canonical header fields followed by the canonical
    /// DKIM-Signature field with an empty `b=` (RFC 6376 §3.7), and appends the signature.
    /// RSA hashes the input itself; Ed25519 signs its SHA-256 digest (RFC 8463 §3).
    pub fn sign(
        &self,
        data_hash_input: &[u8],
        random: &ring::rand::SystemRandom,
        signature: &mut Vec<u8>,
    ) -> Result<(), ring::error::Unspecified> {
        match self {
            SigningKey::Ed25519(key) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, data_hash_input);
                signature.extend_from_slice(key.sign(digest.as_ref()).as_ref());
                Ok(())
            }
            SigningKey::Rsa(key) => {
                let start = signature.len();
                signature.resize(start + key.public().modulus_len(), 0);
                key.sign(
                    &RSA_PKCS1_SHA256,
                    random,
                    data_hash_input,
                    &mut signature[start..],
                )
            }
        }
    }
}

/// Reads and parses the key file at `path` for `algorithm`. The error is one sentence that names
/// the problem and, where there is one, the fix.
pub fn load_key_file(path: &Path, algorithm: DkimAlgorithm) -> Result<SigningKey, String> {
    let metadata = fs::metadata(path).map_err(|error| format!("cannot inspect: {error}"))?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    if metadata.permissions().mode() & 0o007 != 0 {
        return Err(format!(
            "the private key is readable by every user (mode {:o}); run `chmod 600` on it",
            metadata.permissions().mode() & 0o777
        ));
    }
    if metadata.len() > KEY_FILE_MAX_BYTES {
        return Err(format!(
            "{} bytes is too large for a PEM private key",
            metadata.len()
        ));
    }
    let text = fs::read(path).map_err(|error| format!("cannot read: {error}"))?;
    parse_private_key(&text, algorithm)
}

/// Parses a PEM private key for `algorithm`.
pub fn parse_private_key(text: &[u8], algorithm: DkimAlgorithm) -> Result<SigningKey, String> {
    let (label, der) = pem_block(text)?;
    match (algorithm, label.as_str()) {
        (DkimAlgorithm::Ed25519Sha256, "PRIVATE KEY") => {
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                .map(SigningKey::Ed25519)
                .map_err(|rejected| rejection(algorithm, rejected))
        }
        (DkimAlgorithm::RsaSha256, "PRIVATE KEY") => RsaKeyPair::from_pkcs8(&der)
            .map_err(|rejected| rejection(algorithm, rejected))
            .and_then(checked_rsa),
        (DkimAlgorithm::RsaSha256, "RSA PRIVATE KEY") => RsaKeyPair::from_der(&der)
            .map_err(|rejected| rejection(algorithm, rejected))
            .and_then(checked_rsa),
        (DkimAlgorithm::Ed25519Sha256, other) => Err(format!(
            "expected a PKCS#8 \"PRIVATE KEY\" PEM block for ed25519-sha256, found \"{other}\""
        )),
        (DkimAlgorithm::RsaSha256, other) => Err(format!(
            "expected a \"PRIVATE KEY\" or \"RSA PRIVATE KEY\" PEM block for rsa-sha256, \
             found \"{other}\""
        )),
    }
}

fn checked_rsa(key: RsaKeyPair) -> Result<SigningKey, String> {
    let bits = rsa_bits(&key);
    if bits < RSA_BITS_MIN {
        return Err(format!(
            "the RSA key has {bits} bits; at least {RSA_BITS_MIN} are required"
        ));
    }
    Ok(SigningKey::Rsa(key))
}

fn rsa_bits(key: &RsaKeyPair) -> usize {
    key.public().modulus_len() * 8
}

/// Turns ring's terse rejection into a sentence with the likely cause.
fn rejection(algorithm: DkimAlgorithm, rejected: ring::error::KeyRejected) -> String {
    let expected = match algorithm {
        DkimAlgorithm::Ed25519Sha256 => "an Ed25519 key",
        DkimAlgorithm::RsaSha256 => "an RSA key",
    };
    match rejected.to_string().as_str() {
        "WrongAlgorithm" => format!(
            "the file does not hold {expected}; check `algorithm` against the key (`openssl pkey \
             -in FILE -noout -text` shows its type)"
        ),
        "TooSmall" => format!(
            "the RSA key is shorter than {RSA_BITS_MIN} bits; generate a new one with `postern \
             dkim keygen --algorithm rsa-sha256`"
        ),
        "TooLarge" => {
            format!("the RSA key is longer than {RSA_BITS_MAX} bits, which ring cannot sign with")
        }
        "PrivateModulusLenNotMultipleOf512Bits" => {
            "the RSA key size is not a multiple of 512 bits".to_owned()
        }
        other => format!("{expected} was expected, but the key was refused ({other})"),
    }
}

/// The first PEM block in `text`: its label and its decoded contents (RFC 7468).
fn pem_block(text: &[u8]) -> Result<(String, Vec<u8>), String> {
    let text = std::str::from_utf8(text).map_err(|_| "not a PEM file (not text)".to_owned())?;
    let not_pem = || "not a PEM file (no -----BEGIN ...----- line)".to_owned();
    let begin = text.find("-----BEGIN ").ok_or_else(not_pem)?;
    let after_begin = &text[begin + "-----BEGIN ".len()..];
    let label_end = after_begin.find("-----").ok_or_else(not_pem)?;
    let label = &after_begin[..label_end];
    if label.contains("ENCRYPTED") {
        return Err(
            "the key is encrypted with a passphrase; store it decrypted (`openssl pkey -in FILE \
             -out PLAIN`), readable by postern only"
                .to_owned(),
        );
    }
    let contents = &after_begin[label_end + "-----".len()..];
    let end_line = format!("-----END {label}-----");
    let end = contents
        .find(&end_line)
        .ok_or_else(|| format!("the PEM block has no `{end_line}` line"))?;
    let base64_text: String = contents[..end]
        .chars()
        .filter(|character| !character.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64_text)
        .map_err(|error| format!("the PEM block is not valid base64 ({error})"))?;
    Ok((label.to_owned(), der))
}

/// Wraps a DER RSAPublicKey (what ring gives) in the SubjectPublicKeyInfo DKIM publishes
/// (RFC 5280 §4.1, algorithm rsaEncryption with NULL parameters, RFC 8017 Appendix C).
pub fn rsa_subject_public_key_info(rsa_public_key: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = Vec::with_capacity(rsa_public_key.len() + 8);
    bit_string.push(0x03);
    der_length(rsa_public_key.len() + 1, &mut bit_string);
    bit_string.push(0x00); // No unused bits.
    bit_string.extend_from_slice(rsa_public_key);

    let mut info = Vec::with_capacity(ALGORITHM.len() + bit_string.len() + 8);
    info.push(0x30);
    der_length(ALGORITHM.len() + bit_string.len(), &mut info);
    info.extend_from_slice(ALGORITHM);
    info.extend_from_slice(&bit_string);
    info
}

/// A DER definite length (X.690 §8.1.3).
fn der_length(length: usize, out: &mut Vec<u8>) {
    if length < 0x80 {
        out.push(length as u8);
        return;
    }
    let octets = length.to_be_bytes();
    let first = octets
        .iter()
        .position(|&octet| octet != 0)
        .expect("a length of 0x80 or more has a non-zero octet");
    out.push(0x80 | (octets.len() - first) as u8);
    out.extend_from_slice(&octets[first..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ed25519 key as `openssl genpkey -algorithm ed25519` writes it: PKCS#8 version 1.
    const OPENSSL_ED25519: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIKmC04d8cEpPiQKNSZoHyj0EWsP3tbLqBimkpH4aBw8s\n\
        -----END PRIVATE KEY-----\n";

    #[test]
    fn openssl_ed25519_keys_load() {
        let key = parse_private_key(OPENSSL_ED25519.as_bytes(), DkimAlgorithm::Ed25519Sha256)
            .expect("a PKCS#8 v1 Ed25519 key loads");
        assert_eq!(key.algorithm_tag(), "ed25519-sha256");
        let public = base64::engine::general_purpose::STANDARD
            .decode(key.public_key_base64())
            .unwrap();
        assert_eq!(public.len(), 32);
    }

    #[test]
    fn wrong_labels_algorithms_and_garbage_are_explained() {
        let as_rsa =
            parse_private_key(OPENSSL_ED25519.as_bytes(), DkimAlgorithm::RsaSha256).unwrap_err();
        assert!(as_rsa.contains("does not hold an RSA key"), "{as_rsa}");
        let garbage = parse_private_key(b"hello", DkimAlgorithm::Ed25519Sha256).unwrap_err();
        assert!(garbage.contains("not a PEM file"), "{garbage}");
        let certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let wrong =
            parse_private_key(certificate.as_bytes(), DkimAlgorithm::Ed25519Sha256).unwrap_err();
        assert!(wrong.contains("found \"CERTIFICATE\""), "{wrong}");
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED \
                         PRIVATE KEY-----\n";
        let refused =
            parse_private_key(encrypted.as_bytes(), DkimAlgorithm::RsaSha256).unwrap_err();
        assert!(refused.contains("passphrase"), "{refused}");
    }

    #[test]
    fn der_lengths() {
        let encode = |length| {
            let mut out = Vec::new();
            der_length(length, &mut out);
            out
        };
        assert_eq!(encode(0x7f), [0x7f]);
        assert_eq!(encode(0x80), [0x81, 0x80]);
        assert_eq!(encode(0x10e), [0x82, 0x01, 0x0e]);
    }
}
