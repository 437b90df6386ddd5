//! What each SMTP command does to the session: command sequencing (RFC 5321 §4.1.4), the EHLO
//! extension list, the envelope checks (limits, relay policy, SMTPUTF8) and the start of DATA
//! and BDAT bodies. Every path through here queues exactly one reply, except those that start
//! a body (354 or none, the reply follows the body). It never frames input: `mod.rs` does.

use std::borrow::Cow;

use super::{Bdat, Chunk, ChunkFate, Event, Hello, Mode, Refusal, Session};
use crate::smtp::address::{Mailbox, Path};
use crate::smtp::command::Command;
use crate::smtp::data::DataDecoder;
use crate::smtp::envelope::Recipient;
use crate::smtp::params::{MailParams, RcptParams};
use crate::smtp::received::address_literal;
use crate::smtp::reply::{EnhancedStatus, Reply};

const OK: EnhancedStatus = EnhancedStatus::new(2, 0, 0);

impl Session {
    pub(super) fn dispatch(&mut self, command: Command) -> Option<Event> {
        match command {
            Command::Ehlo { domain } => self.hello(domain, Hello::Ehlo),
            Command::Helo { domain } => self.hello(domain, Hello::Helo),
            Command::Mail {
                reverse_path,
                params,
            } => self.mail(reverse_path, params),
            Command::Rcpt {
                forward_path,
                params,
            } => self.rcpt(forward_path, params),
            Command::Data => self.data(),
            Command::Bdat { chunk_size, last } => self.bdat(chunk_size, last),
            Command::Rset => self.rset(),
            Command::Noop => self.answer(Reply::new(250, Some(OK), "Ok")),
            Command::Quit => self.quit(),
            // RFC 5321 §3.5.3: 252 says "cannot verify, but will try"; it tells an address
            // harvester nothing.
            Command::Vrfy => self.answer(Reply::new(
                252,
                Some(EnhancedStatus::new(2, 5, 2)),
                "cannot verify addresses here; send the message and delivery will be attempted",
            )),
            // RFC 5321 §3.5.2 lets a server refuse EXPN; expanding lists helps only harvesters.
            Command::Expn => self.refuse(Refusal::ExpnUnavailable),
            Command::Help => self.answer(Reply::new(
                214,
                Some(OK),
                "postern speaks SMTP as in RFC 5321; send EHLO for the extensions",
            )),
            Command::StartTls => self.starttls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(&mechanism, initial_response),
        }
    }

    /// EHLO and HELO (RFC 5321 §4.1.1.1): both reset any transaction.
    fn hello(&mut self, domain: String, hello: Hello) -> Option<Event> {
        let aborted = self.abandon_transaction();
        self.envelope.helo = domain;
        self.hello = Some(hello);
        // RFC 2034 §3: no enhanced status on the EHLO and HELO replies.
        let reply = match hello {
            Hello::Ehlo => self.ehlo_reply(),
            Hello::Helo => Reply::new(250, None, self.params.hostname.to_string()),
        };
        self.queue(&reply);
        aborted.then_some(Event::MessageAborted)
    }

    fn ehlo_reply(&self) -> Reply {
        let peer = address_literal(self.params.peer.ip());
        let mut lines: Vec<Cow<'static, str>> = vec![
            format!("{} greets {peer}", self.params.hostname).into(),
            "PIPELINING".into(),
            format!("SIZE {}", self.params.limits.message_size_max_bytes).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if self.starttls_offered() {
            lines.push("STARTTLS".into());
        }
        // RFC 4954 §4: the mechanisms send passwords as they are, so they are shown only
        // under TLS; before it, AUTH is answered 538.
        if self.params.auth_available && self.params.tls_active {
            lines.push(format!("AUTH {}", crate::sasl::Mechanism::ADVERTISED).into());
        }
        Reply::multiline(250, None, lines)
    }

    fn starttls_offered(&self) -> bool {
        self.params.starttls_available && !self.params.tls_active
    }

