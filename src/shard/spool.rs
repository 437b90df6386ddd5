//! The shard's spool I/O: segment files, group commit, and reading bodies back; recovery at
//! start-up lives in `recovery`.
//!
//! The record format, the scanner and the queue index are pure code in `crate::spool`; this file
//! puts records on disk with glommio's DMA files. Guarantees:
//!
//! - At most one durable write is in flight per shard. Records appended while it runs form the
//!   next batch, so under load one sync covers many messages (group commit). Segment files are
//!   written through `O_DSYNC` handles: each write returns only once its data is on stable
//!   storage (the kernel adds the cache flush, or a FUA write where the device has it), which
//!   is the write and fdatasync of a batch in one request (see `open_for_commits`).
//! - `commit` resolves only after the durable write holding the COMMIT record completed; the
//!   session says `250` only then.
//! - Every batch starts on a fresh block and is zero-padded to the block end, so no write ever
//!   touches a block that holds acknowledged data.
//! - A new segment file is made durable (file and directory synced) before any record in it can
//!   be acknowledged. It is normally the shard's spare, written full of zeros ahead of need so
//!   that batches overwrite allocated blocks (see `spare`); otherwise it is created with its
//!   blocks reserved.
//! - With a spool key active, every segment of the generation starts with a SEGMENT_KEY record
//!   naming the key, and every later record in it is sealed (`crate::spool::SegmentCipher`),
//!   in place in the batch buffer; the key record is part of the segment's first batch, so it
//!   is durable before anything in the segment is acknowledged. Readers (recovery, body reads)
//!   open each payload with the key its own segment names.
//! - A failed durable write fails every commit in that batch and in the one filling behind it
//!   (the clients hear `451`/`452` and retry) and moves on to a fresh segment: the failed batch
//!   may have left a hole, where recovery would stop reading, and after a failed durable write
//!   the state of the old segment's blocks cannot be trusted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::io::{Directory, DmaFile, OpenOptions};
use tracing::{debug, error};

use crate::histogram::DurationHistogram;
use crate::spool::{
    decode_record, encode_record, open_payload, BodyRecord, CommitRecord, Extent, KeyRing,
    RecordLocation, RecordType, SegmentCipher, SegmentKeyRecord, SpoolKey, BLOCK_BYTES,
    PLAIN_PAYLOAD_MAX_BYTES, RECORD_HEADER_BYTES, SALT_BYTES, SEAL_TAG_BYTES,
};

mod recovery;
mod spare;

pub use recovery::{recover, MissingSpoolKey, Recovered};
use spare::SpareSegments;

/// Longest time a record nobody waits for (a BODY, an outcome) stays in memory before it is
/// written, when no COMMIT comes along to carry it. It never delays a `250`; it bounds how
/// much delivery history a crash can cost (those recipients are simply tried again).
pub const LAZY_FLUSH: std::time::Duration = std::time::Duration::from_millis(50);

/// Sizes that shape the spool's I/O, and its keys.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    /// Size of each segment file; records never span segments.
    pub segment_bytes: u64,
    /// Appended records may wait for the committer up to this many bytes; beyond it, sessions
    /// streaming bodies wait, so memory stays bounded when the disk is the bottleneck.
    pub pending_max_bytes: usize,
    /// Keys for encryption at rest: the active one seals new segments, all of them open old
    /// ones. Empty: new segments are plaintext and only plaintext segments can be read.
    pub keys: Arc<KeyRing>,
}

impl Default for SpoolSettings {
    fn default() -> SpoolSettings {
        SpoolSettings {
            segment_bytes: 64 << 20,
            pending_max_bytes: 32 << 20,
            keys: Arc::new(KeyRing::default()),
        }
    }
}

/// Why a commit did not become durable. The session maps it to `451` or `452`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SpoolFailure {
    pub no_space: bool,
    pub message: String,
}

impl SpoolFailure {
    fn from_io(context: &str, error: &io::Error) -> SpoolFailure {
        let no_space = matches!(
            error.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        );
        SpoolFailure {
            no_space,
            message: format!("{context}: {error}"),
        }
    }
}

/// How this generation seals its segments.
struct Sealing {
    key: SpoolKey,
    /// Drawn once per generation; with the generation and segment numbers in the derivation,
    /// every segment gets its own key (see `crate::spool::SegmentCipher`).
    salt: [u8; SALT_BYTES],
    /// The SEGMENT_KEY payload every segment of this generation starts with.
    key_record: Vec<u8>,
}

