//! `postern serve`: from a validated configuration to running shards, and back to exit.
//!
//! Start-up does everything that can fail before the first connection is accepted: it resolves
//! the shard count, checks the memlock limit, loads the AUTH users file, the TLS certificates and
//! the CAs of delivery, creates, locks and probes the spool, binds every listener, and starts
//! the control thread and the shards. Each failure stops the process with the exit code and fix
//! named in `fatal`. Once running, the process ends when the control thread, on a signal, has
//! told every shard to drain.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use nix::sys::resource::{getrlimit, Resource};
use tracing::info;

use crate::config::{AuthMode, Config};
use crate::control::credentials::Authenticator;
use crate::control::reload::Reloadable;
use crate::control::Control;
use crate::dkim::SigningKeys;
use crate::fatal::{ExitReason, Fatal};
use crate::listener;
use crate::shard::{self, link, ShardSpec, Shards};
use crate::spool_lock::SpoolLock;
use crate::tls::client::OutboundTlsConfigs;
use crate::tls::InboundTls;

/// Runs the relay until it is told to stop. `signing_keys` are the `[[dkim]]` keys, already
/// loaded and checked (`SigningKeys::load`).
pub fn serve(mut config: Config, signing_keys: Arc<SigningKeys>) -> Result<(), Fatal> {
    abort_on_panic();
    info!(version = env!("CARGO_PKG_VERSION"), source = %config.source, "postern starting");
    info!("effective configuration: {}", config.describe());

    let cpus = shard::online_cpus()?;
    let shard_count = match config.server.shards {
        0 => cpus.len(),
        configured => configured,
    };
    if shard_count > cpus.len() {
        tracing::warn!(
            shards = shard_count,
            cores = cpus.len(),
            "more shards than cores: shards will share cores, which costs latency"
        );
    }
    let shard_cpus: Vec<usize> = (0..shard_count).map(|i| cpus[i % cpus.len()]).collect();

    check_memlock(shard_count)?;
    let authenticator = load_users(&config)?;
    // The root first, so that the spool is locked before anything inside it is touched. From
    // here on the spool is an absolute path: the io_uring file calls do not resolve relative
    // paths against the working directory, and logs should name the real place.
    fs::create_dir_all(&config.server.spool)
        .map_err(|error| spool_unwritable(&config.server.spool, &error))?;
    config.server.spool = fs::canonicalize(&config.server.spool)
        .map_err(|error| spool_unwritable(&config.server.spool, &error))?;
    // Held until this function returns: the shards recover and write the spool only under it.
    let _spool_lock = SpoolLock::acquire(&config.server.spool)?;
    prepare_spool(&config.server.spool, shard_count)?;
    let config = Arc::new(config);

    let tls = match &config.tls {
        None => None,
        Some(tls) => Some(Arc::new(
            InboundTls::load(tls, &config.source).map_err(|errors| Fatal::config(&errors))?,
        )),
    };

    let outbound_tls =
        Arc::new(OutboundTlsConfigs::load(&config).map_err(|errors| Fatal::config(&errors))?);

    let mut bound = listener::bind_all(&config.listeners, &shard_cpus)?;

    let (control_link, shard_links) = link::links(shard_count);
    let admin_address = config.admin.as_ref().map(|admin| admin.address);
    let control = Control::start(
        control_link,
        config.server.shutdown_timeout,
        &config.dns,
        &config.verification,
        &config.server.hostname,
        admin_address,
        Reloadable {
            tls: tls.clone(),
            users: authenticator,
        },
    )?;

    let specs = shard_links
        .into_iter()
        .zip(&shard_cpus)
        .map(|(link, &cpu)| ShardSpec {
            index: link.shard,
            cpu,
            listeners: bound
                .iter_mut()
                .map(|listener| listener.per_shard.remove(0))
                .collect(),
            link,
            tls: tls.clone(),
            outbound_tls: Arc::clone(&outbound_tls),
            signing_keys: Arc::clone(&signing_keys),
        })
        .collect();
    let shards = match Shards::start(Arc::clone(&config), specs) {
        Ok(shards) => shards,
        Err(fatal) => {
            control.stop();
            return Err(fatal);
        }
    };

    for listener in &bound {
        info!(address = %listener.address, "listening");
    }
    info!(shards = shard_count, cpus = ?shard_cpus, "postern ready");

    shards.join();
    control.stop();
    info!("postern stopped");
    Ok(())
}

/// Makes a panic in any thread stop the whole process. Left alone, a panicking shard thread would
/// end by itself: its listening socket stays open and queues connections that nobody accepts,
/// the admin API waits for its answer, and a stop signal can never finish the drain, so the
/// service manager would not restart the relay. Aborting is safe because every acknowledged
/// message is already in the spool, and recovery at the next start takes it up again.
fn abort_on_panic() {
    let print_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        print_panic(panic);
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %panic,
            "postern hit a bug and aborts; restart it (systemd does, with Restart=on-failure): \
             every accepted message is in the spool. Please report the line above"
        );
        std::process::abort();
    }));
}

/// The AUTH users file, loaded when some listener offers AUTH, so that a missing file or a bad
/// line stops start-up rather than the first client. The configuration check guarantees the
/// file is named whenever a listener needs it.
fn load_users(config: &Config) -> Result<Option<Authenticator>, Fatal> {
    let offered = config
        .listeners
        .iter()
        .any(|listener| listener.auth != AuthMode::None);
    match (&config.auth.users_file, offered) {
        (Some(users_file), true) => Authenticator::load(&config.auth, users_file).map(Some),
        _ => Ok(None),
    }
}

/// io_uring registers each shard's I/O memory as locked memory. Root normally holds
/// CAP_IPC_LOCK and is exempt; for others a too-small limit fails obscurely inside the kernel,
/// so it is checked here with a clear fix.
fn check_memlock(shards: usize) -> Result<(), Fatal> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let needed = (shards * shard::IO_MEMORY_BYTES) as u64;
    let Ok((soft, _hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) else {
        return Ok(());
    };
    if soft < needed {
        return Err(Fatal::new(
            ExitReason::MemlockTooLow,
            format!("the memlock limit is {soft} bytes; {shards} shards need {needed}"),
            "raise it (`ulimit -l`, or LimitMEMLOCK= in the systemd unit), or lower server.shards",
        ));
    }
    Ok(())
}

/// Creates each shard's spool directory and proves it takes a synced write.
fn prepare_spool(spool: &Path, shards: usize) -> Result<(), Fatal> {
    for index in 0..shards {
        let directory = shard::shard_directory(spool, index);
        probe_directory(&directory).map_err(|error| spool_unwritable(&directory, &error))?;
    }
    Ok(())
}

fn spool_unwritable(directory: &Path, error: &std::io::Error) -> Fatal {
    Fatal::new(
        ExitReason::SpoolNotWritable,
        format!(
            "the spool directory {} is not writable: {error}",
            directory.display()
        ),
        "create it, give this user write permission, or point `server.spool` elsewhere",
    )
}

fn probe_directory(directory: &Path) -> std::io::Result<()> {
    fs::create_dir_all(directory)?;
    let probe = directory.join(".write-probe");
    let mut file = fs::File::create(&probe)?;
    file.write_all(b"postern")?;
    file.sync_all()?;
    fs::remove_file(&probe)
}
