//! SPF (RFC 7208), DKIM (RFC 6376) and DMARC (RFC 7489) checks of inbound mail, answered on the
//! control thread with mail-auth.
//!
//! mail-auth asks the DNS through the very resolver `dns` built from `[dns]`: its
//! `MessageAuthenticator` is a thin wrapper around a hickory `TokioResolver`, and the two crates
//! share one hickory version, so the verifier holds a clone of ours. Verification therefore
//! uses the same servers, the same timeouts and the same bounded cache as delivery, and never
//! `/etc/resolv.conf` behind the operator's back. Each check runs as its own task, at most
//! `VERIFICATIONS_IN_FLIGHT_MAX` at once, and gives up at the asking shard's deadline. It
//! guarantees that a DNS failure or a deadline reads `temperror` and nothing else; deciding what
//! to do with a verdict (write it, refuse the message) is the shard's business.

use std::sync::Arc;
use std::time::Instant;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult,
    MessageAuthenticator, SpfOutput, SpfResult,
};
use tokio::sync::Semaphore;
use tracing::debug;

use super::dns::Dns;
use crate::config::VerificationConfig;
use crate::verification::{mail_from_domain, Identities, MessageVerdict, SpfVerdict};

/// Most verifications (SPF or whole-message) running at once; one beyond this is answered
/// `temperror` at once rather than queued without bound. Each whole-message check holds its
/// message in memory, so this also bounds the control thread's share of that memory.
pub const VERIFICATIONS_IN_FLIGHT_MAX: usize = 256;

/// The checks and what they need to know about us. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    authenticator: MessageAuthenticator,
    /// Our host name: the receiving domain of SPF macros (RFC 7208 §7.3, `%{r}`).
    hostname: Arc<str>,
    authserv_id: Arc<str>,
    in_flight: Arc<Semaphore>,
}

impl Verifier {
    /// A verifier that asks the DNS through `dns`'s resolver (and shares its cache).
    pub fn new(dns: &Dns, config: &VerificationConfig, hostname: &str) -> Verifier {
        Verifier {
            authenticator: MessageAuthenticator(dns.resolver().clone()),
            hostname: Arc::from(hostname),
            authserv_id: Arc::from(config.authserv_id.as_str()),
            in_flight: Arc::new(Semaphore::new(VERIFICATIONS_IN_FLIGHT_MAX)),
        }
    }