/// Records waiting for the committer, for one segment, starting at a block boundary.
struct Piece {
    segment: u64,
    base_offset: u64,
    bytes: Vec<u8>,
}

type Waiter = LocalSender<Result<(), SpoolFailure>>;

struct State {
    generation: u64,
    directory: PathBuf,
    settings: SpoolSettings,
    pieces: Vec<Piece>,
    pending_bytes: usize,
    waiters: Vec<Waiter>,
    /// Sequence number of the next record (per generation, starting at 1).
    sequence: u64,
    /// The segment new records go to, and where its next piece starts (block aligned).
    segment: u64,
    next_offset: u64,
    /// How long each durable batch took, from its first write to the committer noticing that
    /// it completed (late notice included: it delays the `250` as much as the disk does). Its
    /// count is the number of batches written.
    batch_write: DurationHistogram,
    /// How long each message's COMMIT waited, from reaching the spool until its session
    /// resumed knowing it durable: the spool's whole share of the wait for `250`.
    commit_wait: DurationHistogram,
    /// Batches whose durable write failed: a record placed before a failure may be lost, so
    /// whoever spreads one message over several records compares this before and after.
    write_failures: u64,
    /// Segment numbers created since the reclaimer last asked.
    created_segments: Vec<u64>,
    /// The committer sleeps until kicked: a lazy record must wake it.
    committer_idle: bool,
    /// Set when a spool key is active: this generation's segments are sealed.
    sealing: Option<Sealing>,
    /// The key of the segment new records go to, with its number.
    current_cipher: Option<(u64, Rc<SegmentCipher>)>,
    /// The key of every sealed segment a body may be read from: recovered ones and this
    /// generation's, by `(generation, segment)`.
    ciphers: HashMap<(u64, u64), Rc<SegmentCipher>>,
}

impl State {
    /// A generation with nothing written yet: records start at segment 1, sequence 1.
    fn new(
        generation: u64,
        directory: PathBuf,
        settings: SpoolSettings,
        sealing: Option<Sealing>,
        ciphers: HashMap<(u64, u64), Rc<SegmentCipher>>,
    ) -> State {
        State {
            generation,
            directory,
            settings,
            pieces: Vec::new(),
            pending_bytes: 0,
            waiters: Vec::new(),
            sequence: 1,
            segment: 1,
            next_offset: 0,
            batch_write: DurationHistogram::default(),
            commit_wait: DurationHistogram::default(),
            write_failures: 0,
            created_segments: Vec::new(),
            committer_idle: true,
            sealing,
            current_cipher: None,
            ciphers,
        }
    }

    /// Appends one record to the filling batch and returns where it will live on disk.
    fn append(&mut self, record_type: RecordType, payload: &[u8]) -> RecordLocation {
        // With sealing, room for the tag and for the SEGMENT_KEY record a fresh segment starts
        // with (counted for every record: a few dozen bytes of slack at a segment's end).
        let sealing_bytes = self.sealing.as_ref().map_or(0, |sealing| {
            SEAL_TAG_BYTES + RECORD_HEADER_BYTES + sealing.key_record.len()
        });
        let record_bytes = (RECORD_HEADER_BYTES + payload.len() + sealing_bytes) as u64;
        debug_assert!(record_bytes + BLOCK_BYTES as u64 <= self.settings.segment_bytes);

        let fits = |piece: &Piece, segment_bytes: u64| {
            let end = piece.base_offset + piece.bytes.len() as u64 + record_bytes;
            end.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64 <= segment_bytes
        };
        let in_current = self
            .pieces
            .last()
            .filter(|piece| piece.segment == self.segment);
        let last_has_room =
            in_current.is_some_and(|piece| fits(piece, self.settings.segment_bytes));
        if !last_has_room {
            let fresh = Piece {
                segment: self.segment,
                base_offset: self.next_offset,
                bytes: Vec::new(),
            };
            if in_current.is_some() || !fits(&fresh, self.settings.segment_bytes) {
                // The current segment is full: records continue at the start of the next one.
                self.segment += 1;
                self.next_offset = 0;
            }
            self.pieces.push(Piece {
                segment: self.segment,
                base_offset: self.next_offset,
                bytes: Vec::with_capacity(64 * 1024),
            });
        }

        let Some(piece) = self.pieces.last_mut() else {
            unreachable!("a piece was pushed above when none fitted");
        };
        let before = piece.bytes.len();
        if piece.base_offset == 0 && piece.bytes.is_empty() {
            if let Some(sealing) = &self.sealing {
                // A fresh segment: it names its key first, in clear.
                encode_record(
                    &mut piece.bytes,
                    RecordType::SegmentKey,
                    self.sequence,
                    &sealing.key_record,
                );
                self.sequence += 1;
                let cipher = Rc::new(SegmentCipher::derive(
                    &sealing.key,
                    &sealing.salt,
                    self.generation,
                    piece.segment,
                ));
                self.ciphers
                    .insert((self.generation, piece.segment), Rc::clone(&cipher));
                self.current_cipher = Some((piece.segment, cipher));
            }
        }
        let offset = piece.base_offset + piece.bytes.len() as u64;
        match &self.current_cipher {
            Some((segment, cipher)) if *segment == piece.segment => cipher.encode_record(
                &mut piece.bytes,
                record_type,
                self.sequence,
                offset,
                payload,
            ),
            _ => {
                debug_assert!(self.sealing.is_none(), "a sealed generation wrote in clear");
                encode_record(&mut piece.bytes, record_type, self.sequence, payload);
            }
        }
        self.sequence += 1;
        self.pending_bytes += piece.bytes.len() - before;
        RecordLocation {
            generation: self.generation,
            segment: piece.segment,
            offset,
        }
    }

