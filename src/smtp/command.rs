//! One SMTP command line, parsed (RFC 5321 §4.1.1 and the verbs of RFC 3030 and 3207). This
//! file owns the verb table and the argument syntax, and maps every syntax error to exactly one
//! reply. It sees one line at a time without its line ending and holds no state: command
//! sequencing, limits and relay policy belong to the session.

use super::address::{parse_path, AddressError, Path};
use super::params::{parse_mail_params, parse_rcpt_params, MailParams, ParamError, RcptParams};
use super::reply::{EnhancedStatus, Reply};

/// A command line that parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo {
        domain: String,
    },
    Helo {
        domain: String,
    },
    Mail {
        reverse_path: Path,
        params: MailParams,
    },
    Rcpt {
        forward_path: Path,
        params: RcptParams,
    },
    Data,
    /// RFC 3030 §2: `BDAT chunk-size [SP end-marker]`.
    Bdat {
        chunk_size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// RFC 4954 §4: `AUTH SP sasl-mech [SP initial-response]`.
    Auth {
        mechanism: String,
        initial_response: Option<SaslResponse>,
    },
}

/// A base64 SASL response as the client sent it (`=` for an empty one). It may encode a
/// password, so `Debug` never shows it and the text is wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslResponse(pub zeroize::Zeroizing<String>);

impl std::fmt::Debug for SaslResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SaslResponse(<redacted>)")
    }
}

/// RFC 4422 §3.1: a mechanism name is 1 to 20 of upper-case letters, digits, `-` and `_`.
const MECHANISM_NAME_MAX_BYTES: usize = 20;

/// A command line that did not parse; `reply` says what the client is told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("NUL octet in command line")]
    Nul,
    #[error("command line too long")]
    LineTooLong,
    #[error("command unrecognised")]
    UnknownVerb,
    #[error("{0} needs an argument")]
    MissingArgument(&'static str),
    #[error("{0} takes no argument")]
    UnexpectedArgument(&'static str),
    #[error("syntax error, use {0}")]
    Syntax(&'static str),
    #[error("bad sender address: {0}")]
    MailAddress(AddressError),
    #[error("bad recipient address: {0}")]
    RcptAddress(AddressError),
    #[error("{0}")]
    Parameter(ParamError),
}

impl CommandError {
    /// RFC 5321 §4.2.4 separates unknown commands (500) from bad arguments (501); RFC 1869
    /// §6 (now 5321 §4.1.1.11) gives 555 for parameters the server does not recognise.
    pub fn reply(&self) -> Reply {
        let (code, status) = match self {
            CommandError::Nul | CommandError::LineTooLong | CommandError::UnknownVerb => {
                (500, EnhancedStatus::new(5, 5, 2))
            }
            CommandError::MissingArgument(_)
            | CommandError::UnexpectedArgument(_)
            | CommandError::Syntax(_) => (501, EnhancedStatus::new(5, 5, 4)),
            // RFC 3463 §3.2: X.1.7 is a bad sender address, X.1.3 a bad destination syntax.
            CommandError::MailAddress(_) => (501, EnhancedStatus::new(5, 1, 7)),
            CommandError::RcptAddress(_) => (501, EnhancedStatus::new(5, 1, 3)),
            CommandError::Parameter(ParamError::Unknown | ParamError::BodyNotOffered) => {
                (555, EnhancedStatus::new(5, 5, 4))
            }
            CommandError::Parameter(_) => (501, EnhancedStatus::new(5, 5, 4)),
        };
        Reply::new(code, Some(status), self.to_string())
    }
}

/// Parses one command line given without its CRLF.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    if memchr::memchr(0, line).is_some() {
        return Err(CommandError::Nul);
    }
    // Trailing white space is not in the grammar but common clients send it; trimming it costs
    // nothing and refuses nobody.
    let line = line.trim_ascii_end();
    let (verb, argument) = match memchr::memchr(b' ', line) {
        Some(space) => (&line[..space], line[space + 1..].trim_ascii_start()),
        None => (line, &b""[..]),
    };

    // Upper-cased on the stack, as this runs for every command: no known verb is longer than 8.
    let mut upper = [0u8; 8];
    let Some(verb) = upper.get_mut(..verb.len()).map(|slot| {
        slot.copy_from_slice(verb);
        slot.make_ascii_uppercase();
        &*slot
    }) else {
        return Err(CommandError::UnknownVerb);
    };
    match verb {
        b"EHLO" => parse_helo(argument, "EHLO").map(|domain| Command::Ehlo { domain }),
        b"HELO" => parse_helo(argument, "HELO").map(|domain| Command::Helo { domain }),
        b"MAIL" => parse_mail(argument),
        b"RCPT" => parse_rcpt(argument),
        b"DATA" => no_argument(argument, "DATA", Command::Data),
        b"BDAT" => parse_bdat(argument),
        b"RSET" => no_argument(argument, "RSET", Command::Rset),
        // RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored.
        b"NOOP" => Ok(Command::Noop),
        b"QUIT" => no_argument(argument, "QUIT", Command::Quit),
        b"VRFY" if argument.is_empty() => Err(CommandError::MissingArgument("VRFY")),
        b"VRFY" => Ok(Command::Vrfy),
        b"EXPN" => Ok(Command::Expn),
        b"HELP" => Ok(Command::Help),
        b"STARTTLS" => no_argument(argument, "STARTTLS", Command::StartTls),
        b"AUTH" => parse_auth(argument),
        _ => Err(CommandError::UnknownVerb),
    }
}

