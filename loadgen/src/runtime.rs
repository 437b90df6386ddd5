//! Threads, cores and sockets: the only file of loadgen that knows glommio's executor and
//! listener types. `send` and `sink` each run one glommio `LocalExecutor` per thread, shared
//! nothing, like the relay's shards. A thread is pinned to a core when the user asked for a set
//! of cores, or when there is one thread per online core (thread-per-core); otherwise the kernel
//! places it, so that a sender and a sink on one small box do not fight over one pinned core.
//! Listening sockets are made here with the relay's `listener::bind_reuseport` (SO_REUSEPORT,
//! one per thread) before any executor starts, so a taken port fails at start-up.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// Memory each executor registers with io_uring. It is locked memory (RLIMIT_MEMLOCK, 8 MiB on
/// many hosts) and loadgen does no file I/O through io_uring, so it stays small.
const IO_MEMORY_BYTES: usize = 512 * 1024;

/// Backlog of each listening socket: enough for a burst of new connections from many sessions.
const LISTEN_BACKLOG: u32 = 4096;

/// How the threads are placed on cores.
#[derive(Clone, Debug)]
pub struct ThreadPlan {
    /// `Some(cpu)` pins thread `i` to that core.
    pub cpus: Vec<Option<usize>>,
}

impl ThreadPlan {
    /// `threads` 0 means one per online core. `cpu_list` pins the threads to those cores in turn.
    pub fn new(threads: usize, cpu_list: Option<&[usize]>) -> anyhow::Result<ThreadPlan> {
        let online = online_cpus()?;
        let threads = if threads == 0 { online.len() } else { threads };
        let cpus = match cpu_list {
            Some([]) => anyhow::bail!("--cpus needs at least one core number"),
            Some(list) => (0..threads).map(|i| Some(list[i % list.len()])).collect(),
            None if threads == online.len() => online.iter().map(|&cpu| Some(cpu)).collect(),
            None => vec![None; threads],
        };
        Ok(ThreadPlan { cpus })
    }

    pub fn threads(&self) -> usize {
        self.cpus.len()
    }
}

fn online_cpus() -> anyhow::Result<Vec<usize>> {
    let cpus = glommio::CpuSet::online()
        .map_err(|error| anyhow::anyhow!("cannot read the CPU topology: {error}"))?;
    let mut cpus: Vec<usize> = cpus.iter().map(|location| location.cpu).collect();
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Starts one executor thread running `work()`; the handle yields its result.
pub fn spawn_executor<G, F, T>(
    name: String,
    cpu: Option<usize>,
    work: G,
) -> anyhow::Result<glommio::ExecutorJoinHandle<T>>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let placement = match cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    LocalExecutorBuilder::new(placement)
        .name(&name)
        .io_memory(IO_MEMORY_BYTES)
        .spawn(work)
        .map_err(|error| executor_failure(io::Error::from(error)))
}

/// Names the fix for an executor that could not be built.
fn executor_failure(error: io::Error) -> anyhow::Error {
    match error.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EPERM) => anyhow::anyhow!(
            "the kernel refused io_uring ({error}); use Linux 5.8 or newer with io_uring enabled \
             (sysctl kernel.io_uring_disabled=0)"
        ),
        Some(libc::ENOMEM) => anyhow::anyhow!(
            "io_uring could not lock its memory ({error}); raise the memlock limit (`ulimit -l`) \
             or use fewer --threads"
        ),
        _ => anyhow::anyhow!("cannot start an executor thread: {error}"),
    }
}

/// Binds `threads` listening sockets to `address` with SO_REUSEPORT. With port 0 the first
/// bind picks the port and the rest share it. Returns the bound address and the sockets.
pub fn bind_listeners(
    address: SocketAddr,
    threads: usize,
) -> anyhow::Result<(SocketAddr, Vec<OwnedFd>)> {
    let mut address = address;
    let mut sockets = Vec::with_capacity(threads);
    for _ in 0..threads {
        let socket =
            postern::listener::bind_reuseport(address, LISTEN_BACKLOG, None).map_err(|error| {
                anyhow::anyhow!(
                    "cannot listen on {address}: {error}; stop whatever holds the port \
                 (`ss -ltnp`) or pick another --listen address"
                )
            })?;
        if address.port() == 0 {
            address = socket.local_addr()?.as_socket().ok_or_else(|| {
                anyhow::anyhow!("cannot read back the address bound for {address}")
            })?;
        }
        sockets.push(OwnedFd::from(socket));
    }
    Ok((address, sockets))
}

/// Wraps a socket from `bind_listeners` for the calling executor.
pub fn into_listener(fd: OwnedFd) -> glommio::net::TcpListener {
    // SAFETY: `fd` is a listening TCP socket made by `bind_listeners`, owned by the caller and
    // given up here by `into_raw_fd`, so the TcpListener becomes its only owner and closes it
    // exactly once.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) }
}

/// SIGINT and SIGTERM, blocked in every thread and taken synchronously by the main thread, so
/// an interrupted run still writes its report and id logs.
pub struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Blocks the signals in the calling thread; threads spawned afterwards inherit the mask.
    /// Call before starting any executor.
    pub fn block() -> anyhow::Result<StopSignals> {
        // SAFETY: `set` is a plain C struct initialised by sigemptyset before any other use, and
        // pthread_sigmask only reads it. Blocking signals changes no memory Rust owns.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let result = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if result != 0 {
                anyhow::bail!(
                    "cannot block SIGINT/SIGTERM: {}",
                    io::Error::from_raw_os_error(result)
                );
            }
            Ok(StopSignals { set })
        }
    }

    /// Waits up to `timeout` for SIGINT or SIGTERM; true if one arrived.
    pub fn wait(&self, timeout: Duration) -> bool {
        let timeout = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `self.set` was initialised in `block`; `timeout` lives across the call; a null
        // siginfo pointer is allowed. The call only reads its arguments.
        let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &timeout) };
        signal > 0
    }
}