    /// Takes the filling batch for the committer; later appends start the next batch.
    fn take_batch(&mut self) -> (Vec<Piece>, Vec<Waiter>) {
        let pieces = std::mem::take(&mut self.pieces);
        if let Some(last) = pieces.last() {
            // A batch left behind in an abandoned segment does not move the log back to it.
            if last.segment == self.segment {
                let end = last.base_offset + last.bytes.len() as u64;
                self.next_offset = end.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64;
            }
        }
        self.pending_bytes = 0;
        (pieces, std::mem::take(&mut self.waiters))
    }

    /// After a failed durable write: later records go to a fresh segment. The failed batch
    /// may have left never-written blocks, and recovery reads a segment only up to its first
    /// zero block, so a record acknowledged after that hole would be lost in a crash. Records
    /// already placed in the abandoned segment stay there (a BODY is read back by its offset,
    /// which holds); the waiters for them are returned to be failed, because their COMMIT or
    /// admin record lies behind the hole.
    fn abandon_segment(&mut self) -> Vec<Waiter> {
        self.write_failures += 1;
        let newest_placed = self.pieces.iter().map(|piece| piece.segment).max();
        self.segment = newest_placed.unwrap_or(0).max(self.segment) + 1;
        self.next_offset = 0;
        std::mem::take(&mut self.waiters)
    }
}

/// One shard's spool writer. Cheap to clone (an `Rc`); lives on one shard thread.
#[derive(Clone)]
pub struct ShardSpool {
    state: Rc<RefCell<State>>,
    kick: Rc<LocalSender<()>>,
    /// Segment files recently opened for reading message bodies back, most recent last; kept
    /// open because deliveries read the same few segments over and over.
    readers: Rc<RefCell<SegmentReaders>>,
    spares: Rc<SpareSegments>,
}

/// Open read handles by `(generation, segment)`, least recently used first.
type SegmentReaders = Vec<((u64, u64), Rc<DmaFile>)>;

/// Segment files a shard keeps open for reading bodies back.
const READERS_KEPT: usize = 4;

impl ShardSpool {
    /// Starts a new generation directory under `shard_directory` and its committer task.
    /// `ciphers` are the keys of the sealed segments recovery found, for reading bodies back.
    pub async fn start(
        shard_directory: &Path,
        generation: u64,
        settings: SpoolSettings,
        ciphers: Vec<((u64, u64), SegmentCipher)>,
    ) -> io::Result<ShardSpool> {
        let sealing = match settings.keys.active() {
            Some(key) => Some(sealing_for(key)?),
            None => None,
        };
        let directory = shard_directory.join(generation_directory_name(generation));
        std::fs::create_dir_all(&directory)?;
        sync_directory(shard_directory).await?;
        settle_polled_io_probe(shard_directory).await?;
        spare::discard_leftovers(shard_directory)?;
        let spares = Rc::new(SpareSegments::start(directory.clone(), settings.segment_bytes).await);

        let ciphers = ciphers
            .into_iter()
            .map(|(key, cipher)| (key, Rc::new(cipher)))
            .collect();
        let state = Rc::new(RefCell::new(State::new(
            generation, directory, settings, sealing, ciphers,
        )));
        let (kick, kicked) = local_channel::new_bounded(1);
        let committer = Committer {
            state: Rc::clone(&state),
            segments: Vec::new(),
            spares: Rc::clone(&spares),
        };
        glommio::spawn_local(committer.run(kicked)).detach();
        Ok(ShardSpool {
            state,
            kick: Rc::new(kick),
            readers: Rc::new(RefCell::new(Vec::new())),
            spares,
        })
    }