    /// MAIL (RFC 5321 §4.1.1.2).
    fn mail(&mut self, reverse_path: Path, params: MailParams) -> Option<Event> {
        let Some(hello) = self.hello else {
            return self.refuse(Refusal::HelloFirst);
        };
        // After a failed BDAT the transaction is dead; a new MAIL may replace it.
        if self.mail_given && self.bdat != Bdat::Failed {
            return self.refuse(Refusal::NestedMail);
        }
        if hello == Hello::Helo && !params.is_empty() {
            return self.refuse(Refusal::ParametersNeedEhlo);
        }
        // RFC 4954 §6: 530 when the policy requires AUTH before any transaction.
        if self.params.auth_required && self.authenticated.is_none() {
            return self.refuse(Refusal::AuthenticationRequired);
        }
        if self.storage_full {
            return self.refuse(Refusal::InsufficientStorage);
        }
        let mail_from = match reverse_path {
            Path::Null => String::new(),
            Path::Mailbox(mailbox) if !mailbox.is_ascii() && !params.smtputf8 => {
                return self.refuse(Refusal::Smtputf8Required);
            }
            Path::Mailbox(mailbox) => mailbox.into_string(),
            Path::Postmaster => {
                debug_assert!(false, "the parser refuses <postmaster> as a reverse-path");
                return self.refuse(Refusal::MailFirst);
            }
        };
        // RFC 1870 §6: a declared size over the limit is refused before any body is sent.
        if params.size > Some(self.params.limits.message_size_max_bytes) {
            return self.refuse(Refusal::SizeExceeded);
        }

        let helo = std::mem::take(&mut self.envelope.helo);
        self.envelope.reset_transaction();
        self.envelope.helo = helo;
        self.envelope.mail_from = mail_from;
        self.envelope.body = params.body.unwrap_or_default();
        self.envelope.smtputf8 = params.smtputf8;
        self.envelope.declared_size = params.size;
        self.envelope.ret = params.ret;
        self.envelope.envid = params.envid;
        // RFC 4954 §5: the identity is believed only from a client we trust to assert it;
        // from anyone else it is passed on as `<>`.
        self.envelope.auth = params.auth.map(|identity| {
            if self.is_trusted() {
                identity
            } else {
                "<>".to_owned()
            }
        });
        self.mail_given = true;
        self.bdat = Bdat::Unused;
        self.answer(Reply::new(250, Some(EnhancedStatus::new(2, 1, 0)), "Ok"))
    }

    /// RCPT (RFC 5321 §4.1.1.3).
    fn rcpt(&mut self, forward_path: Path, params: RcptParams) -> Option<Event> {
        if !self.mail_given {
            return self.refuse(self.missing_mail());
        }
        if self.hello == Some(Hello::Helo) && !params.is_empty() {
            return self.refuse(Refusal::ParametersNeedEhlo);
        }
        if self.envelope.rcpt_to.len() >= self.params.limits.recipients_max {
            return self.refuse(Refusal::TooManyRecipients);
        }
        if self.storage_full {
            return self.refuse(Refusal::InsufficientStorage);
        }
        let address = match forward_path {
            // RFC 5321 §4.5.1: postmaster must always be accepted.
            Path::Postmaster => "postmaster".to_owned(),
            Path::Mailbox(mailbox) => match self.check_recipient(mailbox) {
                Ok(address) => address,
                Err(refusal) => return self.refuse(refusal),
            },
            Path::Null => {
                debug_assert!(false, "the parser refuses <> as a forward-path");
                return self.refuse(Refusal::MailFirst);
            }
        };

        self.envelope.rcpt_to.push(Recipient {
            address,
            notify: params.notify,
            orcpt: params.orcpt,
        });
        self.answer(Reply::new(250, Some(EnhancedStatus::new(2, 1, 5)), "Ok"))
    }

    fn check_recipient(&self, mailbox: Mailbox) -> Result<String, Refusal> {
        if !mailbox.is_ascii() && !self.envelope.smtputf8 {
            return Err(Refusal::Smtputf8Required);
        }
        // RFC 4954 §6: an authenticated client relays like a trusted network does.
        if !self.params.relay_allowed
            && self.authenticated.is_none()
            && !is_local_domain(mailbox.domain(), &self.params.local_domains)
        {
            return Err(Refusal::RelayDenied(mailbox.into_string()));
        }
        Ok(mailbox.into_string())
    }