fn no_argument(
    argument: &[u8],
    verb: &'static str,
    command: Command,
) -> Result<Command, CommandError> {
    if argument.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::UnexpectedArgument(verb))
    }
}

/// RFC 5321 §4.1.1.1: `EHLO SP ( Domain / address-literal )`. Many clients send names that are
/// not valid domains, so any single word of visible ASCII is taken; it only ever appears in
/// the `Received:` header, where the session escapes what could mislead a reader.
fn parse_helo(argument: &[u8], verb: &'static str) -> Result<String, CommandError> {
    if argument.is_empty() {
        return Err(CommandError::MissingArgument(verb));
    }
    if !argument.iter().all(|b| b.is_ascii_graphic()) {
        return Err(CommandError::Syntax("EHLO <domain> with one ASCII word"));
    }
    Ok(String::from_utf8_lossy(argument).into_owned())
}

/// `MAIL FROM:<reverse-path> [SP Mail-parameters]`. The space some clients put after the colon
/// is tolerated.
fn parse_mail(argument: &[u8]) -> Result<Command, CommandError> {
    let path = strip_prefix_ignore_case(argument, b"FROM:")
        .ok_or(CommandError::Syntax("MAIL FROM:<address>"))?
        .trim_ascii_start();
    let (reverse_path, rest) = parse_path(path).map_err(CommandError::MailAddress)?;
    if reverse_path == Path::Postmaster {
        // A reverse-path is a full mailbox or `<>`; the domainless form is for RCPT only.
        return Err(CommandError::MailAddress(AddressError::Syntax));
    }
    let params = parse_mail_params(rest).map_err(CommandError::Parameter)?;
    Ok(Command::Mail {
        reverse_path,
        params,
    })
}

/// `RCPT TO:( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path ) [SP Rcpt-parameters]`.
fn parse_rcpt(argument: &[u8]) -> Result<Command, CommandError> {
    let path = strip_prefix_ignore_case(argument, b"TO:")
        .ok_or(CommandError::Syntax("RCPT TO:<address>"))?
        .trim_ascii_start();
    let (forward_path, rest) = parse_path(path).map_err(CommandError::RcptAddress)?;
    if forward_path == Path::Null {
        return Err(CommandError::RcptAddress(AddressError::Syntax));
    }
    let params = parse_rcpt_params(rest).map_err(CommandError::Parameter)?;
    Ok(Command::Rcpt {
        forward_path,
        params,
    })
}

/// RFC 4954 §4: `"AUTH" SP sasl-mech [SP initial-response]`. Mechanism names are matched
/// without regard to case, as RFC 4422 §3.1 asks; whether one is offered is the session's call.
fn parse_auth(argument: &[u8]) -> Result<Command, CommandError> {
    const USAGE: &str = "AUTH <mechanism> [initial-response]";
    let mut words = argument.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or(CommandError::MissingArgument("AUTH"))?;
    let initial_response = words.next();
    let name_ok = mechanism.len() <= MECHANISM_NAME_MAX_BYTES
        && mechanism
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if words.next().is_some() || !name_ok {
        return Err(CommandError::Syntax(USAGE));
    }
    let initial_response = match initial_response {
        None => None,
        Some(text) => {
            let text = std::str::from_utf8(text).map_err(|_| CommandError::Syntax(USAGE))?;
            Some(SaslResponse(zeroize::Zeroizing::new(text.to_owned())))
        }
    };
    Ok(Command::Auth {
        // The check above admits only ASCII.
        mechanism: String::from_utf8_lossy(mechanism).to_ascii_uppercase(),
        initial_response,
    })
}

/// RFC 3030 §2: `bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]`, `chunk-size = 1*DIGIT`.
fn parse_bdat(argument: &[u8]) -> Result<Command, CommandError> {
    const USAGE: &str = "BDAT <size> [LAST]";
    let mut words = argument.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(CommandError::MissingArgument("BDAT"))?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Err(CommandError::Syntax(USAGE)),
    };
    if words.next().is_some() || !size.iter().all(u8::is_ascii_digit) {
        return Err(CommandError::Syntax(USAGE));
    }
    let chunk_size = std::str::from_utf8(size)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or(CommandError::Syntax(USAGE))?;
    Ok(Command::Bdat { chunk_size, last })
}

