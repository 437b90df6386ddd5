//! DKIM helpers for the signing scenarios: keys made with `postern dkim keygen` (the operator's
//! tool), their DNS records taken from its output, and verification by dkimpy
//! (`tests/peers/dkim_verify.py`, run with Debian's Python, which carries python3-dkim) with
//! those records supplied in place of DNS.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::postern_binary;

const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Signing keys in a temporary directory, with their `[[dkim]]` entries and DNS records.
pub struct Keys {
    /// The `[[dkim]]` entries, ready for `Options::extra`.
    pub config: String,
    /// `<selector>._domainkey.<domain>` → TXT value (the character-strings joined).
    pub records: BTreeMap<String, String>,
    pub directory: TempDir,
}

impl Keys {
    /// One key per `(selector, algorithm)` for `domain`, each made by `postern dkim keygen`.
    pub fn generate(domain: &str, entries: &[(&str, &str)]) -> Keys {
        let mut keys = Keys {
            config: String::new(),
            records: BTreeMap::new(),
            directory: tempfile::tempdir().expect("temporary directory"),
        };
        for (selector, algorithm) in entries {
            keys.keygen(domain, selector, algorithm);
        }
        keys
    }

    /// Runs `postern dkim keygen` and records what it printed; returns the key file.
    pub fn keygen(&mut self, domain: &str, selector: &str, algorithm: &str) -> PathBuf {
        let path = self
            .directory
            .path()
            .join(format!("{domain}.{selector}.pem"));
        let output = Command::new(postern_binary())
            .args(["dkim", "keygen", "--domain", domain, "--selector", selector])
            .args(["--algorithm", algorithm, "--output"])
            .arg(&path)
            .output()
            .expect("run postern dkim keygen");
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "keygen failed: {printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let record_line = printed
            .lines()
            .find(|line| line.contains("._domainkey."))
            .expect("keygen printed a DNS record");
        let (name, value) = parse_record(record_line);
        self.records.insert(name, value);
        let snippet = &printed[printed.find("[[dkim]]").expect("keygen printed [[dkim]]")..];
        self.config.push_str(snippet);
        self.config.push('\n');
        path
    }

    /// Adds a key made elsewhere (by OpenSSL, say) with its public key value for `p=`.
    pub fn add(&mut self, domain: &str, selector: &str, algorithm: &str, key: &Path, p: &str) {
        let key_type = if algorithm == "rsa-sha256" {
            "rsa"
        } else {
            "ed25519"
        };
        self.records.insert(
            format!("{selector}._domainkey.{domain}"),
            format!("v=DKIM1; k={key_type}; p={p}"),
        );
        self.config.push_str(&format!(
            "[[dkim]]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nalgorithm = \
             \"{algorithm}\"\nprivate_key = \"{}\"\n\n",
            key.display()
        ));
    }
}

/// `s._domainkey.d. IN TXT "a" "b"` → (`s._domainkey.d`, `ab`).
fn parse_record(line: &str) -> (String, String) {
    let name = line.split_whitespace().next().expect("record name");
    let value: String = line.split('"').skip(1).step_by(2).collect();
    (name.trim_end_matches('.').to_owned(), value)
}

/// What dkimpy said about one signature.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Verdict {
    pub algorithm: Option<String>,
    pub domain: Option<String>,
    pub verified: bool,
    pub error: Option<String>,
}

/// Verifies every signature of each message with dkimpy; one list of verdicts per message,
/// topmost signature first.
pub fn verify(keys: &Keys, messages: &[&[u8]]) -> Vec<Vec<Verdict>> {
    assert!(
        Path::new(SYSTEM_PYTHON).exists(),
        "{SYSTEM_PYTHON} is missing: install the Debian packages python3 and python3-dkim"
    );
    let directory = tempfile::tempdir().expect("temporary directory");
    let keys_path = directory.path().join("keys.json");
    fs::write(
        &keys_path,
        serde_json::to_string(&keys.records).expect("keys as JSON"),
    )
    .expect("write keys");
    let mut paths = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let path = directory.path().join(format!("{index}.eml"));
        fs::write(&path, message).expect("write message");
        paths.push(path);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/dkim_verify.py");
    let output = Command::new(SYSTEM_PYTHON)
        .arg(script)
        .arg(&keys_path)
        .args(&paths)
        .output()
        .expect("run dkim_verify.py");
    assert!(
        output.status.success(),
        "dkim_verify.py failed (is python3-dkim installed?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdicts: Vec<Vec<Verdict>> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line from dkim_verify.py"))
        .collect();
    assert_eq!(verdicts.len(), messages.len(), "one line per message");
    verdicts
}

/// The DKIM-Signature fields at the top of `message`, unfolded.
pub fn signature_fields(message: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let header = text.split("\r\n\r\n").next().unwrap_or_default();
    let unfolded = header.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded
        .split("\r\n")
        .filter(|line| line.to_ascii_lowercase().starts_with("dkim-signature:"))
        .map(str::to_owned)
        .collect()
}

/// Writes `contents` as a key file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) {
    fs::write(path, contents).expect("write key");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod key");
}
