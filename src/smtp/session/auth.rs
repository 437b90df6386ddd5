//! AUTH (RFC 4954) inside the session: the command's preconditions, the SASL exchanges of PLAIN
//! (RFC 4616) and LOGIN, and the replies to the verdict the driver brings back. The session only
//! collects credentials; checking them is slow and happens off the shard, so a completed
//! exchange stops the session at `Event::Authenticate` until `authentication_result` is called.
//! Lines of an exchange may be up to `AUTH_LINE_MAX_BYTES` long and are never logged; their
//! decoded form is wiped when dropped.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use zeroize::Zeroizing;

use super::{Event, Hello, Mode, Refusal, Session};
use crate::sasl::{Credentials, Mechanism, Verdict};
use crate::smtp::command::{CommandError, SaslResponse};
use crate::smtp::reply::{EnhancedStatus, Reply};

/// RFC 4954 §4: a server must accept AUTH lines (the command with its initial response, and
/// each response) of at least 12,288 octets.
pub const AUTH_LINE_MAX_BYTES: usize = 12_288;

/// Refused AUTH attempts after which the session is closed with `421 4.7.0`, so that each
/// further guess costs the client a new connection.
pub const AUTH_FAILURES_PER_SESSION_MAX: u32 = 3;

/// The LOGIN prompts, base64 of `Username:` and `Password:`.
const LOGIN_USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// Standard base64 (RFC 4648 §4). Padding is accepted with or without, since some clients
/// strip it and nothing is ambiguous either way.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which response the session waits for after a 334.
#[derive(Clone, Debug)]
pub(super) enum Stage {
    /// PLAIN's single message: `[authzid] NUL authcid NUL passwd`.
    Plain,
    LoginUsername,
    LoginPassword {
        username: String,
    },
}

impl Session {
    /// AUTH (RFC 4954 §4).
    pub(super) fn auth(
        &mut self,
        mechanism: &str,
        initial_response: Option<SaslResponse>,
    ) -> Option<Event> {
        if !self.params.auth_available {
            return self.refuse(Refusal::AuthUnavailable);
        }
        if self.hello != Some(Hello::Ehlo) {
            return self.refuse(Refusal::EhloFirst);
        }
        // RFC 4954 §4: AUTH once per session, and never inside a transaction.
        if self.authenticated.is_some() {
            return self.refuse(Refusal::AlreadyAuthenticated);
        }
        if self.mail_given {
            return self.refuse(Refusal::AuthInTransaction);
        }
        // RFC 4954 §4 and §6: PLAIN and LOGIN send the password as it is, so they are only
        // offered under TLS.
        if !self.params.tls_active {
            return self.refuse(Refusal::EncryptionRequired);
        }
        let Some(mechanism) = Mechanism::from_name(mechanism) else {
            return self.refuse(Refusal::MechanismUnknown);
        };

        let first = match mechanism {
            Mechanism::Plain => Stage::Plain,
            Mechanism::Login => Stage::LoginUsername,
        };
        match initial_response {
            // RFC 4954 §4: `=` stands for an empty initial response.
            Some(response) if response.0.as_str() == "=" => self.exchange_line(first, b""),
            Some(response) => self.exchange_line(first, response.0.as_bytes()),
            None if mechanism == Mechanism::Plain => self.challenge(first, ""),
            None => self.challenge(first, LOGIN_USERNAME_PROMPT),
        }
    }

    /// One client response of the exchange in `stage`, base64 as sent.
    pub(super) fn exchange_line(&mut self, stage: Stage, line: &[u8]) -> Option<Event> {
        self.mode = Mode::Command;
        // RFC 4954 §4: a lone `*` cancels the exchange.
        if line == b"*" {
            return self.refuse(Refusal::AuthCanceled);
        }
        let Ok(decoded) = BASE64.decode(line).map(Zeroizing::new) else {
            return self.refuse(Refusal::AuthUndecodable);
        };
        match stage {
            Stage::Plain => match plain_credentials(&decoded) {
                Some(credentials) => self.ask_verification(credentials),
                None => self.refuse(Refusal::AuthUndecodable),
            },
            Stage::LoginUsername => match std::str::from_utf8(&decoded) {
                Ok(username) => {
                    let username = username.to_owned();
                    self.challenge(Stage::LoginPassword { username }, LOGIN_PASSWORD_PROMPT)
                }
                Err(_) => self.refuse(Refusal::AuthUndecodable),
            },
            Stage::LoginPassword { username } => match std::str::from_utf8(&decoded) {
                Ok(password) => self.ask_verification(Credentials {
                    authorization_identity: None,
                    username,
                    password: Zeroizing::new(password.to_owned()),
                }),
                Err(_) => self.refuse(Refusal::AuthUndecodable),
            },
        }
    }

