//! The interim message store: one file per accepted message, synced before the `250`.
//!
//! This is the simple store that stands in until the segment-log spool lands. Its one promise
//! is the one the spool will keep better: when `commit` returns, the envelope and the message
//! are on disk and the directory entry that names them is too (file fdatasync, rename, directory
//! fsync), so a `250` never precedes durability. A message that is not committed leaves at most
//! a `.tmp-` file behind, which names nothing that was acknowledged.
//!
//! File format: the envelope written as the SMTP commands that carried it (`MAIL FROM`, one
//! `RCPT TO` per recipient, with their DSN parameters in xtext), then `DATA`, then the message
//! exactly as it will be relayed, starting with our `Received:` header.

use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use glommio::io::{BufferedFile, Directory};

use crate::smtp::{BodyType, Envelope, Ret};

/// Body bytes gathered in memory before one write is issued. Small messages then cost a single
/// write; large ones stream in writes of this size, so memory per session stays bounded.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Where the interim store keeps its files, inside the spool directory.
pub fn store_directory(spool: &Path, shard: usize) -> PathBuf {
    spool.join("interim").join(format!("shard-{shard}"))
}

/// One shard's store. Not shared across threads: each shard owns its directory.
pub struct MessageStore {
    directory: PathBuf,
    directory_handle: Rc<Directory>,
    shard: usize,
    sequence: Cell<u32>,
}

impl MessageStore {
    /// Opens the shard's store directory, which start-up has already created and probed.
    pub async fn open(spool: &Path, shard: usize) -> io::Result<MessageStore> {
        let directory = store_directory(spool, shard);
        let directory_handle = Directory::open(&directory).await.map_err(io::Error::from)?;
        Ok(MessageStore {
            directory,
            directory_handle: Rc::new(directory_handle),
            shard,
            sequence: Cell::new(0),
        })
    }

    /// A new queue id: unique across shards (shard number), restarts (clock) and messages
    /// within a shard (sequence). Upper-case hex, as operators know from Postfix.
    pub fn next_queue_id(&self) -> String {
        let sequence = self.sequence.get().wrapping_add(1);
        self.sequence.set(sequence);
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_micros() as u64)
            .unwrap_or(0);
        format!(
            "{micros:013X}{:02X}{:06X}",
            self.shard & 0xff,
            sequence & 0xff_ffff
        )
    }

    /// Starts a message. Nothing touches the disk until enough bytes arrive or it commits.
    pub fn begin(&self, queue_id: &str, envelope: &Envelope, received: &str) -> MessageWriter {
        let mut pending = Vec::with_capacity(4096);
        write_envelope(&mut pending, envelope);
        pending.extend_from_slice(received.as_bytes());
        MessageWriter {
            temporary: self.directory.join(format!(".tmp-{queue_id}")),
            final_path: self.directory.join(format!("{queue_id}.msg")),
            directory: Rc::clone(&self.directory_handle),
            file: None,
            pending,
            offset: 0,
        }
    }
}

/// A message being written. Either `commit` or `abort` it; dropping it leaves a `.tmp-` file.
pub struct MessageWriter {
    temporary: PathBuf,
    final_path: PathBuf,
    directory: Rc<Directory>,
    file: Option<BufferedFile>,
    pending: Vec<u8>,
    offset: u64,
}

impl MessageWriter {
    /// Takes the bytes out of `body` (leaving it empty, capacity kept) and writes when a batch
    /// is full.
    pub async fn append(&mut self, body: &mut Vec<u8>) -> io::Result<()> {
        self.pending.extend_from_slice(body);
        body.clear();
        if self.pending.len() >= WRITE_BATCH_BYTES {
            self.write_pending().await?;
        }
        Ok(())
    }

    /// Makes the message durable: data synced, then named, then the name synced.
    pub async fn commit(mut self) -> io::Result<()> {
        self.write_pending().await?;
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("no file was opened"))?;
        file.fdatasync().await.map_err(io::Error::from)?;
        file.rename(&self.final_path)
            .await
            .map_err(io::Error::from)?;
        file.close().await.map_err(io::Error::from)?;

        // The rename is only durable once the directory itself is synced.
        self.directory.sync().await.map_err(io::Error::from)?;
        Ok(())
    }

    /// Discards the message: nothing of it was acknowledged.
    pub async fn abort(mut self) {
        if let Some(file) = self.file.take() {
            let _ = file.remove().await;
            let _ = file.close().await;
        }
    }

    async fn write_pending(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            let file = BufferedFile::create(&self.temporary)
                .await
                .map_err(io::Error::from)?;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_ref() else {
            unreachable!("the file was opened just above");
        };

        // glommio takes ownership of the buffer it writes, and a write may be short, so each
        // attempt gets a copy of what is left; the copy is cheap next to the disk.
        let mut start = 0;
        while start < self.pending.len() {
            let rest = self.pending[start..].to_vec();
            let written = file
                .write_at(rest, self.offset)
                .await
                .map_err(io::Error::from)?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the disk took no bytes",
                ));
            }
            self.offset += written as u64;
            start += written;
        }
        self.pending.clear();
        Ok(())
    }
}

/// Writes the envelope as the SMTP commands that carried it, so the file reads like a replay.
fn write_envelope(out: &mut Vec<u8>, envelope: &Envelope) {
    out.extend_from_slice(b"MAIL FROM:<");
    out.extend_from_slice(envelope.mail_from.as_bytes());
    out.push(b'>');
    match envelope.body {
        BodyType::EightBitMime => out.extend_from_slice(b" BODY=8BITMIME"),
        BodyType::SevenBit => {}
    }
    if envelope.smtputf8 {
        out.extend_from_slice(b" SMTPUTF8");
    }
    match envelope.ret {
        Some(Ret::Full) => out.extend_from_slice(b" RET=FULL"),
        Some(Ret::Headers) => out.extend_from_slice(b" RET=HDRS"),
        None => {}
    }
    if let Some(envid) = &envelope.envid {
        out.extend_from_slice(b" ENVID=");
        xtext_encode(out, envid);
    }
    out.extend_from_slice(b"\r\n");

    for recipient in &envelope.rcpt_to {
        out.extend_from_slice(b"RCPT TO:<");
        out.extend_from_slice(recipient.address.as_bytes());
        out.push(b'>');
        if let Some(notify) = &recipient.notify {
            let mut words = Vec::new();
            if notify.never {
                words.push("NEVER");
            }
            if notify.success {
                words.push("SUCCESS");
            }
            if notify.failure {
                words.push("FAILURE");
            }
            if notify.delay {
                words.push("DELAY");
            }
            out.extend_from_slice(b" NOTIFY=");
            out.extend_from_slice(words.join(",").as_bytes());
        }
        if let Some(orcpt) = &recipient.orcpt {
            out.extend_from_slice(b" ORCPT=");
            xtext_encode(out, orcpt);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"DATA\r\n");
}

/// RFC 3461 §4 xtext: printable ASCII except `+` and `=` as is, everything else as `+XX`.
fn xtext_encode(out: &mut Vec<u8>, text: &str) {
    for &byte in text.as_bytes() {
        if (b'!'..=b'~').contains(&byte) && byte != b'+' && byte != b'=' {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("+{byte:02X}").as_bytes());
        }
    }
}