    /// DATA (RFC 5321 §4.1.1.4): 354, then the body.
    fn data(&mut self) -> Option<Event> {
        if !self.mail_given {
            return self.refuse(self.missing_mail());
        }
        if self.bdat != Bdat::Unused {
            return self.refuse(Refusal::DataAfterBdat);
        }
        if self.envelope.rcpt_to.is_empty() {
            return self.refuse(Refusal::NoRecipients);
        }
        debug_assert!(!self.message_open);
        // RFC 3463 has no class 3, so the intermediate reply carries no enhanced status.
        self.queue(&Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"));
        let limits = &self.params.limits;
        self.mode = Mode::Data(DataDecoder::new(
            limits.text_line_max_bytes,
            limits.message_size_max_bytes,
            limits.accept_bare_line_endings,
        ));
        self.message_open = true;
        Some(Event::MessageBegin)
    }

    /// BDAT (RFC 3030 §2). The chunk's octets are read whatever the verdict; the reply comes
    /// after them.
    fn bdat(&mut self, size: u64, last: bool) -> Option<Event> {
        let fate = if !self.mail_given {
            ChunkFate::Refused(self.missing_mail())
        } else if self.bdat == Bdat::Failed {
            ChunkFate::Refused(Refusal::BdatFailed)
        } else if self.envelope.rcpt_to.is_empty() {
            ChunkFate::Refused(Refusal::NoRecipients)
        } else {
            let received_bytes = match self.bdat {
                Bdat::Receiving { received_bytes } => received_bytes,
                Bdat::Unused | Bdat::Failed => 0,
            };
            if received_bytes.saturating_add(size) > self.params.limits.message_size_max_bytes {
                ChunkFate::Oversize
            } else {
                ChunkFate::Store
            }
        };

        let begins = fate == ChunkFate::Store && self.bdat == Bdat::Unused;
        if begins {
            self.bdat = Bdat::Receiving { received_bytes: 0 };
            self.message_open = true;
        }
        debug_assert!(fate != ChunkFate::Store || self.message_open);
        self.mode = Mode::Chunk(Chunk {
            size,
            remaining: size,
            last,
            fate,
        });
        begins.then_some(Event::MessageBegin)
    }

    /// RSET (RFC 5321 §4.1.1.5); abandons a BDAT message between chunks.
    fn rset(&mut self) -> Option<Event> {
        let aborted = self.abandon_transaction();
        self.queue(&Reply::new(250, Some(OK), "Ok"));
        aborted.then_some(Event::MessageAborted)
    }

    /// QUIT (RFC 5321 §4.1.1.10).
    fn quit(&mut self) -> Option<Event> {
        let text = format!("{} closing connection", self.params.hostname);
        self.queue(&Reply::new(221, Some(OK), text));
        self.mode = Mode::Closed;
        Some(Event::Close)
    }

    /// STARTTLS (RFC 3207 §4).
    fn starttls(&mut self) -> Option<Event> {
        if !self.starttls_offered() {
            return self.refuse(Refusal::StartTlsUnavailable);
        }
        if self.hello != Some(Hello::Ehlo) {
            return self.refuse(Refusal::EhloFirst);
        }
        if self.mail_given {
            return self.refuse(Refusal::StartTlsInTransaction);
        }
        self.queue(&Reply::new(220, Some(OK), "Ready to start TLS"));
        self.mode = Mode::AwaitingTls;
        Some(Event::StartTls)
    }

    /// Ends any transaction; true when a BDAT message was open and is now abandoned.
    fn abandon_transaction(&mut self) -> bool {
        debug_assert!(matches!(self.mode, Mode::Command));
        self.end_transaction();
        std::mem::take(&mut self.message_open)
    }

    fn missing_mail(&self) -> Refusal {
        if self.hello.is_none() {
            Refusal::HelloFirst
        } else {
            Refusal::MailFirst
        }
    }
}

/// Whether `domain` is one of `local_domains`: an exact match, or a strict subdomain of a
/// `*.parent` entry.
fn is_local_domain(domain: &str, local_domains: &[String]) -> bool {
    local_domains
        .iter()
        .any(|entry| crate::config::domain_matches(entry, domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_domain_matching() {
        let domains = ["example.com".to_owned(), "*.corp.example".to_owned()];
        assert!(is_local_domain("Example.COM", &domains));
        assert!(!is_local_domain("sub.example.com", &domains));
        assert!(is_local_domain("a.corp.example", &domains));
        assert!(is_local_domain("b.a.corp.example", &domains));
        assert!(!is_local_domain("corp.example", &domains));
        assert!(!is_local_domain(".corp.example", &domains));
        assert!(!is_local_domain("xcorp.example", &domains));
        assert!(!is_local_domain("[192.0.2.1]", &domains));
    }
}
