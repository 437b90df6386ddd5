//! ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 `Mail-parameters`, `Rcpt-parameters`):
//! SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET, ENVID, NOTIFY and ORCPT
//! (RFC 3461) and the AUTH= of RFC 4954 §5, plus the xtext encoding they share. This file owns
//! their syntax and guarantees that decoded values hold no control octets. It never compares a
//! value with a limit or a policy: the session does that.

use super::envelope::{BodyType, Notify, Ret};

/// RFC 3461 §4.4: an ENVID holds at most 100 characters.
pub const ENVID_MAX_BYTES: usize = 100;
/// RFC 3461 §4.2: an ORCPT value holds at most 500 characters.
pub const ORCPT_MAX_BYTES: usize = 500;
/// An `AUTH=` identity longer than an RFC 5321 §4.5.3.1.3 path (256 octets) cannot be a mailbox.
pub const AUTH_IDENTITY_MAX_BYTES: usize = 256;
/// Digits in the largest SIZE value that fits a u64; longer values are refused as too large.
const SIZE_MAX_DIGITS: usize = 20;

/// Why a parameter list was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter syntax error")]
    Syntax,
    #[error("parameter given more than once")]
    Duplicate,
    #[error("parameter not recognised")]
    Unknown,
    #[error("BODY type not offered")]
    BodyNotOffered,
    #[error("invalid parameter value")]
    Value,
}

/// The parameters of one MAIL command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// SIZE=; a value too large for u64 reads as `u64::MAX`, which is over any limit.
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    /// RFC 4954 §5 `AUTH=`: the identity that submitted the message, xtext decoded, or `<>`
    /// when the client does not know it. The session keeps it only from trusted clients.
    pub auth: Option<String>,
}

impl MailParams {
    /// No parameter at all, as HELO sessions must send (RFC 5321 §4.1.1.11 ties parameters to
    /// EHLO-announced extensions).
    pub fn is_empty(&self) -> bool {
        *self == MailParams::default()
    }
}

/// The parameters of one RCPT command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    /// `addr-type;address` with the xtext decoded.
    pub orcpt: Option<String>,
}

impl RcptParams {
    pub fn is_empty(&self) -> bool {
        *self == RcptParams::default()
    }
}

/// Parses what follows the reverse-path of MAIL.
pub fn parse_mail_params(rest: &[u8]) -> Result<MailParams, ParamError> {
    let mut params = MailParams::default();
    for pair in split(rest)? {
        let (keyword, value) = pair?;
        match keyword.to_ascii_uppercase().as_str() {
            "SIZE" => set(&mut params.size, parse_size(required(value)?)?)?,
            "BODY" => set(&mut params.body, parse_body(required(value)?)?)?,
            "SMTPUTF8" if value.is_none() => set_flag(&mut params.smtputf8)?,
            "SMTPUTF8" => return Err(ParamError::Syntax),
            "RET" => set(&mut params.ret, parse_ret(required(value)?)?)?,
            "ENVID" => set(&mut params.envid, parse_envid(required(value)?)?)?,
            "AUTH" => set(&mut params.auth, parse_auth(required(value)?)?)?,
            _ => return Err(ParamError::Unknown),
        }
    }
    Ok(params)
}

/// Parses what follows the forward-path of RCPT.
pub fn parse_rcpt_params(rest: &[u8]) -> Result<RcptParams, ParamError> {
    let mut params = RcptParams::default();
    for pair in split(rest)? {
        let (keyword, value) = pair?;
        match keyword.to_ascii_uppercase().as_str() {
            "NOTIFY" => set(&mut params.notify, parse_notify(required(value)?)?)?,
            "ORCPT" => set(&mut params.orcpt, parse_orcpt(required(value)?)?)?,
            _ => return Err(ParamError::Unknown),
        }
    }
    Ok(params)
}

/// Decodes RFC 3461 §4 xtext: `+` and two hex digits stand for one octet. The result must be
/// UTF-8 without control characters, since it is echoed into DSNs.
pub fn decode_xtext(text: &str) -> Result<String, ParamError> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut octets = text.bytes();
    while let Some(octet) = octets.next() {
        match octet {
            b'+' => {
                let high = octets.next().and_then(hex_value).ok_or(ParamError::Value)?;
                let low = octets.next().and_then(hex_value).ok_or(ParamError::Value)?;
                decoded.push(high << 4 | low);
            }
            b'!'..=b'~' if octet != b'=' => decoded.push(octet),
            _ => return Err(ParamError::Value),
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| ParamError::Value)?;
    if decoded.chars().any(char::is_control) {
        return Err(ParamError::Value);
    }
    Ok(decoded)
}

