//! SMTP AUTH (RFC 4954) credentials: the users file, password hashing and the failure counter.
//!
//! This module owns what a password is checked against and how: one argon2id PHC string per
//! user in a plain file (`users`), a constant-shape verification that takes as long for an
//! unknown user as for a known one, and the per-client failure window that rate-limits guessing
//! (`failures`). The SASL exchange itself (PLAIN, LOGIN) is protocol and lives in the SMTP
//! session; the verification runs on the control thread. Nothing here touches a runtime, and
//! verification is slow on purpose (tens of milliseconds), so it must never run on a shard.

pub mod failures;
pub mod users;

use std::fmt;

use zeroize::Zeroizing;

pub use failures::FailureWindow;
pub use users::{hash_password, UserTable, UsersFileError};

/// What a client presented in one SASL exchange. The password is wiped from memory when the
/// value is dropped, and `Debug` never shows it.
pub struct Credentials {
    /// The PLAIN authorization identity (RFC 4616 §2) when the client sent a non-empty one.
    pub authorization_identity: Option<String>,
    /// The authentication identity: the user name looked up in the users file.
    pub username: String,
    pub password: Zeroizing<String>,
}

impl Credentials {
    /// The client asks to act for an identity other than its own (RFC 4616 §2). postern has no
    /// policy that could allow it, so such an attempt is refused.
    pub fn acts_for_another(&self) -> bool {
        self.authorization_identity
            .as_ref()
            .is_some_and(|authorization| *authorization != self.username)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("authorization_identity", &self.authorization_identity)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The verdict on one set of credentials. A verdict is data, not an error: each one decides
/// exactly one SMTP reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The password matches the user's hash: `235 2.7.0`.
    Accepted,
    /// Unknown user, wrong password, or an authorization identity other than the user:
    /// `535 5.7.8`. Which of these it was is logged, never told to the client.
    Rejected,
    /// This client address failed too often within the failure window: `454 4.7.0`.
    RateLimited,
    /// The verification could not run (control thread gone or too busy): `454 4.7.0`.
    Unavailable,
}

/// The SASL mechanisms offered (RFC 4616 PLAIN, and the LOGIN that older clients still use).
// LIMITATION(L17): no challenge-response mechanism (SCRAM), which would need other than an
// argon2id hash stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// The names as the EHLO `AUTH` keyword lists them.
    pub const ADVERTISED: &'static str = "PLAIN LOGIN";

    /// The mechanism for a name from the AUTH command; SASL names are case-insensitive
    /// (RFC 4422 §3.1).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let credentials = Credentials {
            authorization_identity: None,
            username: "alice".into(),
            password: Zeroizing::new("hunter2".into()),
        };
        let shown = format!("{credentials:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn authorization_identity_must_be_the_user() {
        let mut credentials = Credentials {
            authorization_identity: Some("alice".into()),
            username: "alice".into(),
            password: Zeroizing::new("pw".into()),
        };
        assert!(!credentials.acts_for_another());
        credentials.authorization_identity = Some("bob".into());
        assert!(credentials.acts_for_another());
        credentials.authorization_identity = None;
        assert!(!credentials.acts_for_another());
    }

    #[test]
    fn mechanism_names_are_case_insensitive() {
        assert_eq!(Mechanism::from_name("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name("LoGiN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::from_name("CRAM-MD5"), None);
    }
}
