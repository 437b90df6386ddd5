//! AUTH verification for the shards, on the control thread.
//!
//! It owns the loaded users file (swapped whole on SIGHUP, kept as it was when a reload fails),
//! the dummy hash that unknown users are checked against, and the failure window per client
//! address, which is global across shards because it lives here. Each verification runs argon2
//! on tokio's blocking pool, at most `VERIFICATIONS_IN_FLIGHT_MAX` at once, so neither a shard
//! nor the control thread's own loop ever waits on it. Every refused attempt is logged with the
//! client address and the user name; a password is never logged and is wiped after use.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use crate::config::AuthConfig;
use crate::fatal::Fatal;
use crate::sasl::users::dummy_hash;
use crate::sasl::{Credentials, FailureWindow, UserTable, Verdict};

/// Verifications running at once. Each argon2id run with the default cost holds 19 MiB and a
/// core for tens of milliseconds; more in parallel would only slow every one of them down.
pub const VERIFICATIONS_IN_FLIGHT_MAX: usize = 4;

/// The verifier the control thread answers `ControlRequest::Authenticate` with. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    users_file: PathBuf,
    users: Mutex<Arc<UserTable>>,
    failures: Mutex<FailureWindow>,
    dummy_phc: Arc<str>,
    in_flight: Arc<Semaphore>,
}

impl Authenticator {
    /// Loads the users file named by `config`; a missing or malformed file stops start-up.
    pub fn load(config: &AuthConfig, users_file: &Path) -> Result<Authenticator, Fatal> {
        let users =
            UserTable::load(users_file).map_err(|error| error.to_fatal("auth.users_file"))?;
        let dummy_phc = dummy_hash().map_err(|error| {
            Fatal::internal(format!("cannot prepare the AUTH dummy hash: {error}"))
        })?;
        info!(
            users_file = %users_file.display(),
            users = users.len(),
            "AUTH users loaded"
        );
        warn_if_exposed(users_file);
        Ok(Authenticator {
            inner: Arc::new(Inner {
                users_file: users_file.to_owned(),
                users: Mutex::new(Arc::new(users)),
                failures: Mutex::new(FailureWindow::new(
                    config.failures_max,
                    config.failure_window,
                )),
                dummy_phc: Arc::from(dummy_phc),
                in_flight: Arc::new(Semaphore::new(VERIFICATIONS_IN_FLIGHT_MAX)),
            }),
        })
    }

    /// Reads the users file again (SIGHUP, `POST /reload`); `cause` goes into the log. A file
    /// that fails to load leaves the users as they were, and says so. Returns the user count.
    pub fn reload(&self, cause: &str) -> Result<usize, String> {
        let path = &self.inner.users_file;
        match UserTable::load(path) {
            Ok(users) => {
                let count = users.len();
                *lock(&self.inner.users) = Arc::new(users);
                info!(%cause, users_file = %path.display(), users = count, "AUTH users reloaded");
                Ok(count)
            }
            Err(error) => {
                error!(
                    %cause,
                    %error,
                    "AUTH users file reload failed; the users loaded before stay in force"
                );
                Err(error.to_string())
            }
        }
    }

    /// Verifies `credentials` in a task of its own and sends the verdict to `reply`. An attempt
    /// that has not found a verification slot by `deadline` is answered `Unavailable` unchecked,
    /// so that a backlog drains instead of burning CPU for sessions that gave up. Must run
    /// inside the control runtime.
    pub fn spawn_verify(
        &self,
        client: IpAddr,
        credentials: Credentials,
        deadline: Instant,
        reply: flume::Sender<Verdict>,
    ) {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let verdict = inner.verify(client, credentials, deadline).await;
            // The shard may have stopped waiting; its session already answered 454.
            let _ = reply.send(verdict);
        });
    }
}

