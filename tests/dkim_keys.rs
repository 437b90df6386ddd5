//! Scenario: DKIM keys as operators bring them. Keys written by `postern dkim keygen` are read
//! by OpenSSL, and the public keys it prints are the ones OpenSSL derives. A key written by
//! `openssl genpkey -algorithm ed25519` (PKCS#8 version 1) and a PKCS#1 RSA key load and sign
//! verifiable mail. Bad keys (too short, of the wrong algorithm, readable by everyone, missing)
//! stop `serve` and `check-config` with the configuration exit code, every one reported at once
//! with its `dkim[i].private_key` and file.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use common::dkim::{verify, write_private, Keys};
use common::{postern_binary, Options, Relay};

fn openssl(arguments: &[&str], key: &Path) -> Output {
    let output = Command::new("openssl")
        .args(arguments)
        .arg(key)
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        output.status.success(),
        "openssl {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The DER SubjectPublicKeyInfo OpenSSL derives from a private key.
fn openssl_public_der(key: &Path) -> Vec<u8> {
    openssl(&["pkey", "-pubout", "-outform", "DER", "-in"], key).stdout
}

fn base64(octets: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(octets)
}

#[test]
fn keygen_keys_are_read_by_openssl_with_the_same_public_keys() {
    let mut keys = Keys::generate("example.com", &[]);
    for (selector, algorithm) in [("r", "rsa-sha256"), ("e", "ed25519-sha256")] {
        let path = keys.keygen("example.com", selector, algorithm);
        openssl(&["pkey", "-noout", "-in"], &path);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{algorithm} key mode");

        let spki = openssl_public_der(&path);
        let expected_p = match algorithm {
            // RFC 6376 §3.6.1: the SubjectPublicKeyInfo itself.
            "rsa-sha256" => base64(&spki),
            // RFC 8463 §4: only the 32 raw octets, the tail of the SubjectPublicKeyInfo.
            _ => base64(&spki[spki.len() - 32..]),
        };
        let record = &keys.records[&format!("{selector}._domainkey.example.com")];
        assert!(
            record.ends_with(&format!("; p={expected_p}")),
            "{algorithm}: {record} vs {expected_p}"
        );
    }

    // A second keygen to the same file refuses and leaves the key as it was.
    let path = keys.directory.path().join("example.com.e.pem");
    let before = fs::read(&path).unwrap();
    let again = Command::new(postern_binary())
        .args([
            "dkim",
            "keygen",
            "--domain",
            "example.com",
            "--selector",
            "e",
        ])
        .args(["--algorithm", "ed25519-sha256", "--output"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(78));
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn keys_written_by_openssl_load_and_sign() {
    let mut keys = Keys::generate("example.com", &[]);
    let directory = keys.directory.path().to_path_buf();

    let ed25519 = directory.join("openssl-ed25519.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out"], &ed25519);
    let pem = fs::read_to_string(&ed25519).unwrap();
    // OpenSSL's PKCS#8 v1 (version 0, no public key), the form ring's strict loader refuses.
    assert!(pem.contains("MC4CAQAwBQYDK2VwBCIEI"), "{pem}");
    fs::set_permissions(&ed25519, fs::Permissions::from_mode(0o600)).unwrap();
    let spki = openssl_public_der(&ed25519);
    keys.add(
        "example.com",
        "oe",
        "ed25519-sha256",
        &ed25519,
        &base64(&spki[spki.len() - 32..]),
    );

    let rsa_pkcs1 = directory.join("openssl-rsa-pkcs1.pem");
    let generated = directory.join("openssl-rsa.pem");
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ],
        &generated,
    );
    let traditional = openssl(&["pkey", "-traditional", "-in"], &generated).stdout;
    assert!(String::from_utf8_lossy(&traditional).starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    write_private(&rsa_pkcs1, &traditional);
    keys.add(
        "example.com",
        "or",
        "rsa-sha256",
        &rsa_pkcs1,
        &base64(&openssl_public_der(&generated)),
    );

    let relay = Relay::start(Options {
        extra: keys.config.clone(),
        ..Options::default()
    });
    let mut client = relay.connect();
    let reply = client.send_message(
        "alice@example.com",
        &["bob@example.com"],
        b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: openssl keys\r\n\r\nhi\r\n",
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    let stored = relay.stored();
    assert_eq!(stored.len(), 1);
    let verdicts = &verify(&keys, &[&stored[0].message])[0];
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    assert!(
        verdicts.iter().all(|verdict| verdict.verified),
        "{verdicts:?}"
    );
}

#[test]
fn every_bad_key_is_reported_at_once_and_stops_the_relay() {
    let directory = tempfile::tempdir().unwrap();
    let short = directory.path().join("short.pem");
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
        ],
        &short,
    );
    fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
    let ed25519 = directory.path().join("ed25519.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out"], &ed25519);
    fs::set_permissions(&ed25519, fs::Permissions::from_mode(0o600)).unwrap();
    let open = directory.path().join("open.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out"], &open);
    fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
    let good = directory.path().join("good.pem");
    fs::copy(&ed25519, &good).unwrap();
    fs::set_permissions(&good, fs::Permissions::from_mode(0o600)).unwrap();

    let entries = [
        (&short, "rsa-sha256"),
        (&ed25519, "rsa-sha256"),
        (&open, "ed25519-sha256"),
        (&good, "ed25519-sha256"),
    ];
    let mut config = format!(
        "[server]\nhostname = \"relay.test\"\nspool = \"{}\"\n\n[[listener]]\naddress = \
         \"127.0.0.1:{}\"\n\n[[route]]\ndomains = [\"*\"]\nmx = true\n\n",
        directory.path().join("spool").display(),
        common::free_port()
    );
    for (index, (path, algorithm)) in entries.iter().enumerate() {
        config.push_str(&format!(
            "[[dkim]]\ndomain = \"example.com\"\nselector = \"s{index}\"\nalgorithm = \
             \"{algorithm}\"\nprivate_key = \"{}\"\n\n",
            path.display()
        ));
    }
    let config_path = directory.path().join("postern.toml");
    fs::write(&config_path, config).unwrap();

    for command in ["check-config", "serve"] {
        let output = Command::new(postern_binary())
            .args([command, "--config"])
            .arg(&config_path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{command}: {stderr}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| line.contains("dkim["))
            .collect();
        assert_eq!(lines.len(), 3, "{command}: {stderr}");
        let expected = [
            ("dkim[0].private_key", "short.pem", "shorter than 2048 bits"),
            (
                "dkim[1].private_key",
                "ed25519.pem",
                "does not hold an RSA key",
            ),
            ("dkim[2].private_key", "open.pem", "chmod 600"),
        ];
        for ((key, file, reason), line) in expected.iter().zip(&lines) {
            assert!(
                line.contains(key) && line.contains(file) && line.contains(reason),
                "{command}: expected {key} {file} {reason} in {line:?}"
            );
        }
        assert!(!stderr.contains("good.pem"), "{stderr}");
    }
}

#[test]
fn rsa_keygen_without_openssl_says_what_to_install() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("k.pem");
    let output = Command::new(postern_binary())
        .args([
            "dkim",
            "keygen",
            "--domain",
            "example.com",
            "--selector",
            "s",
        ])
        .args(["--algorithm", "rsa-sha256", "--output"])
        .arg(&path)
        .env("PATH", directory.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("`openssl` is not on PATH"), "{stderr}");
    assert!(!path.exists(), "nothing is written when generation fails");
}
