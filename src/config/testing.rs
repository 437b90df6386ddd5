//! Helpers shared by the configuration tests: a minimal valid file, a parser with a fixed host
//! name, and throw-away key files. Compiled for tests only.

use std::io::Write as _;

use super::error::ConfigErrors;
use super::model::Config;
use super::parse_with_hostname;

pub(crate) const MINIMAL: &str = r#"
    [[listener]]
    address = "127.0.0.1:25"

    [[route]]
    domains = ["*"]
    mx = true
"#;

pub(crate) fn parse_test(text: &str) -> Result<Config, ConfigErrors> {
    parse_with_hostname(text, "test.toml", &|| Ok("relay.test".to_owned()))
}

pub(crate) fn error_keys(text: &str) -> Vec<String> {
    match parse_test(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.keys().into_iter().map(str::to_owned).collect(),
    }
}

pub(crate) fn only_reason(text: &str) -> String {
    let errors = parse_test(text).expect_err("expected one error");
    assert_eq!(errors.errors.len(), 1, "{errors}");
    errors.errors[0].reason.clone()
}

/// A file that exists and is readable, standing in for a PEM key or certificate.
pub(crate) fn key_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    writeln!(file, "not really PEM; only readability is checked").expect("write");
    file
}

/// `extra` followed by a `[tls]` section naming two fresh files; the files are returned so the
/// caller keeps them alive while parsing.
pub(crate) fn with_tls(extra: &str) -> (String, tempfile::NamedTempFile, tempfile::NamedTempFile) {
    let certificate = key_file();
    let private_key = key_file();
    let text = format!(
        "{extra}\n[tls]\ncertificate = {:?}\nprivate_key = {:?}\n",
        certificate.path().display().to_string(),
        private_key.path().display().to_string()
    );
    (text, certificate, private_key)
}

/// The operator guide, whose examples must stay valid.
pub(crate) const GUIDE: &str = include_str!("../../docs/configuration.md");

/// The first TOML code block after `heading` in the operator guide.
pub(crate) fn guide_example(heading: &str) -> &'static str {
    let section = &GUIDE[GUIDE.find(heading).expect("heading in the guide")..];
    let start = section
        .find("```toml\n")
        .expect("a TOML block under the heading")
        + 8;
    let length = section[start..].find("```").expect("the block is closed");
    &section[start..start + length]
}