fn strip_prefix_ignore_case<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::envelope::BodyType;

    fn parse(line: &str) -> Result<Command, CommandError> {
        parse_command(line.as_bytes())
    }

    fn code(line: &[u8]) -> (u16, String) {
        let reply = parse_command(line).expect_err("should fail").reply();
        let status = reply.status.map(|s| s.to_string()).unwrap_or_default();
        (reply.code, status)
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse("noop"), Ok(Command::Noop));
        assert_eq!(parse("NoOp anything"), Ok(Command::Noop));
        assert_eq!(parse("QUIT "), Ok(Command::Quit));
        assert_eq!(
            parse("ehlo client.example"),
            Ok(Command::Ehlo {
                domain: "client.example".into()
            })
        );
        assert_eq!(parse("StartTLS"), Ok(Command::StartTls));
    }

    #[test]
    fn mail_forms() {
        for line in ["MAIL FROM:<a@example.org>", "mail from: <a@example.org>"] {
            let Ok(Command::Mail {
                reverse_path: Path::Mailbox(m),
                params,
            }) = parse(line)
            else {
                panic!("{line}")
            };
            assert_eq!(m.as_str(), "a@example.org");
            assert!(params.is_empty());
        }
        let Ok(Command::Mail {
            reverse_path,
            params,
        }) = parse("MAIL FROM:<> BODY=8BITMIME")
        else {
            panic!("null sender")
        };
        assert_eq!(reverse_path, Path::Null);
        assert_eq!(params.body, Some(BodyType::EightBitMime));
    }

    #[test]
    fn rcpt_forms() {
        assert!(matches!(
            parse("RCPT TO:<Postmaster>"),
            Ok(Command::Rcpt {
                forward_path: Path::Postmaster,
                ..
            })
        ));
        assert!(matches!(
            parse("RCPT TO:<>"),
            Err(CommandError::RcptAddress(_))
        ));
        assert!(matches!(
            parse("RCPT TO:<b@example.com> NOTIFY=NEVER"),
            Ok(Command::Rcpt { .. })
        ));
    }

    #[test]
    fn bdat_forms() {
        assert_eq!(
            parse("BDAT 0 LAST"),
            Ok(Command::Bdat {
                chunk_size: 0,
                last: true
            })
        );
        assert_eq!(
            parse("bdat 12"),
            Ok(Command::Bdat {
                chunk_size: 12,
                last: false
            })
        );
        assert_eq!(
            parse("BDAT 12 last"),
            Ok(Command::Bdat {
                chunk_size: 12,
                last: true
            })
        );
        assert!(parse("BDAT").is_err());
        assert!(parse("BDAT -1").is_err());
        assert!(parse("BDAT 1 FIRST").is_err());
        assert!(parse("BDAT 99999999999999999999999").is_err());
    }

    #[test]
    fn error_codes() {
        assert_eq!(code(b"FOO"), (500, "5.5.2".into()));
        assert_eq!(code(b"NO\0OP"), (500, "5.5.2".into()));
        assert_eq!(code(b"EHLO"), (501, "5.5.4".into()));
        assert_eq!(code(b"DATA now"), (501, "5.5.4".into()));
        assert_eq!(code(b"STARTTLS x"), (501, "5.5.4".into()));
        assert_eq!(code(b"MAIL TO:<a@b.example>"), (501, "5.5.4".into()));
        assert_eq!(code(b"MAIL FROM:<a@>"), (501, "5.1.7".into()));
        assert_eq!(code(b"MAIL FROM:<postmaster>"), (501, "5.1.7".into()));
        assert_eq!(code(b"RCPT TO:<a@>"), (501, "5.1.3".into()));
        assert_eq!(code(b"RCPT TO:<a\xff@b.example>"), (501, "5.1.3".into()));
        assert_eq!(code(b"MAIL FROM:<a@b.example> X=1"), (555, "5.5.4".into()));
        assert_eq!(
            code(b"MAIL FROM:<a@b.example> BODY=BINARYMIME"),
            (555, "5.5.4".into())
        );
        assert_eq!(
            code(b"MAIL FROM:<a@b.example> RET=ALL"),
            (501, "5.5.4".into())
        );
        assert_eq!(code(b"VRFY"), (501, "5.5.4".into()));
        assert_eq!(code(b"AUTH"), (501, "5.5.4".into()));
        assert_eq!(code(b"AUTH PLAIN a b"), (501, "5.5.4".into()));
        assert_eq!(code(b"AUTH PL@IN"), (501, "5.5.4".into()));
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            parse("auth plain"),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial_response: None
            })
        );
        let Ok(Command::Auth {
            mechanism,
            initial_response: Some(response),
        }) = parse("AUTH LOGIN dXNlcg==")
        else {
            panic!("AUTH with an initial response");
        };
        assert_eq!(mechanism, "LOGIN");
        assert_eq!(response.0.as_str(), "dXNlcg==");
        assert!(!format!("{response:?}").contains("dXNlcg"));
    }
}