/// Encodes RFC 3461 §4 xtext: `+`, `=`, and octets outside `!`..`~` become `+XX`.
pub fn encode_xtext(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for octet in text.bytes() {
        match octet {
            b'!'..=b'~' if octet != b'+' && octet != b'=' => encoded.push(char::from(octet)),
            _ => encoded.push_str(&format!("+{octet:02X}")),
        }
    }
    encoded
}

type Pair<'a> = Result<(&'a str, Option<&'a str>), ParamError>;

/// Splits `*(SP esmtp-param)` into keyword/value pairs. Extra spaces between parameters are
/// tolerated because common clients send them.
fn split(rest: &[u8]) -> Result<impl Iterator<Item = Pair<'_>>, ParamError> {
    let rest = std::str::from_utf8(rest).map_err(|_| ParamError::Syntax)?;
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(ParamError::Syntax);
    }
    Ok(rest.split(' ').filter(|p| !p.is_empty()).map(split_param))
}

/// `esmtp-param = esmtp-keyword ["=" esmtp-value]`.
fn split_param(param: &str) -> Pair<'_> {
    let (keyword, value) = match param.split_once('=') {
        Some((keyword, value)) => (keyword, Some(value)),
        None => (param, None),
    };
    let keyword_ok = keyword.starts_with(|c: char| c.is_ascii_alphanumeric())
        && keyword
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    // esmtp-value = 1*(%d33-60 / %d62-126), widened by RFC 6531 §3.3 to UTF-8.
    let value_ok = value.is_none_or(|v| {
        !v.is_empty()
            && v.chars()
                .all(|c| matches!(c, '!'..='<' | '>'..='~') || !c.is_ascii())
    });
    if keyword_ok && value_ok {
        Ok((keyword, value))
    } else {
        Err(ParamError::Syntax)
    }
}

fn required(value: Option<&str>) -> Result<&str, ParamError> {
    value.ok_or(ParamError::Syntax)
}

fn set<T>(slot: &mut Option<T>, value: T) -> Result<(), ParamError> {
    if slot.is_some() {
        return Err(ParamError::Duplicate);
    }
    *slot = Some(value);
    Ok(())
}

fn set_flag(flag: &mut bool) -> Result<(), ParamError> {
    if *flag {
        return Err(ParamError::Duplicate);
    }
    *flag = true;
    Ok(())
}

/// RFC 1870 §6: `size-value = 1*20DIGIT`.
fn parse_size(value: &str) -> Result<u64, ParamError> {
    if value.is_empty()
        || value.len() > SIZE_MAX_DIGITS
        || !value.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ParamError::Value);
    }
    Ok(value.parse().unwrap_or(u64::MAX))
}

fn parse_body(value: &str) -> Result<BodyType, ParamError> {
    match value.to_ascii_uppercase().as_str() {
        "7BIT" => Ok(BodyType::SevenBit),
        "8BITMIME" => Ok(BodyType::EightBitMime),
        "BINARYMIME" => Err(ParamError::BodyNotOffered),
        _ => Err(ParamError::Value),
    }
}

fn parse_ret(value: &str) -> Result<Ret, ParamError> {
    match value.to_ascii_uppercase().as_str() {
        "FULL" => Ok(Ret::Full),
        "HDRS" => Ok(Ret::Headers),
        _ => Err(ParamError::Value),
    }
}

/// RFC 4954 §5: `"AUTH=" ( "<>" / xtext )`, the xtext holding an addr-spec.
fn parse_auth(value: &str) -> Result<String, ParamError> {
    if value == "<>" {
        return Ok(value.to_owned());
    }
    let identity = decode_xtext(value)?;
    if identity.len() > AUTH_IDENTITY_MAX_BYTES {
        return Err(ParamError::Value);
    }
    Ok(identity)
}

fn parse_envid(value: &str) -> Result<String, ParamError> {
    let envid = decode_xtext(value)?;
    if envid.len() > ENVID_MAX_BYTES {
        return Err(ParamError::Value);
    }
    Ok(envid)
}

/// RFC 3461 §4.1: `NEVER` alone, or a comma list of SUCCESS, FAILURE and DELAY.
fn parse_notify(value: &str) -> Result<Notify, ParamError> {
    let mut notify = Notify::default();
    for item in value.split(',') {
        let flag = match item.to_ascii_uppercase().as_str() {
            "NEVER" => &mut notify.never,
            "SUCCESS" => &mut notify.success,
            "FAILURE" => &mut notify.failure,
            "DELAY" => &mut notify.delay,
            _ => return Err(ParamError::Value),
        };
        set_flag(flag).map_err(|_| ParamError::Value)?;
    }
    if notify.never && (notify.success || notify.failure || notify.delay) {
        return Err(ParamError::Value);
    }
    Ok(notify)
}