impl Inner {
    async fn verify(&self, client: IpAddr, credentials: Credentials, deadline: Instant) -> Verdict {
        let username = credentials.username.clone();
        if !lock(&self.failures).admit(client, Instant::now()) {
            warn!(
                %client,
                auth_user = ?username,
                "AUTH refused: too many failures from this client"
            );
            return Verdict::RateLimited;
        }
        if credentials.acts_for_another() {
            info!(
                %client,
                auth_user = ?username,
                authzid = ?credentials.authorization_identity,
                "AUTH failed: authorization identity differs from the user"
            );
            return Verdict::Rejected;
        }

        let slot = Arc::clone(&self.in_flight).acquire_owned();
        let permit = match tokio::time::timeout_at(deadline.into(), slot).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => {
                lock(&self.failures).not_checked(client);
                warn!(
                    %client,
                    auth_user = ?username,
                    "AUTH not checked in time: the verifier is busy"
                );
                return Verdict::Unavailable;
            }
        };
        let users = Arc::clone(&lock(&self.users));
        let dummy_phc = Arc::clone(&self.dummy_phc);
        let known = users.contains(&username);
        let checked = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // `credentials` (and with it the password) is dropped and wiped here.
            users.verify(&credentials.username, &credentials.password, &dummy_phc)
        })
        .await;

        match checked {
            Ok(true) => {
                lock(&self.failures).succeeded(client);
                Verdict::Accepted
            }
            Ok(false) => {
                let reason = if known {
                    "wrong password"
                } else {
                    "unknown user"
                };
                info!(%client, auth_user = ?username, reason, "AUTH failed: invalid credentials");
                Verdict::Rejected
            }
            Err(join_error) => {
                error!(%join_error, "AUTH verification task failed");
                Verdict::Unavailable
            }
        }
    }
}

/// The hashes are slow to attack, not impossible: a users file others can read is worth a
/// warning, though not a refusal (a group-readable file may be deliberate).
fn warn_if_exposed(users_file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::metadata(users_file) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        warn!(
            users_file = %users_file.display(),
            mode = format!("{mode:o}"),
            "the AUTH users file is readable by every local user; chmod 0600 it"
        );
    }
}

/// The data behind these mutexes stays consistent even if a holder panicked (each update is
/// one assignment), so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zeroize::Zeroizing;

    use super::*;
    use crate::sasl::hash_password;

    fn credentials(authorization: Option<&str>, username: &str, password: &str) -> Credentials {
        Credentials {
            authorization_identity: authorization.map(str::to_owned),
            username: username.to_owned(),
            password: Zeroizing::new(password.to_owned()),
        }
    }

    fn ask(authenticator: &Authenticator, client: IpAddr, attempt: Credentials) -> Verdict {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (reply_tx, reply_rx) = flume::bounded(1);
            let deadline = Instant::now() + Duration::from_secs(30);
            authenticator.spawn_verify(client, attempt, deadline, reply_tx);
            reply_rx.recv_async().await.expect("a verdict")
        })
    }

    #[test]
    fn verdicts_and_the_global_failure_window() {
        let directory = tempfile::tempdir().expect("tempdir");
        let users_file = directory.path().join("users");
        let phc = hash_password("secret").expect("hash");
        std::fs::write(&users_file, format!("alice:{phc}\n")).expect("write users");
        let config = AuthConfig {
            users_file: Some(users_file.clone()),
            failures_max: 2,
            failure_window: Duration::from_secs(600),
        };
        let authenticator = Authenticator::load(&config, &users_file).expect("load");
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();

        let right = || credentials(None, "alice", "secret");
        assert_eq!(ask(&authenticator, client, right()), Verdict::Accepted);
        let as_itself = credentials(Some("alice"), "alice", "secret");
        assert_eq!(ask(&authenticator, client, as_itself), Verdict::Accepted);
        let as_bob = credentials(Some("bob"), "alice", "secret");
        assert_eq!(ask(&authenticator, client, as_bob), Verdict::Rejected);
        let unknown = credentials(None, "mallory", "secret");
        assert_eq!(ask(&authenticator, client, unknown), Verdict::Rejected);

        // Two failures used the window up: even the right password is refused unchecked.
        assert_eq!(ask(&authenticator, client, right()), Verdict::RateLimited);
        assert_eq!(ask(&authenticator, other, right()), Verdict::Accepted);

        // A reload that fails keeps alice; one that works replaces her.
        std::fs::write(&users_file, "broken\n").expect("break users");
        assert!(authenticator.reload("test").is_err());
        assert_eq!(ask(&authenticator, other, right()), Verdict::Accepted);
        let bob = hash_password("pw").expect("hash");
        std::fs::write(&users_file, format!("bob:{bob}\n")).expect("write users");
        assert_eq!(authenticator.reload("test"), Ok(1));
        let wrong = credentials(None, "alice", "secret");
        assert_eq!(ask(&authenticator, other, wrong), Verdict::Rejected);
        let bob = credentials(None, "bob", "pw");
        assert_eq!(ask(&authenticator, other, bob), Verdict::Accepted);
    }
}