    pub fn generation(&self) -> u64 {
        self.state.borrow().generation
    }

    /// Appends a BODY record (written with the next batch, not awaited).
    pub async fn append_body(&self, record: &BodyRecord<'_>) -> RecordLocation {
        let mut payload = Vec::with_capacity(record.encoded_len());
        record.encode(&mut payload);
        self.append(RecordType::Body, &payload).await
    }

    /// Appends any record with the next batch, without waiting for it to be durable: bodies
    /// (made durable by their COMMIT's batch) and outcome and admin records, whose loss in a
    /// crash only repeats work (a delivery is tried again). It does not start a batch: such
    /// records ride with the next COMMIT, or are written within `LAZY_FLUSH`.
    pub async fn append(&self, record_type: RecordType, payload: &[u8]) -> RecordLocation {
        debug_assert!(payload.len() <= PLAIN_PAYLOAD_MAX_BYTES);
        self.wait_for_room().await;
        let mut state = self.state.borrow_mut();
        let location = state.append(record_type, payload);
        if state.committer_idle {
            // Wake the committer so it starts its lazy wait; while it is busy or already
            // waiting, the record simply joins what is pending.
            state.committer_idle = false;
            let _ = self.kick.try_send(());
        }
        location
    }

    /// The segment new records go to: it and everything after it must never be reclaimed.
    pub fn write_position(&self) -> (u64, u64) {
        let state = self.state.borrow();
        (state.generation, state.segment)
    }

    /// Segments this generation has created since the last call, for the reclaimer.
    pub fn take_created_segments(&self) -> Vec<u64> {
        std::mem::take(&mut self.state.borrow_mut().created_segments)
    }

    /// The size of each segment file, which is also the disk space each one reserves.
    pub fn segment_bytes(&self) -> u64 {
        self.state.borrow().settings.segment_bytes
    }

