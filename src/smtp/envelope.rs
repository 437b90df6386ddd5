//! The SMTP envelope of one mail transaction: the reverse-path, the accepted forward-paths and
//! the ESMTP parameters that travel with them (SIZE, BODY, SMTPUTF8, and the DSN parameters of
//! RFC 3461). It holds only values the command parser has already validated; it never parses
//! and never decides policy.

/// The BODY= parameter of MAIL (RFC 6152 §2); BINARYMIME (RFC 3030) is not offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
}

/// The RET= parameter of MAIL (RFC 3461 §4.3): how much of the message a failure DSN returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    Full,
    Headers,
}

/// The NOTIFY= parameter of RCPT (RFC 3461 §4.1). `never` excludes the other three.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// One accepted forward-path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The mailbox without angle brackets and without any source route; `postmaster` for the
    /// domainless `<Postmaster>` of RFC 5321 §4.1.1.3.
    pub address: String,
    pub notify: Option<Notify>,
    /// ORCPT= as `addr-type;address` with the xtext decoded (RFC 3461 §4.2).
    pub orcpt: Option<String>,
}

/// The envelope of the transaction in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The EHLO or HELO argument.
    pub helo: String,
    /// The reverse-path without angle brackets; empty for the null reverse-path `<>`.
    pub mail_from: String,
    pub rcpt_to: Vec<Recipient>,
    pub body: BodyType,
    /// SMTPUTF8 was given on MAIL (RFC 6531 §3.4).
    pub smtputf8: bool,
    /// SIZE= on MAIL (RFC 1870 §6).
    pub declared_size: Option<u64>,
    pub ret: Option<Ret>,
    /// ENVID= with the xtext decoded (RFC 3461 §4.4).
    pub envid: Option<String>,
}

impl Envelope {
    /// Forgets the transaction but keeps the EHLO/HELO argument, as RSET and the end of a
    /// transaction do (RFC 5321 §4.1.1.5).
    pub fn reset_transaction(&mut self) {
        let helo = std::mem::take(&mut self.helo);
        *self = Envelope {
            helo,
            ..Envelope::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_keeps_helo_only() {
        let mut envelope = Envelope {
            helo: "client.example".into(),
            mail_from: "a@example.org".into(),
            rcpt_to: vec![Recipient {
                address: "b@example.com".into(),
                notify: None,
                orcpt: None,
            }],
            body: BodyType::EightBitMime,
            smtputf8: true,
            declared_size: Some(10),
            ret: Some(Ret::Full),
            envid: Some("x".into()),
        };
        envelope.reset_transaction();
        assert_eq!(
            envelope,
            Envelope {
                helo: "client.example".into(),
                ..Envelope::default()
            }
        );
    }
}
