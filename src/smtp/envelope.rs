//! The SMTP envelope of one mail transaction: the reverse-path, the accepted forward-paths and
//! the ESMTP parameters that travel with them (SIZE, BODY, SMTPUTF8, and the DSN parameters of
//! RFC 3461). It holds only values the command parser has already validated; it never parses
//! and never decides policy.

use super::params::encode_xtext;

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
    /// RFC 4954 §5 `AUTH=`: who submitted the message, xtext decoded, or `<>` when unknown.
    /// Kept as the client gave it only from a trusted client; anyone else's becomes `<>`.
    pub auth: Option<String>,
}

impl Notify {
    /// The `NOTIFY=` value (RFC 3461 §4.1): `NEVER`, or the listed conditions.
    pub fn keywords(self) -> String {
        if self.never {
            return "NEVER".into();
        }
        let keywords: Vec<&str> = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .into_iter()
        .filter_map(|(set, keyword)| set.then_some(keyword))
        .collect();
        keywords.join(",")
    }
}

impl Recipient {
    /// The DSN parameters of this recipient's RCPT (RFC 3461 §4.1, §4.2), each after a space.
    pub fn dsn_rcpt_parameters(&self) -> String {
        let mut parameters = String::new();
        if let Some(notify) = self.notify {
            parameters.push_str(&format!(" NOTIFY={}", notify.keywords()));
        }
        if let Some(orcpt) = &self.orcpt {
            let (kind, address) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            parameters.push_str(&format!(" ORCPT={kind};{}", encode_xtext(address)));
        }
        parameters
    }
}

impl Envelope {
    /// The DSN parameters of MAIL (RFC 3461 §4.3, §4.4), each after a space.
    pub fn dsn_mail_parameters(&self) -> String {
        let mut parameters = String::new();
        match self.ret {
            Some(Ret::Full) => parameters.push_str(" RET=FULL"),
            Some(Ret::Headers) => parameters.push_str(" RET=HDRS"),
            None => {}
        }
        if let Some(envid) = &self.envid {
            parameters.push_str(&format!(" ENVID={}", encode_xtext(envid)));
        }
        parameters
    }

    /// The `AUTH=` parameter of MAIL (RFC 4954 §5), after a space, for a next hop that offers
    /// AUTH; empty when the message came without one.
    pub fn auth_mail_parameter(&self) -> String {
        match self.auth.as_deref() {
            None => String::new(),
            Some("<>") => " AUTH=<>".to_owned(),
            Some(identity) => format!(" AUTH={}", encode_xtext(identity)),
        }
    }

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
            auth: Some("a@example.org".into()),
        };
        assert_eq!(envelope.auth_mail_parameter(), " AUTH=a@example.org");
        envelope.reset_transaction();
        assert_eq!(
            envelope,
            Envelope {
                helo: "client.example".into(),
                ..Envelope::default()
            }
        );
    }

    #[test]
    fn dsn_parameters_render_as_rfc_3461_writes_them() {
        let recipient = Recipient {
            address: "b@example.com".into(),
            notify: Some(Notify {
                never: false,
                success: true,
                failure: true,
                delay: false,
            }),
            orcpt: Some("rfc822;b+x@example.com".into()),
        };
        assert_eq!(
            recipient.dsn_rcpt_parameters(),
            " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.com"
        );
        let never = Notify {
            never: true,
            ..Notify::default()
        };
        assert_eq!(never.keywords(), "NEVER");
        let envelope = Envelope {
            ret: Some(Ret::Headers),
            envid: Some("id=1".into()),
            ..Envelope::default()
        };
        assert_eq!(envelope.dsn_mail_parameters(), " RET=HDRS ENVID=id+3D1");
    }
}