    /// `<spool>/shard-<i>`.
    pub fn shard_directory(&self) -> PathBuf {
        self.state
            .borrow()
            .directory
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Reads a large message's BODY records back, checking each record's CRC (and opening it,
    /// in a sealed segment), and returns the chunks joined. The records are durable: their
    /// COMMIT was acknowledged after them.
    pub async fn read_extents(&self, extents: &[Extent]) -> io::Result<Vec<u8>> {
        let total: usize = extents.iter().map(|extent| extent.length as usize).sum();
        let mut content = Vec::with_capacity(total);
        let mut scratch = Vec::new();

        for extent in extents {
            let key = (extent.generation, extent.segment);
            let file = self.reader(extent.generation, extent.segment).await?;
            // `extent.length` is the plaintext payload; a sealed record carries its tag too.
            let cipher = self.state.borrow().ciphers.get(&key).cloned();
            let tag = if cipher.is_some() { SEAL_TAG_BYTES } else { 0 };
            let length = RECORD_HEADER_BYTES + extent.length as usize + tag;
            let read = file
                .read_at(extent.offset, length)
                .await
                .map_err(io::Error::from)?;
            let damaged = |reason: &dyn std::fmt::Display| {
                io::Error::other(format!(
                    "the body record at offset {} of generation {} segment {} is damaged: {reason}",
                    extent.offset, extent.generation, extent.segment
                ))
            };
            let record = decode_record(&read, extent.offset).map_err(|bad| damaged(&bad))?;
            let payload = open_payload(cipher.as_deref(), &record, &mut scratch)
                .map_err(|error| damaged(&error))?;
            let body = BodyRecord::decode(payload).map_err(io::Error::other)?;
            content.extend_from_slice(body.chunk);
        }
        Ok(content)
    }

    /// An open read handle on a segment, from the small cache or newly opened.
    async fn reader(&self, generation: u64, segment: u64) -> io::Result<Rc<DmaFile>> {
        let key = (generation, segment);
        {
            let mut readers = self.readers.borrow_mut();
            if let Some(position) = readers.iter().position(|(open, _)| *open == key) {
                let entry = readers.remove(position);
                let file = Rc::clone(&entry.1);
                readers.push(entry);
                return Ok(file);
            }
        }
        let path = segment_path(&self.shard_directory(), generation, segment);
        let file = Rc::new(DmaFile::open(&path).await.map_err(io::Error::from)?);
        let mut readers = self.readers.borrow_mut();
        if readers.len() >= READERS_KEPT {
            // Dropping the last Rc closes the descriptor; a read still using it holds its own.
            readers.remove(0);
        }
        readers.push((key, Rc::clone(&file)));
        Ok(file)
    }

    /// Deletes a segment file no live message needs any more, and syncs its directory so the
    /// deletion is ordered before later ones.
    pub async fn remove_segment(&self, generation: u64, segment: u64) -> io::Result<()> {
        debug_assert!((generation, segment) < self.write_position());
        self.readers
            .borrow_mut()
            .retain(|(key, _)| *key != (generation, segment));
        let directory = self
            .shard_directory()
            .join(generation_directory_name(generation));
        let path = directory.join(segment_file_name(segment));
        let file = DmaFile::open(&path).await.map_err(io::Error::from)?;
        file.remove().await.map_err(io::Error::from)?;
        self.state
            .borrow_mut()
            .ciphers
            .remove(&(generation, segment));
        let _ = file.close().await;
        sync_directory(&directory).await
    }

    /// Appends a message's COMMIT record and waits until it is durable.
    pub async fn commit(&self, record: &CommitRecord) -> Result<RecordLocation, SpoolFailure> {
        let started = Instant::now();
        self.wait_for_room().await;
        let payload = commit_payload(record)?;
        let location = self.append_durable(RecordType::Commit, &payload).await?;

        let waited = started.elapsed();
        self.state.borrow_mut().commit_wait.record(waited);
        Ok(location)
    }

    /// Appends the COMMIT that `build` returns to the filling batch, without waiting for it to
    /// be durable (many such commits share one sync). `build` runs in the same step as the
    /// append, with no await in between, so what it reads from the shard's state is exactly
    /// what the records before it in the log say (compaction relies on this to record a
    /// copy's delivery state). `None` appends nothing.
    pub async fn commit_built(
        &self,
        build: impl FnOnce() -> Option<CommitRecord>,
    ) -> Result<Option<PendingCommit>, SpoolFailure> {
        self.wait_for_room().await;
        let Some(record) = build() else {
            return Ok(None);
        };
        let payload = commit_payload(&record)?;
        let (location, replied) = self.enqueue_durable(RecordType::Commit, &payload);
        Ok(Some(PendingCommit {
            location,
            record,
            replied,
        }))
    }

    /// Appends a record and waits until the batch holding it is durable (the COMMIT path;
    /// also admin actions, which an operator expects to hold once acknowledged).
    pub async fn append_durable(
        &self,
        record_type: RecordType,
        payload: &[u8],
    ) -> Result<RecordLocation, SpoolFailure> {
        self.wait_for_room().await;
        let (location, replied) = self.enqueue_durable(record_type, payload);
        durable(location, replied).await
    }

    /// Appends a record to the filling batch and kicks the committer; the receiver hears when
    /// the batch is durable. Never awaits.
    fn enqueue_durable(
        &self,
        record_type: RecordType,
        payload: &[u8],
    ) -> (RecordLocation, LocalReceiver<Result<(), SpoolFailure>>) {
        let (reply, replied) = local_channel::new_bounded(1);
        let location = {
            let mut state = self.state.borrow_mut();
            let location = state.append(record_type, payload);
            state.waiters.push(reply);
            location
        };
        let _ = self.kick.try_send(());
        (location, replied)
    }

    /// Spare segment files on disk (0 or 1): they reserve space like a segment.
    pub fn spare_segments(&self) -> u64 {
        self.spares.on_disk()
    }

    /// Batches written so far (each one durable write per segment it touches).
    pub fn batches_written(&self) -> u64 {
        self.state.borrow().batch_write.count()
    }

    /// The durations of the batches written so far (see `State::batch_write`).
    pub fn batch_writes(&self) -> DurationHistogram {
        self.state.borrow().batch_write.clone()
    }

    /// The waits of the messages committed so far (see `State::commit_wait`).
    pub fn commit_waits(&self) -> DurationHistogram {
        self.state.borrow().commit_wait.clone()
    }

    /// Batches that failed so far. A message whose BODY records were appended while this
    /// changed must not be committed: one of them may be in the failed batch.
    pub fn write_failures(&self) -> u64 {
        self.state.borrow().write_failures
    }

    async fn wait_for_room(&self) {
        while self.state.borrow().pending_bytes > self.state.borrow().settings.pending_max_bytes {
            let _ = self.kick.try_send(());
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// A COMMIT in a batch not yet known to be durable (see `ShardSpool::commit_built`).
pub struct PendingCommit {
    location: RecordLocation,
    record: CommitRecord,
    replied: LocalReceiver<Result<(), SpoolFailure>>,
}

impl PendingCommit {
    /// Waits until the batch holding the COMMIT is durable; returns where it lies and what it is.
    pub async fn durable(self) -> Result<(RecordLocation, CommitRecord), SpoolFailure> {
        let location = durable(self.location, self.replied).await?;
        Ok((location, self.record))
    }
}

/// A COMMIT's payload, refused when it could never be read back.
fn commit_payload(record: &CommitRecord) -> Result<Vec<u8>, SpoolFailure> {
    let mut payload = Vec::new();
    record.encode(&mut payload);
    if payload.len() > PLAIN_PAYLOAD_MAX_BYTES {
        // Unreachable with the session's limits (512-byte commands, bounded recipients,
        // chunked bodies), but a record that large could never be read back.
        return Err(SpoolFailure {
            no_space: false,
            message: format!(
                "envelope of {} bytes is too large for one record",
                payload.len()
            ),
        });
    }
    Ok(payload)
}

/// Waits for the committer's answer about the batch holding the record at `location`.
async fn durable(
    location: RecordLocation,
    replied: LocalReceiver<Result<(), SpoolFailure>>,
) -> Result<RecordLocation, SpoolFailure> {
    match replied.recv().await {
        Some(Ok(())) => Ok(location),
        Some(Err(failure)) => Err(failure),
        None => Err(SpoolFailure {
            no_space: false,
            message: "the spool committer stopped".into(),
        }),
    }
}

/// The task that turns batches into durable writes, one at a time.
struct Committer {
    state: Rc<RefCell<State>>,
    /// Open segment files of this generation, by segment number (usually one or two).
    segments: Vec<(u64, Rc<DmaFile>)>,
    spares: Rc<SpareSegments>,
}

impl Committer {
    async fn run(mut self, kicked: LocalReceiver<()>) {
        loop {
            let (pending, urgent) = {
                let state = self.state.borrow();
                let urgent = !state.waiters.is_empty()
                    || state.pending_bytes >= state.settings.pending_max_bytes;
                (!state.pieces.is_empty(), urgent)
            };
            if !pending {
                self.state.borrow_mut().committer_idle = true;
                if kicked.recv().await.is_none() {
                    return;
                }
                self.state.borrow_mut().committer_idle = false;
                continue;
            }
            if !urgent {
                // Only records nobody waits for (bodies, outcomes): let them ride with the next
                // COMMIT's sync, or write them after a short while, instead of paying one sync
                // for each. A kick (a COMMIT) ends the wait at once.
                futures_lite::future::or(
                    async {
                        kicked.recv().await;
                    },
                    glommio::timer::sleep(LAZY_FLUSH),
                )
                .await;
            }
            // Let the tasks that are ready now run first: under load they are sessions about
            // to append their own COMMIT, which then rides in this batch instead of paying for
            // the next one. On an idle shard nothing is ready and this returns at once.
            futures_lite::future::yield_now().await;
            let (pieces, waiters) = self.state.borrow_mut().take_batch();

            let started = Instant::now();
            let result = self.write_batch(&pieces).await;
            let mut refused = waiters;
            match &result {
                Ok(()) => self
                    .state
                    .borrow_mut()
                    .batch_write
                    .record(started.elapsed()),
                Err(failure) => {
                    error!(
                        error = %failure,
                        "spool write failed; the messages in this batch and the next were \
                         refused with 451/452, and the log moves on to a fresh segment"
                    );
                    refused.extend(self.state.borrow_mut().abandon_segment());
                }
            }
            for waiter in refused {
                let _ = waiter.try_send(result.clone());
            }
        }
    }

    /// Writes each piece of a batch; every write is durable when it returns (`O_DSYNC`).
    async fn write_batch(&mut self, pieces: &[Piece]) -> Result<(), SpoolFailure> {
        for piece in pieces {
            let file = self.segment_file(piece.segment).await?;
            let length = piece.bytes.len();
            let padded_length = length.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
            let mut buffer = file.alloc_dma_buffer(padded_length);
            let target = buffer.as_bytes_mut();
            target[..length].copy_from_slice(&piece.bytes);
            target[length..].fill(0);
            let written = file
                .write_at(buffer, piece.base_offset)
                .await
                .map_err(|error| {
                    SpoolFailure::from_io("writing a segment", &io::Error::from(error))
                })?;
            if written != padded_length {
                return Err(SpoolFailure {
                    no_space: false,
                    message: format!("short segment write: {written} of {padded_length} bytes"),
                });
            }
        }
        self.retire_old_segments(pieces);
        Ok(())
    }

    /// Opens the file of `segment`, making it first if it is new: the spare renamed, or a file
    /// created with its blocks reserved; either way synced with its directory.
    async fn segment_file(&mut self, segment: u64) -> Result<Rc<DmaFile>, SpoolFailure> {
        if let Some((_, file)) = self.segments.iter().find(|(number, _)| *number == segment) {
            return Ok(Rc::clone(file));
        }
        let (directory, size) = {
            let state = self.state.borrow();
            (state.directory.clone(), state.settings.segment_bytes)
        };
        let path = directory.join(segment_file_name(segment));
        let created = match self.spares.take() {
            Some(spare) => spare.rename(&path).await.map(|()| spare),
            None => create_reserved(&path, size).await,
        };
        self.spares.replenish();
        let created = created.map_err(|error| {
            SpoolFailure::from_io("creating a segment", &io::Error::from(error))
        })?;
        // The file exists from here on: the reclaimer must know it even if a step below fails
        // (the log then moves to a fresh segment and this one is deleted once nothing needs it).
        self.state.borrow_mut().created_segments.push(segment);
        sync_directory(&directory)
            .await
            .map_err(|error| SpoolFailure::from_io("syncing the spool directory", &error))?;
        let file = open_for_commits(&path).await.map_err(|error| {
            SpoolFailure::from_io("opening a segment for commits", &io::Error::from(error))
        })?;
        // The creating handle has done its part (the zeros or the reservation, synced); batches
        // go through the O_DSYNC one. Closed now, so no descriptor without O_DSYNC lingers.
        let _ = created.close().await;
        debug!(segment, path = %path.display(), "new spool segment");
        let file = Rc::new(file);
        self.segments.push((segment, Rc::clone(&file)));
        Ok(file)
    }

    /// Closes segment files no later batch will write (everything before the newest).
    fn retire_old_segments(&mut self, pieces: &[Piece]) {
        let Some(newest) = pieces.iter().map(|piece| piece.segment).max() else {
            return;
        };
        self.segments.retain(|(segment, _)| *segment >= newest);
    }
}

/// Opens a segment file for group commits: direct I/O where the file system takes it, and
/// `O_DSYNC`, so that a write completes only once its data and the metadata needed to read it
/// back are durable. One such write replaces a write followed by an fdatasync: io_uring issues
/// it at once instead of handing the fdatasync to a kernel worker thread, and the shard waits
/// for one completion instead of two (measured in docs/benchmarks.md, "Durable writes with
/// O_DSYNC"). No batch write extends the file, which is its full size from creation on: ext4
/// made the new size of an O_DSYNC direct write that extends a file durable with the write only
/// from Linux 6.7.
async fn open_for_commits(path: &Path) -> glommio::Result<DmaFile, ()> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DSYNC)
        .dma_open(path)
        .await
}

/// Creates a segment file with its blocks reserved but unwritten (when no spare is ready) and
/// syncs it. The file gets its full size at once, like a spare, so that batch writes never
/// change it (see `open_for_commits`); recovery reads the unwritten rest as zeros and stops
/// there.
async fn create_reserved(path: &Path, size: u64) -> glommio::Result<DmaFile, ()> {
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .dma_open(path)
        .await?;
    file.pre_allocate(size, false).await?;
    file.fdatasync().await?;
    Ok(file)
}

/// The sealing of a new generation under `key`, with a fresh random salt.
fn sealing_for(key: &SpoolKey) -> io::Result<Sealing> {
    use ring::rand::SecureRandom;

    let mut salt = [0u8; SALT_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| io::Error::other("the system random number generator failed"))?;
    let mut key_record = Vec::new();
    SegmentKeyRecord {
        key_id: key.id().to_owned(),
        salt,
    }
    .encode(&mut key_record);
    Ok(Sealing {
        key: key.clone(),
        salt,
        key_record,
    })
}

/// `gen-00000001`: one process lifetime's segments.
pub fn generation_directory_name(generation: u64) -> String {
    format!("gen-{generation:08}")
}

/// `<shard>/gen-<g>/seg-<s>.log`.
pub fn segment_path(shard_directory: &Path, generation: u64, segment: u64) -> PathBuf {
    shard_directory
        .join(generation_directory_name(generation))
        .join(segment_file_name(segment))
}

/// `seg-00000001.log`: fixed width so a plain sort is the log order.
pub fn segment_file_name(segment: u64) -> String {
    format!("seg-{segment:08}.log")
}

/// glommio decides once per device and thread whether DMA reads and writes may use io_uring's
/// polled ring, by reading the first block of the first DMA file opened. A new segment is
/// empty, so that probe read succeeds without touching the device and wrongly enables polled
/// I/O; later reads of real data then fail with "Operation not supported" on devices that
/// cannot poll (virtio disks, most cloud volumes). Opening a file that holds one real block
/// first makes the probe meaningful.
async fn settle_polled_io_probe(shard_directory: &Path) -> io::Result<()> {
    let path = shard_directory.join(".io-probe");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&[0x5a; BLOCK_BYTES])?;
        file.sync_all()?;
    }
    let probed = DmaFile::open(&path).await.map_err(io::Error::from)?;
    let _ = probed.close().await;
    std::fs::remove_file(&path)
}

async fn sync_directory(directory: &Path) -> io::Result<()> {
    let handle = Directory::open(directory).await.map_err(io::Error::from)?;
    handle.sync().await.map_err(io::Error::from)?;
    handle.close().await.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    //! The placement rules of the filling batch, without an executor or files.

    use super::*;

    fn state() -> State {
        State::new(
            1,
            PathBuf::from("/nonexistent"),
            SpoolSettings::default(),
            None,
            HashMap::new(),
        )
    }

    fn waiter(state: &mut State) -> LocalReceiver<Result<(), SpoolFailure>> {
        let (reply, replied) = local_channel::new_bounded(1);
        state.waiters.push(reply);
        replied
    }

    #[test]
    fn batches_follow_each_other_on_block_boundaries() {
        let mut state = state();
        state.append(RecordType::Commit, b"first");
        let (pieces, _) = state.take_batch();
        assert_eq!((pieces[0].segment, pieces[0].base_offset), (1, 0));
        let second = state.append(RecordType::Commit, b"second");
        assert_eq!((second.segment, second.offset), (1, BLOCK_BYTES as u64));
    }

    #[test]
    fn after_a_failed_batch_records_go_to_a_fresh_segment_and_its_waiters_fail() {
        let mut state = state();
        state.append(RecordType::Commit, b"in the failed batch");
        let _failed_waiter = waiter(&mut state);
        let (_failed, _) = state.take_batch();

        // Appended while the failed batch was being written: placed behind it.
        let behind = state.append(RecordType::Commit, b"behind the hole");
        assert_eq!((behind.segment, behind.offset), (1, BLOCK_BYTES as u64));
        let _behind_waiter = waiter(&mut state);

        let refused = state.abandon_segment();
        assert_eq!(refused.len(), 1, "the waiter behind the hole is refused");
        assert_eq!(state.write_failures, 1);

        let fresh = state.append(RecordType::Commit, b"after the failure");
        assert_eq!((fresh.segment, fresh.offset), (2, 0));
        let (pieces, _) = state.take_batch();
        assert_eq!(
            pieces.len(),
            2,
            "the placed record is still written, where it was put"
        );
        let next = state.append(RecordType::Commit, b"next");
        assert_eq!(next.segment, 2);
    }

    #[test]
    fn a_batch_left_in_an_abandoned_segment_does_not_move_the_log_back() {
        let mut state = state();
        state.append(RecordType::Commit, b"failed");
        let _ = state.take_batch();
        state.append(RecordType::Body, b"placed behind the hole");
        let _ = state.abandon_segment();

        let (pieces, _) = state.take_batch();
        assert_eq!(pieces[0].segment, 1);
        let next = state.append(RecordType::Commit, b"next");
        assert_eq!((next.segment, next.offset), (2, 0));
    }
}

#[cfg(test)]
mod segment_file_tests {
    //! Segment files made on the spot, on a real executor and file system. The integration test
    //! `spool_durable_writes` checks segment sizes through a relay, where spares keep up, so it
    //! never reaches `create_reserved`; this test does.

    use super::*;

    #[test]
    fn a_segment_made_on_the_spot_has_its_full_size() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join(segment_file_name(1));
        let size = 3 << 20;

        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 << 10)
            .make()
            .expect("an executor");
        executor.run(async {
            let file = create_reserved(&path, size).await.expect("create");
            file.close().await.expect("close");
        });

        let length = std::fs::metadata(&path).expect("metadata").len();
        assert_eq!(length, size, "batch writes would extend the file");
    }
}
