//! Refusals decided by the session rather than by the parser: command sequence (RFC 5321
//! §4.1.4), limits, relay policy and body verdicts. This file owns the mapping from each refusal
//! to exactly one reply code and enhanced status (RFC 3463); the texts name the rule that was
//! broken and never reveal anything about postern's internals or its users.

use crate::smtp::data::BodyFault;
use crate::smtp::reply::{EnhancedStatus, Reply};

/// A well-formed command or body that the session will not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("send EHLO or HELO first")]
    HelloFirst,
    #[error("send EHLO first")]
    EhloFirst,
    #[error("sender already given, send RSET to start over")]
    NestedMail,
    #[error("send MAIL first")]
    MailFirst,
    #[error("no valid recipients")]
    NoRecipients,
    #[error("ESMTP parameters need EHLO, not HELO")]
    ParametersNeedEhlo,
    #[error("message size exceeds fixed maximum message size")]
    SizeExceeded,
    #[error("too many recipients")]
    TooManyRecipients,
    #[error("<{0}>: relay access denied")]
    RelayDenied(String),
    #[error("non-ASCII address needs SMTPUTF8 on MAIL")]
    Smtputf8Required,
    #[error("DATA cannot follow BDAT in one transaction")]
    DataAfterBdat,
    #[error("an earlier BDAT chunk failed, send RSET")]
    BdatFailed,
    #[error("STARTTLS not offered")]
    StartTlsUnavailable,
    #[error("STARTTLS not allowed inside a mail transaction")]
    StartTlsInTransaction,
    #[error("AUTH not offered")]
    AuthUnavailable,
    #[error("already authenticated")]
    AlreadyAuthenticated,
    #[error("AUTH not permitted during a mail transaction")]
    AuthInTransaction,
    #[error("Encryption required for requested authentication mechanism")]
    EncryptionRequired,
    #[error("Unrecognized authentication type")]
    MechanismUnknown,
    #[error("Authentication canceled")]
    AuthCanceled,
    #[error("Cannot decode the authentication response")]
    AuthUndecodable,
    #[error("Authentication exchange line is too long")]
    AuthLineTooLong,
    #[error("Authentication credentials invalid")]
    CredentialsInvalid,
    #[error("Temporary authentication failure, try again later")]
    AuthTemporaryFailure,
    #[error("Authentication required")]
    AuthenticationRequired,
    #[error("EXPN not offered")]
    ExpnUnavailable,
    #[error("message refused: {0}")]
    Body(BodyFault),
    #[error("insufficient system storage, try again later")]
    InsufficientStorage,
}

impl Refusal {
    pub fn reply(&self) -> Reply {
        let (code, class, subject, detail) = match self {
            // RFC 5321 §4.2.4: 503 for commands out of sequence; X.5.1 is "invalid command".
            Refusal::HelloFirst
            | Refusal::EhloFirst
            | Refusal::NestedMail
            | Refusal::MailFirst
            | Refusal::DataAfterBdat
            | Refusal::BdatFailed
            | Refusal::StartTlsInTransaction
            | Refusal::AlreadyAuthenticated
            | Refusal::AuthInTransaction => (503, 5, 5, 1),
            // The AUTH replies are those of RFC 4954 §4 and §6.
            Refusal::EncryptionRequired => (538, 5, 7, 11),
            Refusal::MechanismUnknown => (504, 5, 5, 4),
            Refusal::AuthCanceled => (501, 5, 0, 0),
            Refusal::AuthUndecodable => (501, 5, 5, 2),
            Refusal::AuthLineTooLong => (500, 5, 5, 6),
            Refusal::CredentialsInvalid => (535, 5, 7, 8),
            Refusal::AuthTemporaryFailure => (454, 4, 7, 0),
            Refusal::AuthenticationRequired => (530, 5, 7, 0),
            // RFC 5321 §3.3: 554 "no valid recipients" for DATA without accepted RCPT.
            Refusal::NoRecipients => (554, 5, 5, 1),
            Refusal::ParametersNeedEhlo => (555, 5, 5, 4),
            // RFC 1870 §6 with RFC 3463 X.3.4 "message too big for system".
            Refusal::SizeExceeded | Refusal::Body(BodyFault::TooBig) => (552, 5, 3, 4),
            // RFC 5321 §4.5.3.1.10: 452 for too many recipients, X.5.3 in RFC 3463.
            Refusal::TooManyRecipients => (452, 4, 5, 3),
            // RFC 5321 §4.2.2 and RFC 3463 X.3.1: the spool is full, the client retries later.
            Refusal::InsufficientStorage => (452, 4, 3, 1),
            Refusal::RelayDenied(_) => (554, 5, 7, 1),
            // RFC 6531 §3.7.4.1.
            Refusal::Smtputf8Required => (553, 5, 6, 7),
            Refusal::StartTlsUnavailable | Refusal::AuthUnavailable | Refusal::ExpnUnavailable => {
                (502, 5, 5, 1)
            }
            // RFC 3463 X.6.0: other or undefined media error.
            Refusal::Body(_) => (550, 5, 6, 0),
        };
        Reply::new(
            code,
            Some(EnhancedStatus::new(class, subject, detail)),
            self.to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_maps_to_a_failure_with_matching_class() {
        let all = [
            Refusal::HelloFirst,
            Refusal::EhloFirst,
            Refusal::NestedMail,
            Refusal::MailFirst,
            Refusal::NoRecipients,
            Refusal::ParametersNeedEhlo,
            Refusal::SizeExceeded,
            Refusal::TooManyRecipients,
            Refusal::RelayDenied("a@b.example".into()),
            Refusal::Smtputf8Required,
            Refusal::DataAfterBdat,
            Refusal::BdatFailed,
            Refusal::StartTlsUnavailable,
            Refusal::StartTlsInTransaction,
            Refusal::AuthUnavailable,
            Refusal::AlreadyAuthenticated,
            Refusal::AuthInTransaction,
            Refusal::EncryptionRequired,
            Refusal::MechanismUnknown,
            Refusal::AuthCanceled,
            Refusal::AuthUndecodable,
            Refusal::AuthLineTooLong,
            Refusal::CredentialsInvalid,
            Refusal::AuthTemporaryFailure,
            Refusal::AuthenticationRequired,
            Refusal::ExpnUnavailable,
            Refusal::Body(BodyFault::BareLineEnding),
            Refusal::Body(BodyFault::TooBig),
            Refusal::InsufficientStorage,
        ];
        for refusal in all {
            let reply = refusal.reply();
            assert!(!reply.is_positive(), "{refusal:?}");
            let status = reply.status.expect("enhanced status");
            assert_eq!(u16::from(status.class), reply.code / 100);
        }
    }

    #[test]
    fn relay_text_names_the_address() {
        let reply = Refusal::RelayDenied("a@b.example".into()).reply();
        assert_eq!(reply.lines[0], "<a@b.example>: relay access denied");
    }
}