    /// Checks the HELO and MAIL FROM identities on its own task; the answer goes to `reply`,
    /// `temperror` if `deadline` passes first.
    pub fn spawn_spf(
        &self,
        identities: Identities,
        deadline: Instant,
        reply: flume::Sender<SpfVerdict>,
    ) {
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            debug!("SPF check refused: too many verifications in flight");
            let _ = reply.send(SpfVerdict::temperror(&identities));
            return;
        };
        let verifier = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::from_std(deadline);
            let verdict = tokio::time::timeout_at(deadline, verifier.spf(&identities))
                .await
                .unwrap_or_else(|_| SpfVerdict::temperror(&identities));
            let _ = reply.send(verdict);
            drop(permit);
        });
    }

    /// Checks DKIM and DMARC on `message` (the content the client sent, forged results already
    /// removed) on its own task, with the SPF verdict that `spf` delivers, and answers with the
    /// `Authentication-Results:` field. Whatever has not finished by `deadline` reads
    /// `temperror`.
    pub fn spawn_message(
        &self,
        identities: Identities,
        message: Vec<u8>,
        spf: flume::Receiver<SpfVerdict>,
        deadline: Instant,
        reply: flume::Sender<MessageVerdict>,
    ) {
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            debug!("message verification refused: too many verifications in flight");
            let _ = reply.send(MessageVerdict::temperror(&self.authserv_id, &identities));
            return;
        };
        let verifier = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::from_std(deadline);
            let verdict = verifier.message(&identities, &message, spf, deadline).await;
            let _ = reply.send(verdict);
            drop(permit);
        });
    }

    /// RFC 7208 §2.3 and §2.4. For the null reverse-path the MAIL FROM identity is
    /// `postmaster@<helo>`, which is the HELO check again, so its result is reused.
    async fn spf(&self, identities: &Identities) -> SpfVerdict {
        let helo = if is_checkable_helo(&identities.helo) {
            self.authenticator
                .verify_spf(SpfParameters::verify_ehlo(
                    identities.peer,
                    &identities.helo,
                    &self.hostname,
                ))
                .await
        } else {
            SpfOutput::new(identities.helo.clone()).with_result(SpfResult::None)
        };
        let mail_from = if identities.mail_from.is_empty() {
            helo.clone()
        } else {
            self.authenticator
                .verify_spf(SpfParameters::verify_mail_from(
                    identities.peer,
                    &identities.helo,
                    &self.hostname,
                    &identities.mail_from,
                ))
                .await
        };
        SpfVerdict { helo, mail_from }
    }

    async fn message(
        &self,
        identities: &Identities,
        message: &[u8],
        spf: flume::Receiver<SpfVerdict>,
        deadline: tokio::time::Instant,
    ) -> MessageVerdict {
        // A shard that could not send the SPF request dropped its sender: that is a
        // temperror too, never a verdict about the sender.
        let spf = match tokio::time::timeout_at(deadline, spf.recv_async()).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(_)) | Err(_) => SpfVerdict::temperror(identities),
        };
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            // Not even a header section mail-auth can read: there is no signature and no
            // From domain, so DKIM and DMARC have nothing to say.
            return self.verdict(identities, &spf, &[], &DmarcOutput::default());
        };

        let dkim = match tokio::time::timeout_at(deadline, self.authenticator.verify_dkim(&parsed))
            .await
        {
            Ok(outputs) => outputs,
            Err(_) => vec![DkimOutput::temp_err(timed_out())],
        };
        let dmarc_parameters =
            DmarcParameters::new(&parsed, &dkim, mail_from_domain(identities), &spf.mail_from);
        let dmarc = match tokio::time::timeout_at(
            deadline,
            self.authenticator.verify_dmarc(dmarc_parameters),
        )
        .await
        {
            Ok(output) => output,
            Err(_) => DmarcOutput::default()
                .with_domain(&from_domain(&parsed))
                .with_spf_result(DmarcResult::TempError(timed_out()))
                .with_dkim_result(DmarcResult::TempError(timed_out())),
        };
        self.verdict(identities, &spf, &dkim, &dmarc)
    }

    /// Writes the `Authentication-Results:` field (RFC 8601 §2.2): both SPF identities, every
    /// DKIM signature (or `dkim=none`), and DMARC.
    // LIMITATION(L19): the verdict is only recorded; no DMARC report, ARC seal or
    // Received-SPF field is produced.
    fn verdict(
        &self,
        identities: &Identities,
        spf: &SpfVerdict,
        dkim: &[DkimOutput<'_>],
        dmarc: &DmarcOutput,
    ) -> MessageVerdict {
        let spf_part = AuthenticationResults::new(&self.authserv_id)
            .with_spf_ehlo_result(&spf.helo, identities.peer, &identities.helo)
            .with_spf_mailfrom_result(
                &spf.mail_from,
                identities.peer,
                &identities.mail_from,
                &identities.helo,
            )
            .to_header();
        let mut header = spf_part.trim_end_matches("\r\n").to_owned();
        if dkim.is_empty() {
            header.push_str(";\r\n\tdkim=none");
        } else {
            let from = dmarc.domain();
            header.push_str(
                &AuthenticationResults::new("")
                    .with_dkim_results(dkim, from)
                    .to_string(),
            );
        }
        if dmarc.domain().is_empty() {
            header.push_str(";\r\n\tdmarc=none");
        } else {
            header.push_str(
                &AuthenticationResults::new("")
                    .with_dmarc_result(dmarc)
                    .to_string(),
            );
        }
        header.push_str("\r\n");

        let dmarc_result = dmarc.result();
        let dmarc_rejects =
            matches!(dmarc_result, DmarcResult::Fail(_)) && dmarc.policy() == Policy::Reject;
        let summary = format!(
            "spf={} dkim={} dmarc={}",
            spf_word(spf.mail_from.result()),
            dkim.iter()
                .map(|output| dkim_word(output.result()))
                .min_by_key(|word| dkim_rank(word))
                .unwrap_or("none"),
            dmarc_word(&dmarc_result),
        );
        MessageVerdict {
            header: header.into_bytes(),
            dmarc_rejects,
            summary,
        }
    }
}

/// RFC 7208 §2.3: only a fully qualified domain name is checked; an address literal or a
/// single label gives `none` without a query.
fn is_checkable_helo(helo: &str) -> bool {
    let name = helo.trim_end_matches('.');
    name.contains('.') && !name.starts_with('[') && name.parse::<std::net::IpAddr>().is_err()
}

/// The RFC 5322 From domain, for a DMARC verdict that timed out.
fn from_domain(message: &AuthenticatedMessage<'_>) -> String {
    message
        .from
        .first()
        .and_then(|from| from.rsplit_once('@'))
        .map(|(_, domain)| domain.to_ascii_lowercase())
        .unwrap_or_default()
}

fn timed_out() -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
        "verification timed out".into(),
    ))
}

fn spf_word(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_word(result: &DkimResult) -> &'static str {
    match result {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

/// The best DKIM result summarises a message: one passing signature is enough.
fn dkim_rank(word: &str) -> u8 {
    match word {
        "pass" => 0,
        "temperror" => 1,
        "fail" => 2,
        "permerror" => 3,
        "neutral" => 4,
        _ => 5,
    }
}

fn dmarc_word(result: &DmarcResult) -> &'static str {
    match result {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fully_qualified_helo_is_checked() {
        assert!(is_checkable_helo("client.example"));
        assert!(is_checkable_helo("client.example."));
        assert!(!is_checkable_helo("localhost"));
        assert!(!is_checkable_helo("[192.0.2.1]"));
        assert!(!is_checkable_helo("[IPv6:2001:db8::1]"));
        assert!(!is_checkable_helo("192.0.2.1"));
        assert!(!is_checkable_helo(""));
    }

    #[test]
    fn the_summary_words_follow_rfc_8601() {
        assert_eq!(spf_word(SpfResult::SoftFail), "softfail");
        assert_eq!(dkim_word(&DkimResult::None), "none");
        assert_eq!(dmarc_word(&DmarcResult::Pass), "pass");
        assert!(dkim_rank("pass") < dkim_rank("fail"));
    }
}
