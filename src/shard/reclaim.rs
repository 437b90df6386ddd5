//! Spool space on the shard: the once-a-second pass that deletes segment files no queued
//! message needs, and the storage check that makes sessions answer `452 4.3.1` while the spool
//! is over `server.spool_size_max` or its file system under `server.spool_free_min` (made at
//! that pass and whenever a new segment file has been created).
//!
//! Only a prefix of the log is ever deleted (see `QueueIndex::live_segments` for why), never the
//! segment being written and never past a quarantined one. It runs in the shard's background
//! task queue and never blocks the shard: deletions are io_uring operations, and statvfs reads
//! the file system's counters from memory.

use std::rc::Rc;

use tracing::{debug, info, warn};

use super::queue::{Queue, RECLAIM_INTERVAL};

impl Queue {
    /// Whether new mail must be refused for lack of space (see `check_storage`). A new segment
    /// file reserves its whole size at once, so the limits are checked again as soon as one is
    /// created, not only at the once-a-second pass: a burst then overshoots them by about one
    /// segment rather than by a second's worth of mail. Otherwise this only reads a flag.
    pub fn storage_full(&self) -> bool {
        if self.note_created_segments() {
            self.check_storage();
        }
        self.storage.full.get()
    }

    /// Decides whether the spool may take new mail: the segments this shard holds, and its
    /// spare, reserve whole segment files, which must stay within its share of
    /// `spool_size_max`, and the file system must keep `spool_free_min` free. Logs each change
    /// of state once.
    fn check_storage(&self) {
        let files = self.segment_count() as u64 + self.spool.spare_segments();
        let reserved = files * self.spool.segment_bytes();
        let over_size = self
            .storage
            .size_max_bytes
            .is_some_and(|max| reserved >= max);
        let free = free_bytes(&self.spool.shard_directory());
        let low_space = free.is_some_and(|free| free < self.storage.free_min_bytes);

        let full = over_size || low_space;
        if full == self.storage.full.replace(full) {
            return;
        }
        if full {
            warn!(
                reserved_bytes = reserved,
                limit_bytes = self.storage.size_max_bytes,
                free_bytes = free,
                free_min_bytes = self.storage.free_min_bytes,
                "spool full: new mail is refused with 452 4.3.1 until space is reclaimed; \
                 raise server.spool_size_max or free disk space"
            );
        } else {
            info!(
                reserved_bytes = reserved,
                free_bytes = free,
                "spool has room again: accepting mail"
            );
        }
    }

    /// Deletes segment files before the oldest one a live message still needs. Only a prefix of
    /// the log is ever deleted (see `QueueIndex::live_segments` for why), and never the segment
    /// being written.
    pub(super) async fn reclaim_loop(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(RECLAIM_INTERVAL).await;
            let reclaimable = self.reclaimable_segments();
            self.check_storage();
            self.compact().await;
            for (generation, segment) in reclaimable {
                match self.spool.remove_segment(generation, segment).await {
                    Ok(()) => {
                        self.forget_segment(generation, segment);
                        debug!(generation, segment, "spool segment reclaimed");
                    }
                    Err(error) => {
                        warn!(
                            generation,
                            segment,
                            %error,
                            "cannot delete a reclaimable spool segment; will retry"
                        );
                        break;
                    }
                }
            }
        }
    }
}

/// Bytes available to unprivileged users on the file system holding `path`. statvfs reads
/// the file system's in-memory counters; it does not wait for the disk.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let stats = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stats.blocks_available() as u64 * stats.fragment_size() as u64)
}
