//! Test certificates made with rcgen: a CA that signs server and client certificates, written
//! as PEM files into a directory the test owns.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A certificate authority whose certificates the tests trust.
pub struct Authority {
    issuer: Certificate,
    issuer_key: KeyPair,
    /// The CA certificate, PEM.
    pub certificate: PathBuf,
    directory: PathBuf,
}

/// A certificate chain and its key, as files.
pub struct Issued {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// The leaf certificate, DER, to compare with what a server presented.
    pub der: Vec<u8>,
}

impl Authority {
    pub fn new(directory: &Path, name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("self-signed CA");
        let path = directory.join(format!("{name}.pem"));
        fs::write(&path, certificate.pem()).expect("write CA");
        Authority {
            issuer: certificate,
            issuer_key: key,
            certificate: path,
            directory: directory.to_owned(),
        }
    }

    /// A server certificate for `names` (SAN DNS names; `*.example.com` allowed).
    pub fn server(&self, file_stem: &str, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server parameters");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file_stem, params)
    }

    /// A client certificate, for relaying by certificate.
    pub fn client(&self, file_stem: &str, name: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file_stem, params)
    }

    fn issue(&self, file_stem: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let certificate = params
            .signed_by(&key, &self.issuer, &self.issuer_key)
            .expect("sign leaf");
        let certificate_path = self.directory.join(format!("{file_stem}.pem"));
        let key_path = self.directory.join(format!("{file_stem}.key"));
        fs::write(&certificate_path, certificate.pem()).expect("write certificate");
        fs::write(&key_path, key.serialize_pem()).expect("write key");
        Issued {
            certificate: certificate_path,
            private_key: key_path,
            der: certificate.der().to_vec(),
        }
    }
}