    /// A line too long for the current state: an exchange ends with 500 5.5.6 (RFC 4954 §4),
    /// a command gets the ordinary 500.
    pub(super) fn line_too_long(&mut self) -> Option<Event> {
        if matches!(self.mode, Mode::AuthResponse(_)) {
            self.mode = Mode::Command;
            return self.refuse(Refusal::AuthLineTooLong);
        }
        self.answer(CommandError::LineTooLong.reply())
    }

    /// Whether the line starting in the buffer (or at `rest`) is part of AUTH: a response of an
    /// exchange, or an AUTH command whose initial response may be long and secret. A line
    /// whose first octets are too few to tell counts as AUTH until more arrive.
    pub(super) fn line_is_sensitive(&self, rest: &[u8]) -> bool {
        if matches!(self.mode, Mode::AuthResponse(_)) {
            return true;
        }
        if !self.params.auth_available {
            return false;
        }
        let verb = b"AUTH ";
        self.line
            .bytes
            .iter()
            .chain(rest)
            .take(verb.len())
            .zip(verb)
            .all(|(octet, expected)| octet.eq_ignore_ascii_case(expected))
    }

    pub(super) fn line_max_bytes(&self, sensitive: bool) -> usize {
        let command_max = self.params.limits.command_line_max_bytes;
        if sensitive {
            command_max.max(AUTH_LINE_MAX_BYTES)
        } else {
            command_max
        }
    }

    /// The credentials of the exchange that returned `Event::Authenticate`; once.
    pub fn take_credentials(&mut self) -> Option<Credentials> {
        self.credentials.take()
    }

    /// The driver's answer to `Event::Authenticate`.
    pub fn authentication_result(&mut self, verdict: Verdict) {
        let Mode::AwaitingVerdict { username } = &mut self.mode else {
            // A timeout or shutdown closed the session while the verdict was pending.
            debug_assert!(matches!(self.mode, Mode::Closed), "no AUTH was pending");
            return;
        };
        let username = std::mem::take(username);
        self.mode = Mode::Command;
        self.credentials = None;
        let refusal = match verdict {
            Verdict::Accepted => {
                self.authenticated = Some(username);
                self.queue(&Reply::new(
                    235,
                    Some(EnhancedStatus::new(2, 7, 0)),
                    "Authentication successful",
                ));
                return;
            }
            Verdict::Rejected => Refusal::CredentialsInvalid,
            Verdict::RateLimited | Verdict::Unavailable => Refusal::AuthTemporaryFailure,
        };
        self.auth_failures = self.auth_failures.saturating_add(1);
        if self.refuse(refusal).is_some() {
            return; // bad_commands_max was reached and the session is already closing.
        }
        if self.auth_failures >= AUTH_FAILURES_PER_SESSION_MAX {
            let text = format!(
                "{} too many authentication failures, closing connection",
                self.params.hostname
            );
            self.queue(&Reply::new(421, Some(EnhancedStatus::new(4, 7, 0)), text));
            self.mode = Mode::Closed;
        }
    }

    /// The user this session authenticated as, if any.
    pub fn authenticated_user(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    fn challenge(&mut self, stage: Stage, text: &'static str) -> Option<Event> {
        // RFC 4954 §4: the challenge is `334 SP [base64]`, with no enhanced status.
        self.queue(&Reply::new(334, None, text));
        self.mode = Mode::AuthResponse(stage);
        None
    }

    fn ask_verification(&mut self, credentials: Credentials) -> Option<Event> {
        self.mode = Mode::AwaitingVerdict {
            username: credentials.username.clone(),
        };
        self.credentials = Some(credentials);
        Some(Event::Authenticate)
    }
}

/// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`, each UTF-8, authcid and passwd non-empty.
fn plain_credentials(message: &[u8]) -> Option<Credentials> {
    let mut fields = message.split(|&octet| octet == 0);
    let authorization = fields.next()?;
    let username = fields.next()?;
    let password = fields.next()?;
    if fields.next().is_some() || username.is_empty() || password.is_empty() {
        return None;
    }
    let authorization = std::str::from_utf8(authorization).ok()?;
    Some(Credentials {
        authorization_identity: (!authorization.is_empty()).then(|| authorization.to_owned()),
        username: std::str::from_utf8(username).ok()?.to_owned(),
        password: Zeroizing::new(std::str::from_utf8(password).ok()?.to_owned()),
    })
}
