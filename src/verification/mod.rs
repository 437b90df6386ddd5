//! Inbound message verification as plain data: what a shard asks the control thread to check
//! (SPF for the HELO and MAIL FROM identities, DKIM and DMARC on the whole message), what comes
//! back, and the streaming filter that removes forged `Authentication-Results:` fields.
//!
//! The checks themselves run on the control thread (`control::verify`, with mail-auth and the
//! shared DNS resolver); this module owns only the values that travel between the two sides and
//! the pure byte filtering the shard does while a body streams in. It performs no I/O, reads no
//! clock and knows no runtime, so a shard can use all of it without ever blocking.

mod results_filter;

use std::fmt::Write as _;
use std::net::IpAddr;

pub use mail_auth::{DmarcResult, SpfOutput, SpfResult};
pub use results_filter::ForgedResultsFilter;

/// The SMTP identities of one transaction, as the checks need them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identities {
    /// The client's address (RFC 7208 §4.1 `<ip>`).
    pub peer: IpAddr,
    /// The HELO or EHLO argument (RFC 7208 §2.3).
    pub helo: String,
    /// The MAIL FROM reverse-path without angle brackets; empty for the null path `<>`.
    pub mail_from: String,
}

/// The SPF results of one transaction: RFC 7208 §2.3 (HELO) and §2.4 (MAIL FROM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpfVerdict {
    pub helo: SpfOutput,
    pub mail_from: SpfOutput,
}

impl SpfVerdict {
    /// Both identities as `temperror`: the check could not finish (RFC 7208 §2.6.6).
    pub fn temperror(identities: &Identities) -> SpfVerdict {
        let temperror =
            |domain: &str| SpfOutput::new(domain.to_owned()).with_result(SpfResult::TempError);
        SpfVerdict {
            helo: temperror(&identities.helo),
            mail_from: temperror(mail_from_domain(identities)),
        }
    }
}

/// The domain SPF checks for MAIL FROM: the reverse-path's domain, or the HELO domain for the
/// null reverse-path (RFC 7208 §2.4).
pub fn mail_from_domain(identities: &Identities) -> &str {
    identities
        .mail_from
        .rsplit_once('@')
        .map_or(identities.helo.as_str(), |(_, domain)| domain)
}

/// What the control thread concluded about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageVerdict {
    /// The whole `Authentication-Results:` field (RFC 8601), folded, ending in CRLF.
    pub header: Vec<u8>,
    /// DMARC says `fail` and the domain's policy, after its test mode, is `p=reject`.
    pub dmarc_rejects: bool,
    /// One line for the log: `spf=pass dkim=fail dmarc=fail`.
    pub summary: String,
}

impl MessageVerdict {
    /// The verdict when no check could finish in time: every method `temperror` (RFC 8601
    /// §2.7), never a reason to refuse the message.
    pub fn temperror(authserv_id: &str, identities: &Identities) -> MessageVerdict {
        let mut header = format!("Authentication-Results: {authserv_id};\r\n\tspf=temperror");
        if identities.mail_from.is_empty() {
            let _ = write!(header, " smtp.helo={}", pvalue(&identities.helo));
        } else {
            let _ = write!(header, " smtp.mailfrom={}", pvalue(&identities.mail_from));
        }
        header.push_str(";\r\n\tdkim=temperror;\r\n\tdmarc=temperror\r\n");
        MessageVerdict {
            header: header.into_bytes(),
            dmarc_rejects: false,
            summary: "spf=temperror dkim=temperror dmarc=temperror".to_owned(),
        }
    }
}

/// A property value as RFC 8601 §2.2 allows it: a token as it is, anything else quoted.
fn pvalue(text: &str) -> String {
    let token = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !b"()<>,;:\\\"[]?=".contains(&byte));
    if token || (text.contains('@') && !text.contains(['"', '\\', ' ', '(', ')', ';'])) {
        return text.to_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars().filter(|character| !character.is_control()) {
        if character == '"' || character == '\\' {
            quoted.push('\\');
        }
        quoted.push(character);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identities(mail_from: &str) -> Identities {
        Identities {
            peer: "192.0.2.1".parse().expect("address"),
            helo: "client.example".into(),
            mail_from: mail_from.into(),
        }
    }

    #[test]
    fn the_mail_from_domain_falls_back_to_helo_for_the_null_path() {
        assert_eq!(mail_from_domain(&identities("a@b.example")), "b.example");
        assert_eq!(mail_from_domain(&identities("")), "client.example");
    }

    #[test]
    fn a_temperror_verdict_names_every_method_and_never_rejects() {
        let verdict = MessageVerdict::temperror("mx.test", &identities("a@b.example"));
        assert_eq!(
            String::from_utf8(verdict.header).expect("ASCII"),
            "Authentication-Results: mx.test;\r\n\tspf=temperror smtp.mailfrom=a@b.example;\r\n\
             \tdkim=temperror;\r\n\tdmarc=temperror\r\n"
        );
        assert!(!verdict.dmarc_rejects);

        let spf = SpfVerdict::temperror(&identities(""));
        assert_eq!(spf.mail_from.result(), SpfResult::TempError);
        assert_eq!(spf.mail_from.domain(), "client.example");
    }

    #[test]
    fn odd_property_values_are_quoted() {
        assert_eq!(pvalue("client.example"), "client.example");
        assert_eq!(pvalue("we ird\"x"), "\"we ird\\\"x\"");
        assert_eq!(pvalue(""), "\"\"");
    }
}
