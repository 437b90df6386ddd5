//! The id logs: plain text, one message id per line, so shell tools and other tests can use
//! them. `send --ids-out` writes the ids the server accepted with `250`; `sink --ids-out`
//! writes the ids it acknowledged, each followed by ` corrupt` when the body did not match its
//! checksum. This file owns that format and a writer that several threads share. Writes are
//! batched per thread and appended under a lock, so lines from different threads never mix.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The word after an id whose body failed verification.
pub const CORRUPT_MARK: &str = "corrupt";

/// A thread's batch is appended to the file once it holds this much.
const BATCH_BYTES: usize = 64 * 1024;

/// The shared file.
#[derive(Clone)]
pub struct IdLog {
    file: Arc<Mutex<File>>,
}

impl IdLog {
    pub fn create(path: &Path) -> anyhow::Result<IdLog> {
        let file = File::create(path).map_err(|error| {
            anyhow::anyhow!(
                "cannot create the id log {}: {error}; check that its directory exists and is \
                 writable",
                path.display()
            )
        })?;
        Ok(IdLog {
            file: Arc::new(Mutex::new(file)),
        })
    }

    fn append(&self, batch: &[u8]) -> io::Result<()> {
        // A poisoned lock means another thread panicked mid-write; its partial batch is still
        // whole lines (write_all of complete lines), so carrying on is safe.
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(batch)
    }
}

/// One thread's side of an `IdLog`: a buffer of complete lines.
pub struct IdBatch {
    log: Option<IdLog>,
    buffer: Vec<u8>,
    /// The first write error; reported once at the end instead of per message.
    pub error: Option<io::Error>,
}

impl IdBatch {
    pub fn new(log: Option<IdLog>) -> IdBatch {
        IdBatch {
            buffer: Vec::with_capacity(if log.is_some() { BATCH_BYTES + 256 } else { 0 }),
            log,
            error: None,
        }
    }

    /// Records `id`, marked corrupt or not. A no-op when there is no log.
    pub fn record(&mut self, id: &str, corrupt: bool) {
        if self.log.is_none() {
            return;
        }
        self.buffer.extend_from_slice(id.as_bytes());
        if corrupt {
            self.buffer.push(b' ');
            self.buffer.extend_from_slice(CORRUPT_MARK.as_bytes());
        }
        self.buffer.push(b'\n');
        if self.buffer.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if let Some(log) = &self.log {
            if !self.buffer.is_empty() {
                if let Err(error) = log.append(&self.buffer) {
                    self.error.get_or_insert(error);
                }
                self.buffer.clear();
            }
        }
    }
}

impl Drop for IdBatch {
    fn drop(&mut self) {
        self.flush();
    }
}
