//! New DKIM key pairs for `postern dkim keygen`, and the DNS record and configuration that
//! publish and use them.
//!
//! Ed25519 keys are made here with ring's random generator and written as PKCS#8 version 1,
//! the form OpenSSL writes and reads; ring reads it through the lenient loader. ring cannot
//! generate RSA keys and the `rsa` crate is not allowed (RUSTSEC-2023-0071), so RSA keys come
//! from `openssl genpkey`, run as a subprocess; its output is checked by loading it with ring
//! before anything is written. This module writes no files: the caller does.

use std::fmt::Write as _;
use std::io;
use std::process::{Command, Stdio};

use base64::Engine as _;
use ring::rand::SecureRandom;

use super::key::{parse_private_key, SigningKey, RSA_BITS_MAX, RSA_BITS_MIN};
use crate::config::DkimAlgorithm;

/// The RSA size used when none is asked for.
pub const RSA_BITS_DEFAULT: usize = 2048;

/// A DNS TXT character-string holds at most 255 octets (RFC 1035 §3.3).
const TXT_STRING_MAX_BYTES: usize = 255;

/// The DER prefix of an Ed25519 PKCS#8 v1 document (RFC 8410 §7): version 0, algorithm
/// id-Ed25519, and the 32-byte private key as an OCTET STRING inside the privateKey OCTET STRING.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A freshly generated private key: its PEM text (to be written, mode 0600) and the loaded key.
pub struct GeneratedKey {
    pub pem: String,
    pub key: SigningKey,
}

/// Generates a key for `algorithm`; `rsa_bits` only applies to RSA (default 2048).
pub fn generate(algorithm: DkimAlgorithm, rsa_bits: Option<usize>) -> Result<GeneratedKey, String> {
    let pem = match algorithm {
        DkimAlgorithm::Ed25519Sha256 => {
            if rsa_bits.is_some() {
                return Err("--bits only applies to rsa-sha256".to_owned());
            }
            ed25519_pem()?
        }
        DkimAlgorithm::RsaSha256 => {
            let bits = rsa_bits.unwrap_or(RSA_BITS_DEFAULT);
            if !(RSA_BITS_MIN..=RSA_BITS_MAX).contains(&bits) || !bits.is_multiple_of(512) {
                return Err(format!(
                    "--bits {bits}: choose a multiple of 512 from {RSA_BITS_MIN} to {RSA_BITS_MAX}"
                ));
            }
            openssl_rsa_pem(bits)?
        }
    };
    let key = parse_private_key(pem.as_bytes(), algorithm)
        .map_err(|reason| format!("the generated key does not load: {reason}"))?;
    Ok(GeneratedKey { pem, key })
}

fn ed25519_pem() -> Result<String, String> {
    let mut document = [0u8; ED25519_PKCS8_V1_PREFIX.len() + 32];
    document[..ED25519_PKCS8_V1_PREFIX.len()].copy_from_slice(&ED25519_PKCS8_V1_PREFIX);
    ring::rand::SystemRandom::new()
        .fill(&mut document[ED25519_PKCS8_V1_PREFIX.len()..])
        .map_err(|_| "the system random number generator failed".to_owned())?;
    Ok(pem("PRIVATE KEY", &document))
}

fn openssl_rsa_pem(bits: usize) -> Result<String, String> {
    let output = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => "RSA keys are generated with OpenSSL, and `openssl` is not \
                                        on PATH; install it (Debian: openssl), or use \
                                        --algorithm ed25519-sha256"
                .to_owned(),
            _ => format!("cannot run `openssl genpkey`: {error}"),
        })?;
    if !output.status.success() {
        return Err(format!(
            "`openssl genpkey` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| "`openssl genpkey` wrote no PEM text".to_owned())
}

/// PEM text (RFC 7468): base64 in lines of 64 characters between the BEGIN and END lines.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    let _ = writeln!(text, "-----END {label}-----");
    text
}

/// The TXT record that publishes `key` (RFC 6376 §3.6.2.1), in zone-file syntax, split into
/// character-strings of at most 255 octets.
pub fn dns_record(selector: &str, domain: &str, key: &SigningKey) -> String {
    let value = format!(
        "v=DKIM1; k={}; p={}",
        key.key_type_tag(),
        key.public_key_base64()
    );
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(TXT_STRING_MAX_BYTES)
        .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
        .collect();
    format!(
        "{selector}._domainkey.{domain}. IN TXT {}",
        strings.join(" ")
    )
}

/// The `[[dkim]]` entry that signs with the key at `path`.
pub fn config_snippet(domain: &str, selector: &str, algorithm: &str, path: &str) -> String {
    format!(
        "[[dkim]]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nalgorithm = \
         \"{algorithm}\"\nprivate_key = \"{path}\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_are_pkcs8_v1_and_load() {
        let generated = generate(DkimAlgorithm::Ed25519Sha256, None).unwrap();
        assert!(generated
            .pem
            .starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"));
        let record = dns_record("s1", "example.com", &generated.key);
        assert!(record.starts_with("s1._domainkey.example.com. IN TXT \"v=DKIM1; k=ed25519; p="));
        assert!(generate(DkimAlgorithm::Ed25519Sha256, Some(2048)).is_err());
    }

    #[test]
    fn rsa_sizes_are_checked_before_openssl_runs() {
        for bits in [1024, 2049, 8192] {
            let error = generate(DkimAlgorithm::RsaSha256, Some(bits))
                .err()
                .unwrap();
            assert!(error.contains("multiple of 512"), "{error}");
        }
    }

    #[test]
    fn long_records_are_split_into_255_octet_strings() {
        let generated = generate(DkimAlgorithm::RsaSha256, None).unwrap();
        let record = dns_record("s1", "example.com", &generated.key);
        let strings: Vec<&str> = record.split('"').skip(1).step_by(2).collect();
        assert!(strings.len() >= 2, "{record}");
        assert!(strings
            .iter()
            .all(|string| string.len() <= TXT_STRING_MAX_BYTES));
        assert!(strings[0]
            .starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
    }
}
