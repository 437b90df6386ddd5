//! Spare segments: the next segment file of a shard, written full of zeros and synced ahead of
//! need, so that group commits overwrite blocks the file system has already allocated.
//!
//! Why: a direct write into preallocated but never-written space (what `fallocate` gives) makes
//! ext4 and XFS convert the extent to "written" when the write completes, and the sync that
//! makes the write durable must then commit the journal. Measured on the benchmark box, a 4 KiB
//! batch write with its sync took 0.19 ms at the median that way and 0.12 ms over written
//! zeros, and under load the direct write itself often waited a millisecond or more for the
//! conversion; see docs/spool.md. Overwriting written blocks changes no metadata, so the sync
//! is a device cache flush and nothing more, and io_uring can issue the write without handing
//! it to a worker thread.
//!
//! A shard keeps one spare, named `SPARE_FILE_NAME` in its generation directory. The committer
//! takes it when it opens a segment, renames it to the segment's name and syncs the directory,
//! exactly as for a segment created on the spot; then the refill task writes the next spare in
//! a task queue of its own with few CPU shares, in chunks of `ZERO_CHUNK_BYTES` so a commit
//! queued behind one waits briefly. When no spare is ready (a burst that fills segments faster
//! than one can be written, or a full disk), the committer creates the segment the old way, with
//! reserved but unwritten blocks: slower batches, never a lost or delayed-forever commit. A spare
//! holds no records: recovery does not read it, and the relay deletes old ones when it starts.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::io::{DmaFile, OpenOptions};
use glommio::{Latency, Shares};
use tracing::{debug, warn};

use crate::spool::BLOCK_BYTES;

/// The name of the spare in a generation directory; recovery only reads `seg-*.log` files.
pub const SPARE_FILE_NAME: &str = "spare.zero";

/// Bytes of zeros per write while a spare is prepared: large enough to stream, small enough
/// that a group commit queued behind one write on the device waits a fraction of a millisecond.
const ZERO_CHUNK_BYTES: usize = 256 * 1024;

/// CPU shares of the refill task queue (sessions and the committer have glommio's default of
/// 1,000): writing zeros takes little CPU, but it must never be what a session waits for.
const REFILL_SHARES: usize = 100;

enum Spare {
    /// None on disk: taken, or the last attempt failed (retried at the next segment).
    Absent,
    /// Being written by the refill task.
    Preparing,
    Ready(DmaFile),
}

/// One shard's spare segment and the task that refills it.
pub struct SpareSegments {
    spare: Rc<RefCell<Spare>>,
    refill: LocalSender<()>,
}

impl SpareSegments {
    /// Prepares the first spare before returning (so the first segment of a generation is a
    /// prepared one too) and starts the refill task. A failure to prepare it is logged, not
    /// fatal: segments are then created the old way until a spare can be written.
    pub async fn start(directory: PathBuf, segment_bytes: u64) -> SpareSegments {
        let spare = Rc::new(RefCell::new(Spare::Absent));
        let (refill, refills) = local_channel::new_bounded(1);
        let spares = SpareSegments {
            spare: Rc::clone(&spare),
            refill,
        };
        refill_once(&directory, segment_bytes, &spare).await;

        let task = refill_loop(directory, segment_bytes, spare, refills);
        let queue = glommio::executor().create_task_queue(
            Shares::Static(REFILL_SHARES),
            Latency::NotImportant,
            "spool-spare",
        );
        match glommio::spawn_local_into(task, queue) {
            Ok(task) => {
                task.detach();
            }
            Err(error) => warn!(
                %error,
                "cannot start the spare-segment task; segments are created when needed"
            ),
        }
        spares
    }

    /// The ready spare, if any, to become the next segment. The caller renames it and then
    /// calls `replenish`: a refill started before the rename would create a new file under the
    /// spare's name, which the rename (by path) would then move in its place.
    pub fn take(&self) -> Option<DmaFile> {
        let mut spare = self.spare.borrow_mut();
        match std::mem::replace(&mut *spare, Spare::Absent) {
            Spare::Ready(file) => Some(file),
            not_ready => {
                *spare = not_ready;
                None
            }
        }
    }

    /// Starts writing the next spare, unless one is on disk already (ready or being written).
    pub fn replenish(&self) {
        if matches!(*self.spare.borrow(), Spare::Absent) {
            let _ = self.refill.try_send(());
        }
    }

    /// Spare files on disk (0 or 1): they reserve a segment's worth of space.
    pub fn on_disk(&self) -> u64 {
        u64::from(!matches!(*self.spare.borrow(), Spare::Absent))
    }
}

/// Deletes the spares that earlier runs left in the generation directories of
/// `shard_directory` (a stop or a crash leaves one); they hold no records. Only the relay itself
/// calls this, at start-up: offline readers of the spool (recovery, `postern spool export`)
/// never write, and may run beside a relay whose spare is about to become a segment.
pub fn discard_leftovers(shard_directory: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(shard_directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            discard_leftover(&path)?;
        }
    }
    Ok(())
}

/// Deletes the spare in one generation directory, if there is one.
fn discard_leftover(generation_directory: &Path) -> io::Result<()> {
    match std::fs::remove_file(generation_directory.join(SPARE_FILE_NAME)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

async fn refill_loop(
    directory: PathBuf,
    segment_bytes: u64,
    spare: Rc<RefCell<Spare>>,
    refills: LocalReceiver<()>,
) {
    while refills.recv().await.is_some() {
        refill_once(&directory, segment_bytes, &spare).await;
    }
}

async fn refill_once(directory: &Path, segment_bytes: u64, spare: &RefCell<Spare>) {
    *spare.borrow_mut() = Spare::Preparing;
    match prepare(directory, segment_bytes).await {
        Ok(file) => {
            debug!(directory = %directory.display(), "spare spool segment ready");
            *spare.borrow_mut() = Spare::Ready(file);
        }
        Err(error) => {
            let _ = discard_leftover(directory);
            *spare.borrow_mut() = Spare::Absent;
            warn!(
                directory = %directory.display(),
                %error,
                "cannot prepare a spare spool segment; the next segment is created when needed, \
                 with slower commits (check free space on the spool's file system)"
            );
        }
    }
}

/// Writes `SPARE_FILE_NAME` full of zeros up to the segment size (rounded up to a block) and
/// syncs it, so that every block of it is allocated and written.
async fn prepare(directory: &Path, segment_bytes: u64) -> io::Result<DmaFile> {
    let path = directory.join(SPARE_FILE_NAME);
    discard_leftover(directory)?;
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .dma_open(&path)
        .await
        .map_err(io::Error::from)?;

    let size = segment_bytes.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64;
    let zeros = Rc::new(zeroed(&file, ZERO_CHUNK_BYTES));
    let mut offset = 0;
    while offset < size {
        let length = (size - offset).min(ZERO_CHUNK_BYTES as u64) as usize;
        let chunk = if length == ZERO_CHUNK_BYTES {
            Rc::clone(&zeros)
        } else {
            Rc::new(zeroed(&file, length))
        };
        let written = file
            .write_rc_at(chunk, offset)
            .await
            .map_err(io::Error::from)?;
        if written != length {
            return Err(io::Error::other(format!(
                "short write of zeros: {written} of {length} bytes"
            )));
        }
        offset += length as u64;
    }
    file.fdatasync().await.map_err(io::Error::from)?;
    Ok(file)
}

fn zeroed(file: &DmaFile, length: usize) -> glommio::io::DmaBuffer {
    let mut buffer = file.alloc_dma_buffer(length);
    buffer.as_bytes_mut().fill(0);
    buffer
}
