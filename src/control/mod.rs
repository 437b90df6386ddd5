//! The control thread: one OS thread running a small current-thread tokio runtime.
//!
//! It owns what is not on the hot path and what only exists for tokio: signal handling, the
//! admin API, the DNS resolver (`dns`), inbound message verification (`verify`, which asks
//! the DNS through that same resolver), reloads (`reload`) and outbound connections bound to a
//! source address (`connect`). Shards reach it only
//! through the channels in `shard::link`. Requests that wait on the network run as their own
//! tasks, so one slow lookup never delays a ping or a signal. It must never be needed to accept
//! or store a message: a shard waits for a verification verdict at most the configured timeout
//! and then accepts with `temperror`, so a slow control thread can delay administration,
//! delivery and the end-of-data reply, but never refuse mail.

mod connect;
pub mod dns;
pub mod reload;
pub mod verify;

mod admin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::config::{DnsConfig, VerificationConfig};
use crate::fatal::Fatal;
use crate::shard::link::{ControlLink, ControlReply, ControlRequest, ShardCommand};
use dns::Dns;
use reload::Reloadable;
use verify::Verifier;

/// A running control thread.
pub struct Control {
    thread: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Control {
    /// Starts the control thread. SIGTERM or SIGINT asks every shard to shut down within
    /// `shutdown_timeout`; a second signal shortens the deadline to now; SIGHUP reloads what
    /// `reloadable` holds. DNS questions are answered with the resolvers of `dns_config`, and
    /// inbound mail is verified through them as `verification` says, with `hostname` as the
    /// receiving domain; the admin API listens on `admin_address`.
    pub fn start(
        link: ControlLink,
        shutdown_timeout: Duration,
        dns_config: &DnsConfig,
        verification: &VerificationConfig,
        hostname: &str,
        admin_address: Option<SocketAddr>,
        reloadable: Reloadable,
    ) -> Result<Control, Fatal> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| {
                Fatal::internal(format!("cannot build the control runtime: {error}"))
            })?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();

        // Signal handlers are installed here, before any shard exists, so that a SIGTERM
        // arriving during start-up is not lost to the default action.
        let signals = runtime.block_on(async { Signals::install() })?;
        let dns = runtime.block_on(async { Dns::new(dns_config) })?;
        let verifier = Verifier::new(&dns, verification, hostname);

        // Bound here, before any shard starts, so a taken port stops start-up with its fix.
        let admin_listener = match admin_address {
            None => None,
            Some(address) => {
                let bound = std::net::TcpListener::bind(address)
                    .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
                    .map_err(|error| {
                        crate::listener::bind_failure(address, error, "admin.address")
                    })?;
                let listener = runtime
                    .block_on(async { tokio::net::TcpListener::from_std(bound) })
                    .map_err(|error| {
                        Fatal::internal(format!("cannot serve the admin API: {error}"))
                    })?;
                info!(%address, "admin API listening");
                Some(listener)
            }
        };

        let thread = std::thread::Builder::new()
            .name("postern-control".into())
            .spawn(move || {
                let reloadable = Arc::new(reloadable);
                if let Some(listener) = admin_listener {
                    let shards = link.shards.clone();
                    runtime.spawn(admin::serve(listener, shards, Arc::clone(&reloadable)));
                }
                let services = Services {
                    dns,
                    verifier,
                    reloadable,
                };
                runtime.block_on(run(link, signals, services, shutdown_timeout, stop_rx));
            })
            .map_err(|error| {
                Fatal::internal(format!("cannot start the control thread: {error}"))
            })?;

        Ok(Control {
            thread,
            stop: stop_tx,
        })
    }

    /// Stops the control thread after the shards have finished, and waits for it.
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            warn!("the control thread panicked while stopping");
        }
    }
}

struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

/// What a signal asks for.
enum SignalRequest {
    Shutdown(&'static str),
    Reload,
}

impl Signals {
    fn install() -> Result<Signals, Fatal> {
        let install = |kind| {
            signal(kind).map_err(|error| {
                Fatal::internal(format!("cannot install a signal handler: {error}"))
            })
        };
        Ok(Signals {
            terminate: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
            hangup: install(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> SignalRequest {
        tokio::select! {
            _ = self.terminate.recv() => SignalRequest::Shutdown("SIGTERM"),
            _ = self.interrupt.recv() => SignalRequest::Shutdown("SIGINT"),
            _ = self.hangup.recv() => SignalRequest::Reload,
        }
    }
}

/// What the control thread answers shard requests with.
struct Services {
    dns: Dns,
    verifier: Verifier,
    reloadable: Arc<Reloadable>,
}

async fn run(
    link: ControlLink,
    mut signals: Signals,
    services: Services,
    shutdown_timeout: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut shutdown_requested = false;
    loop {
        tokio::select! {
            request = link.requests.recv_async() => match request {
                Ok(request) => answer(&services, request),
                Err(_) => break,
            },
            request = signals.next() => {
                let name = match request {
                    SignalRequest::Reload => {
                        info!(signal = "SIGHUP", "reloading");
                        services.reloadable.reload("SIGHUP");
                        continue;
                    }
                    SignalRequest::Shutdown(name) => name,
                };
                let deadline = if shutdown_requested {
                    info!(signal = name, "second signal: sessions are closed now");
                    Instant::now()
                } else {
                    info!(
                        signal = name,
                        grace = ?shutdown_timeout,
                        "shutting down: no new connections; sessions may finish within the grace"
                    );
                    Instant::now() + shutdown_timeout
                };
                shutdown_requested = true;
                broadcast(&link, &ShardCommand::Shutdown { deadline });
            }
            _ = &mut stop => break,
        }
    }
}

/// Answers at once what needs no waiting, and hands the rest to tasks of their own.
fn answer(services: &Services, request: ControlRequest) {
    let dns = &services.dns;
    match request {
        ControlRequest::Ping { shard, reply } => {
            tracing::trace!(shard, "ping from shard");
            let _ = reply.send(ControlReply::Pong);
        }
        ControlRequest::ResolveMx {
            domain,
            deadline,
            reply,
        } => dns.spawn_resolve_mx(domain, deadline, reply),
        ControlRequest::ResolveHost {
            name,
            deadline,
            reply,
        } => dns.spawn_resolve_host(name, deadline, reply),
        ControlRequest::ConnectFrom {
            source,
            address,
            deadline,
            reply,
        } => connect::spawn_connect_from(source, address, deadline, reply),
        ControlRequest::VerifySpf {
            identities,
            deadline,
            reply,
        } => services.verifier.spawn_spf(identities, deadline, reply),
        ControlRequest::VerifyMessage {
            identities,
            message,
            spf,
            deadline,
            reply,
        } => services
            .verifier
            .spawn_message(identities, message, spf, deadline, reply),
    }
}

fn broadcast(link: &ControlLink, command: &ShardCommand) {
    for (shard, sender) in link.shards.iter().enumerate() {
        // A shard that already exited has dropped its receiver; nothing is left to tell it.
        if sender.try_send(command.clone()).is_err() {
            tracing::debug!(
                shard,
                "shard did not take the command (already stopped or busy)"
            );
        }
    }
}
