//! `postern dkim keygen`: writes a new DKIM private key and prints what publishes and uses it,
//! the DNS TXT record and the `[[dkim]]` entry.
//!
//! The key file is created readable by its owner only (mode 0600), never over an existing
//! file (that key may still sign mail in flight), and synced with its directory before success
//! is reported. Only the public key is printed, never the private one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::DkimAlgorithm;
use crate::dkim::keygen;
use crate::fatal::{ExitReason, Fatal};

/// What `postern dkim keygen` was asked for.
pub struct Request<'a> {
    pub domain: &'a str,
    pub selector: &'a str,
    /// `ed25519-sha256` or `rsa-sha256`.
    pub algorithm: &'a str,
    pub bits: Option<usize>,
    pub output: Option<&'a Path>,
}

/// Generates the key, writes it, and returns the text to print.
pub fn keygen(request: &Request<'_>) -> Result<String, Fatal> {
    let domain = dns_name("--domain", request.domain)?;
    let selector = dns_name("--selector", request.selector)?;
    let algorithm = match request.algorithm {
        "ed25519-sha256" => DkimAlgorithm::Ed25519Sha256,
        "rsa-sha256" => DkimAlgorithm::RsaSha256,
        other => return Err(usage(format!("unknown --algorithm {other}"))),
    };
    let path = request.output.map_or_else(
        || PathBuf::from(format!("{domain}.{selector}.pem")),
        Path::to_path_buf,
    );
    if path.exists() {
        return Err(Fatal::new(
            ExitReason::ConfigInvalid,
            format!("{} already exists", path.display()),
            "choose another --output; an existing key may still sign mail, so it is never \
             overwritten",
        ));
    }

    let generated = keygen::generate(algorithm, request.bits).map_err(usage)?;
    write_private(&path, generated.pem.as_bytes()).map_err(|error| {
        Fatal::new(
            ExitReason::Internal,
            format!("cannot write {}: {error}", path.display()),
            "check the directory and its permissions",
        )
    })?;

    let shown_path = fs::canonicalize(&path).unwrap_or(path);
    let shown_path = shown_path.display().to_string();
    Ok(format!(
        "wrote the private key to {shown_path} (mode 0600)\n\n\
         Publish this DNS record, then wait for it to be visible before signing with it:\n\
         {}\n\n\
         Then add this to the configuration:\n\
         {}",
        keygen::dns_record(&selector, &domain, &generated.key),
        keygen::config_snippet(&domain, &selector, request.algorithm, &shown_path),
    ))
}

/// A domain or selector: dot-separated labels of letters, digits and hyphens, in lowercase.
fn dns_name(flag: &str, name: &str) -> Result<String, Fatal> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|octet| octet.is_ascii_alphanumeric() || octet == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(usage(format!(
            "{flag} {name:?} is not a DNS name (labels of letters, digits and hyphens)"
        )));
    }
    Ok(name)
}

fn usage(cause: String) -> Fatal {
    Fatal::new(
        ExitReason::ConfigInvalid,
        cause,
        "see `postern dkim keygen --help`",
    )
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn an_ed25519_key_is_written_private_and_never_overwritten() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("k.pem");
        let request = Request {
            domain: "Example.COM",
            selector: "s2026",
            algorithm: "ed25519-sha256",
            bits: None,
            output: Some(&path),
        };
        let printed = keygen(&request).unwrap();
        assert!(printed.contains("s2026._domainkey.example.com. IN TXT \"v=DKIM1; k=ed25519; p="));
        assert!(printed.contains("[[dkim]]\ndomain = \"example.com\"\nselector = \"s2026\""));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = crate::dkim::key::load_key_file(&path, DkimAlgorithm::Ed25519Sha256);
        assert!(loaded.is_ok());
        let again = keygen(&request).unwrap_err();
        assert!(again.cause.contains("already exists"), "{again}");
        let bad = Request {
            domain: "exa mple.com",
            output: None,
            ..request
        };
        assert!(keygen(&bad).is_err());
    }
}
