//! The shard's part of inbound verification for one message from an untrusted client: it
//! starts SPF as soon as the envelope is known, removes forged `Authentication-Results:` fields
//! while the body streams in, keeps a copy of the content for DKIM, and at the end of data asks
//! the control thread for the verdict.
//!
//! Nothing here waits on the DNS: every question goes to the control thread through
//! `ControlClient`, and the one wait (for the verdict) is bounded by the configured timeout
//! plus a grace. A control thread that does not answer gives a `temperror` verdict, never a
//! refusal. The content copy is bounded by the session's message size limit, because the
//! session aborts a body that grows past it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::link::{ControlClient, PendingSpf};
use crate::config::VerificationConfig;
use crate::smtp::Envelope;
use crate::verification::{ForgedResultsFilter, Identities, MessageVerdict};

/// `[verification]` as the shard applies it.
#[derive(Clone, Debug)]
pub(crate) struct VerificationSettings {
    pub authserv_id: Arc<str>,
    pub dmarc_reject: bool,
    pub timeout: Duration,
}

impl VerificationSettings {
    /// The settings, or `None` when verification is switched off.
    pub fn from_config(config: &VerificationConfig) -> Option<VerificationSettings> {
        config.enabled.then(|| VerificationSettings {
            authserv_id: Arc::from(config.authserv_id.as_str()),
            dmarc_reject: config.dmarc_reject,
            timeout: config.timeout,
        })
    }
}

/// One message being verified.
pub(crate) struct MessageVerification {
    identities: Identities,
    spf: PendingSpf,
    filter: ForgedResultsFilter,
    /// The content as stored (forged fields removed), for DKIM and DMARC.
    content: Vec<u8>,
    /// Where the filter writes; swapped with the session's body buffer to avoid a copy.
    scratch: Vec<u8>,
}

impl MessageVerification {
    /// Starts SPF for the transaction's identities; the body follows through `filter`.
    pub fn begin(
        control: &ControlClient,
        settings: &VerificationSettings,
        envelope: &Envelope,
        peer: IpAddr,
    ) -> MessageVerification {
        let identities = Identities {
            peer: peer.to_canonical(),
            helo: envelope.helo.clone(),
            mail_from: envelope.mail_from.clone(),
        };
        // LIMITATION(L19): SPF starts here, at the first body event, because the session
        // raises none at MAIL FROM.
        let spf = control.start_spf(identities.clone(), settings.timeout);
        MessageVerification {
            identities,
            spf,
            filter: ForgedResultsFilter::new(&settings.authserv_id),
            content: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Replaces `body` by what may be stored of it, and keeps a copy.
    pub fn filter(&mut self, body: &mut Vec<u8>) {
        self.scratch.clear();
        self.filter.filter(body, &mut self.scratch);
        std::mem::swap(body, &mut self.scratch);

        // LIMITATION(L18): DKIM needs the whole message, so the copy grows with the body,
        // up to the session's message size limit.
        self.content.extend_from_slice(body);
    }

    /// The content ended: appends to `body` what the filter still held (a last header field).
    pub fn finish_content(&mut self, body: &mut Vec<u8>) {
        let start = body.len();
        self.filter.finish(body);
        self.content.extend_from_slice(&body[start..]);
    }

    /// Asks the control thread for the verdict on the whole message.
    pub async fn verdict(
        self,
        control: &ControlClient,
        settings: &VerificationSettings,
    ) -> MessageVerdict {
        if self.filter.removed() > 0 {
            debug!(
                removed = self.filter.removed(),
                "removed Authentication-Results fields that claimed our authserv-id"
            );
        }
        let asked = control
            .verify_message(
                self.identities.clone(),
                self.content,
                self.spf,
                settings.timeout,
            )
            .await;
        asked.unwrap_or_else(|_| {
            debug!("no verdict from the control thread in time: temperror");
            MessageVerdict::temperror(&settings.authserv_id, &self.identities)
        })
    }
}
