//! What the relay can re-read while it runs, without a restart: today the TLS certificates.
//!
//! SIGHUP and `POST /reload` on the admin API both land here, on the control thread. Each part
//! reloads on its own; one that fails keeps what it had and says why, and the others still
//! reload. File reads are small and rare, so they run on the control thread directly.

use std::sync::Arc;

use serde_json::{json, Value};
use tracing::error;

use crate::tls::InboundTls;

/// Everything a reload touches, shared by the signal handler and the admin API.
#[derive(Default)]
pub struct Reloadable {
    pub tls: Option<Arc<InboundTls>>,
}

/// How one reload went, per part.
pub struct ReloadReport {
    pub ok: bool,
    pub details: Value,
}

impl Reloadable {
    /// Reloads every part; `cause` (`SIGHUP`, or the admin actor) goes into the log.
    pub fn reload(&self, cause: &str) -> ReloadReport {
        let mut ok = true;
        let mut details = serde_json::Map::new();
        if let Some(tls) = &self.tls {
            let answer = match tls.reload() {
                Ok(reloaded) => json!({
                    "reloaded": true,
                    "certificates": reloaded.certificates,
                    "client_ca": reloaded.client_ca,
                }),
                Err(errors) => {
                    ok = false;
                    error!(
                        %cause,
                        errors = %errors,
                        "TLS reload failed; the certificates loaded before are still served"
                    );
                    let list: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
                    json!({"reloaded": false, "errors": list})
                }
            };
            details.insert("tls".to_owned(), answer);
        }
        ReloadReport {
            ok,
            details: Value::Object(details),
        }
    }
}