/// RFC 3461 §4.2: `addr-type ";" xtext`, where addr-type is an RFC 5322 atom.
fn parse_orcpt(value: &str) -> Result<String, ParamError> {
    if value.len() > ORCPT_MAX_BYTES {
        return Err(ParamError::Value);
    }
    let (addr_type, address) = value.split_once(';').ok_or(ParamError::Value)?;
    let atom_ok = !addr_type.is_empty()
        && addr_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c));
    if !atom_ok {
        return Err(ParamError::Value);
    }
    Ok(format!("{addr_type};{}", decode_xtext(address)?))
}

fn hex_value(octet: u8) -> Option<u8> {
    // RFC 3461 §4 asks for upper-case hex; lower case is accepted since it is unambiguous.
    char::from(octet)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_params_all() {
        let params =
            parse_mail_params(b" SIZE=1000 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=QQ+2B1 AUTH=<>")
                .expect("valid");
        assert_eq!(
            params,
            MailParams {
                size: Some(1000),
                body: Some(BodyType::EightBitMime),
                smtputf8: true,
                ret: Some(Ret::Headers),
                envid: Some("QQ+1".into()),
                auth: Some("<>".into()),
            }
        );
        assert!(parse_mail_params(b"").expect("valid").is_empty());
    }

    #[test]
    fn mail_param_errors() {
        assert_eq!(parse_mail_params(b" FOO=1"), Err(ParamError::Unknown));
        assert_eq!(
            parse_mail_params(b" BODY=BINARYMIME"),
            Err(ParamError::BodyNotOffered)
        );
        assert_eq!(parse_mail_params(b" BODY=9BIT"), Err(ParamError::Value));
        assert_eq!(
            parse_mail_params(b" SIZE=1 SIZE=2"),
            Err(ParamError::Duplicate)
        );
        assert_eq!(parse_mail_params(b" SIZE=x"), Err(ParamError::Value));
        assert_eq!(parse_mail_params(b" SIZE"), Err(ParamError::Syntax));
        assert_eq!(parse_mail_params(b" SMTPUTF8=yes"), Err(ParamError::Syntax));
        assert_eq!(parse_mail_params(b"SIZE=1"), Err(ParamError::Syntax));
        assert_eq!(parse_mail_params(b" SIZE="), Err(ParamError::Syntax));
        assert_eq!(parse_mail_params(b" ENVID=a+zz"), Err(ParamError::Value));
        assert_eq!(parse_mail_params(b" ENVID=a+0A"), Err(ParamError::Value));
        assert_eq!(parse_mail_params(b" AUTH=a+zz"), Err(ParamError::Value));
        assert_eq!(
            parse_mail_params(b" AUTH=<> AUTH=<>"),
            Err(ParamError::Duplicate)
        );
        assert_eq!(
            parse_mail_params(b" AUTH=alice+2Bsub@example.com")
                .expect("valid")
                .auth
                .as_deref(),
            Some("alice+sub@example.com")
        );
    }

    #[test]
    fn huge_size_saturates() {
        let params = parse_mail_params(b" SIZE=99999999999999999999").expect("valid");
        assert_eq!(params.size, Some(u64::MAX));
        assert_eq!(
            parse_mail_params(b" SIZE=999999999999999999999"),
            Err(ParamError::Value)
        );
    }

    #[test]
    fn rcpt_params() {
        let params =
            parse_rcpt_params(b" NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bb@example.com").expect("ok");
        assert_eq!(
            params.notify,
            Some(Notify {
                success: true,
                delay: true,
                ..Notify::default()
            })
        );
        assert_eq!(params.orcpt.as_deref(), Some("rfc822;a+b@example.com"));
        assert_eq!(
            parse_rcpt_params(b" NOTIFY=NEVER,DELAY"),
            Err(ParamError::Value)
        );
        assert_eq!(
            parse_rcpt_params(b" NOTIFY=SOMETIMES"),
            Err(ParamError::Value)
        );
        assert_eq!(
            parse_rcpt_params(b" ORCPT=noaddrtype"),
            Err(ParamError::Value)
        );
        assert_eq!(parse_rcpt_params(b" SIZE=1"), Err(ParamError::Unknown));
    }

    #[test]
    fn xtext_round_trips() {
        for text in ["plain", "a+b=c", "sp ace", "\u{fc}ber"] {
            let encoded = encode_xtext(text);
            assert!(encoded
                .bytes()
                .all(|b| (b'!'..=b'~').contains(&b) && b != b'='));
            assert_eq!(decode_xtext(&encoded).unwrap(), text);
        }
    }
}
