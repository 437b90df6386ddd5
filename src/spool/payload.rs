//! The payload of each record type and its versioned binary encoding. It owns the layout of
//! COMMIT (queue id, arrival time, the SMTP envelope with its DSN parameters, and where the body
//! lies), BODY, the delivery outcomes and the admin actions. Every payload starts with a version
//! byte; every decode is bounds-checked, rejects trailing bytes, and returns `PayloadError`
//! rather than panicking. It never frames records (see `record`) and never does I/O.
//!
//! Layouts (`str` and `bytes` are a `u32` length then the bytes, `option` is a 0/1 tag then the
//! value, counts are `u32`, integers little-endian):
//!
//! ```text
//! COMMIT   version 1 or 2, queue_id str, received_at u64, helo str, mail_from str,
//!          body_type u8, smtputf8 bool, declared_size option u64, ret option u8,
//!          envid option str, auth option str,
//!          count × (address str, notify option u8 bitmask, orcpt option str),
//!          header_prefix bytes,
//!          body tag u8: 0 inline bytes | 1 count × (generation u64, segment u64, offset u64,
//!          length u32),
//!          version 2 only: attempts u32, next_attempt u64, held bool, count × pending u32
//! BODY     version 1, queue_id str, chunk (the rest of the payload, unprefixed)
//! outcome  version 1, queue_id str, count × recipient u32, detail str,
//!          next_attempt option u64
//! admin    version 1, queue_id str, actor str
//! ```
//!
//! Version 2 of COMMIT is the copy compaction writes forward: version 1 followed by the delivery
//! state the message had when it was copied (`CopiedState`), so a replay that no longer sees the
//! original keeps its attempt count, next attempt, hold and finished recipients. A COMMIT without
//! that state is still written as version 1, so a spool in which nothing was copied stays
//! readable by builds that predate version 2; every build reads version 1.

use thiserror::Error;

use super::codec::{
    put_bool, put_bytes, put_count, put_option, put_str, put_u32, put_u64, put_u8, Reader,
};
use crate::smtp::{BodyType, Envelope, Notify, Recipient, Ret};

/// The payload layout version every encoder writes and every decoder accepts.
pub const PAYLOAD_VERSION: u8 = 1;

/// The COMMIT layout that carries a copied message's delivery state (see the module doc).
pub const COMMIT_COPY_VERSION: u8 = 2;

/// Largest message kept inside its COMMIT record rather than in BODY records. Most mail is well
/// under this, so most messages cost one record; the rest of the 1 MiB payload limit stays free
/// for an envelope with many recipients.
pub const INLINE_BODY_MAX_BYTES: usize = 64 * 1024;

/// A payload that does not decode. With the CRC already verified, any of these means the writer
/// and reader disagree (a bug or a newer format), never that the disk flipped a bit.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("payload ends inside field `{field}`")]
    Truncated { field: &'static str },
    #[error(
        "payload version {version} is not supported (this build reads {PAYLOAD_VERSION}, and \
         {COMMIT_COPY_VERSION} for COMMIT)"
    )]
    UnsupportedVersion { version: u8 },
    #[error("field `{field}` is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("field `{field}` has unknown tag {tag}")]
    InvalidTag { field: &'static str, tag: u8 },
    #[error("payload has {count} bytes after its last field")]
    TrailingBytes { count: usize },
    #[error("record for {queue_id} names recipient {index} but the message has {recipients}")]
    RecipientOutOfRange {
        queue_id: String,
        index: u32,
        recipients: usize,
    },
    #[error("DEFERRED record for {queue_id} has no next attempt time")]
    MissingNextAttempt { queue_id: String },
    #[error("COMMIT for {queue_id} has no recipients")]
    NoRecipients { queue_id: String },
    #[error("second COMMIT for {queue_id} carries a different envelope")]
    DuplicateCommit { queue_id: String },
    #[error("copied COMMIT for {queue_id} lists no pending recipients, or not in order")]
    InvalidCopiedPending { queue_id: String },
}

/// The record that makes a message durable: once its group commit is synced, the message is
/// acknowledged with `250`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    pub queue_id: String,
    pub received_at_unix_ms: u64,
    pub envelope: Envelope,
    /// Header fields written at the end of data, when the whole message is known
    /// (`DKIM-Signature:`, `Authentication-Results:`). They go out before the stored content,
    /// which already begins with our `Received:`; usually empty.
    pub header_prefix: Vec<u8>,
    pub body: BodyLocation,
    /// Set only on a copy written forward by compaction (encoded as version 2): what the
    /// message's records had made of it when it was copied. The index consumes it on replay and
    /// never keeps it.
    pub copied: Option<CopiedState>,
}

/// A copied message's delivery state, as the queue index held it when the copy was appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopiedState {
    /// DEFERRED records seen for the message.
    pub attempts: u32,
    pub next_attempt_unix_ms: u64,
    pub held: bool,
    /// Indices into `rcpt_to` still without a final outcome, ascending. Kept as written; the
    /// index checks them against the envelope.
    pub pending: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyLocation {
    /// Small messages: the whole message (Received header included) inside the COMMIT record.
    Inline(Vec<u8>),
    /// Large messages: the BODY records holding the message, in order.
    Extents(Vec<Extent>),
}

/// Where one BODY record lies. `length` is the BODY record's payload length (queue id and chunk
/// together), so a reader fetches exactly `RECORD_HEADER_BYTES + length` bytes at `offset` and
/// checks them with `decode_record` before use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Extent {
    pub generation: u64,
    pub segment: u64,
    /// Offset of the BODY record's header in its segment.
    pub offset: u64,
    pub length: u32,
}

/// One chunk of a large message, tagged with its queue id so that a scan can tell whose it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyRecord<'a> {
    pub queue_id: &'a str,
    pub chunk: &'a [u8],
}

/// The payload of DELIVERED, DEFERRED and FAILED.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeRecord {
    pub queue_id: String,
    /// Indices into the COMMIT's `rcpt_to`.
    pub recipients: Vec<u32>,
    /// The remote reply or the local reason, for logs and bounces.
    pub detail: String,
    /// DEFERRED only: when to try again.
    pub next_attempt_unix_ms: Option<u64>,
}

/// The payload of HELD, RELEASED and DELETED.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminRecord {
    pub queue_id: String,
    /// Who asked, for the audit trail.
    pub actor: String,
}

const BODY_TYPE_SEVEN_BIT: u8 = 0;
const BODY_TYPE_EIGHT_BIT_MIME: u8 = 1;
const RET_FULL: u8 = 0;
const RET_HEADERS: u8 = 1;
const NOTIFY_NEVER: u8 = 1;
const NOTIFY_SUCCESS: u8 = 2;
const NOTIFY_FAILURE: u8 = 4;
const NOTIFY_DELAY: u8 = 8;
const BODY_INLINE: u8 = 0;
const BODY_EXTENTS: u8 = 1;

/// Smallest encoding of one recipient: an empty address and two absent options.
const RECIPIENT_MIN_BYTES: usize = 4 + 1 + 1;
const EXTENT_BYTES: usize = 8 + 8 + 8 + 4;

fn read_version(reader: &mut Reader<'_>) -> Result<(), PayloadError> {
    match reader.u8("version")? {
        PAYLOAD_VERSION => Ok(()),
        version => Err(PayloadError::UnsupportedVersion { version }),
    }
}

/// Reads a COMMIT's version byte and returns it: both layouts are read.
fn read_commit_version(reader: &mut Reader<'_>) -> Result<u8, PayloadError> {
    match reader.u8("version")? {
        version @ (PAYLOAD_VERSION | COMMIT_COPY_VERSION) => Ok(version),
        version => Err(PayloadError::UnsupportedVersion { version }),
    }
}

impl CommitRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let envelope = &self.envelope;
        let version = match self.copied {
            Some(_) => COMMIT_COPY_VERSION,
            None => PAYLOAD_VERSION,
        };
        put_u8(out, version);
        put_str(out, &self.queue_id);
        put_u64(out, self.received_at_unix_ms);
        put_str(out, &envelope.helo);
        put_str(out, &envelope.mail_from);
        put_u8(out, body_type_byte(envelope.body));
        put_bool(out, envelope.smtputf8);
        put_option(out, envelope.declared_size.as_ref(), |out, size| {
            put_u64(out, *size)
        });
        put_option(out, envelope.ret.as_ref(), |out, ret| {
            put_u8(out, ret_byte(*ret))
        });
        put_option(out, envelope.envid.as_deref(), put_str);
        put_option(out, envelope.auth.as_deref(), put_str);

        put_count(out, envelope.rcpt_to.len());
        for recipient in &envelope.rcpt_to {
            put_str(out, &recipient.address);
            put_option(out, recipient.notify.as_ref(), |out, notify| {
                put_u8(out, notify_byte(*notify))
            });
            put_option(out, recipient.orcpt.as_deref(), put_str);
        }

        put_bytes(out, &self.header_prefix);
        match &self.body {
            BodyLocation::Inline(message) => {
                put_u8(out, BODY_INLINE);
                put_bytes(out, message);
            }
            BodyLocation::Extents(extents) => {
                put_u8(out, BODY_EXTENTS);
                put_count(out, extents.len());
                for extent in extents {
                    put_u64(out, extent.generation);
                    put_u64(out, extent.segment);
                    put_u64(out, extent.offset);
                    put_u32(out, extent.length);
                }
            }
        }
        if let Some(copied) = &self.copied {
            put_u32(out, copied.attempts);
            put_u64(out, copied.next_attempt_unix_ms);
            put_bool(out, copied.held);
            put_count(out, copied.pending.len());
            for index in &copied.pending {
                put_u32(out, *index);
            }
        }
    }

    pub fn decode(payload: &[u8]) -> Result<CommitRecord, PayloadError> {
        let mut reader = Reader::new(payload);
        let version = read_commit_version(&mut reader)?;
        let queue_id = reader.string("queue_id")?;
        let received_at_unix_ms = reader.u64("received_at")?;
        let envelope = read_envelope(&mut reader)?;
        let header_prefix = reader.bytes("header_prefix")?.to_vec();
        let body = read_body_location(&mut reader)?;
        let copied = if version == COMMIT_COPY_VERSION {
            Some(read_copied_state(&mut reader)?)
        } else {
            None
        };
        reader.finish()?;
        Ok(CommitRecord {
            queue_id,
            received_at_unix_ms,
            envelope,
            header_prefix,
            body,
            copied,
        })
    }
}

fn read_envelope(reader: &mut Reader<'_>) -> Result<Envelope, PayloadError> {
    let helo = reader.string("helo")?;
    let mail_from = reader.string("mail_from")?;
    let body = match reader.u8("body_type")? {
        BODY_TYPE_SEVEN_BIT => BodyType::SevenBit,
        BODY_TYPE_EIGHT_BIT_MIME => BodyType::EightBitMime,
        tag => {
            return Err(PayloadError::InvalidTag {
                field: "body_type",
                tag,
            })
        }
    };
    let smtputf8 = reader.bool("smtputf8")?;
    let declared_size = reader.option("declared_size", |reader| reader.u64("declared_size"))?;
    let ret = reader.option("ret", |reader| match reader.u8("ret")? {
        RET_FULL => Ok(Ret::Full),
        RET_HEADERS => Ok(Ret::Headers),
        tag => Err(PayloadError::InvalidTag { field: "ret", tag }),
    })?;
    let envid = reader.option("envid", |reader| reader.string("envid"))?;
    let auth = reader.option("auth", |reader| reader.string("auth"))?;

    let count = reader.count("rcpt_to", RECIPIENT_MIN_BYTES)?;
    let mut rcpt_to = Vec::with_capacity(count);
    for _ in 0..count {
        rcpt_to.push(Recipient {
            address: reader.string("address")?,
            notify: reader.option("notify", read_notify)?,
            orcpt: reader.option("orcpt", |reader| reader.string("orcpt"))?,
        });
    }

    Ok(Envelope {
        helo,
        mail_from,
        rcpt_to,
        body,
        smtputf8,
        declared_size,
        ret,
        envid,
        auth,
    })
}

fn read_body_location(reader: &mut Reader<'_>) -> Result<BodyLocation, PayloadError> {
    match reader.u8("body")? {
        BODY_INLINE => Ok(BodyLocation::Inline(reader.bytes("inline_body")?.to_vec())),
        BODY_EXTENTS => {
            let count = reader.count("extents", EXTENT_BYTES)?;
            let mut extents = Vec::with_capacity(count);
            for _ in 0..count {
                extents.push(Extent {
                    generation: reader.u64("extent_generation")?,
                    segment: reader.u64("extent_segment")?,
                    offset: reader.u64("extent_offset")?,
                    length: reader.u32("extent_length")?,
                });
            }
            Ok(BodyLocation::Extents(extents))
        }
        tag => Err(PayloadError::InvalidTag { field: "body", tag }),
    }
}

fn read_copied_state(reader: &mut Reader<'_>) -> Result<CopiedState, PayloadError> {
    let attempts = reader.u32("copied_attempts")?;
    let next_attempt_unix_ms = reader.u64("copied_next_attempt")?;
    let held = reader.bool("copied_held")?;
    let count = reader.count("copied_pending", 4)?;
    let mut pending = Vec::with_capacity(count);
    for _ in 0..count {
        pending.push(reader.u32("copied_pending")?);
    }
    Ok(CopiedState {
        attempts,
        next_attempt_unix_ms,
        held,
        pending,
    })
}

fn body_type_byte(body: BodyType) -> u8 {
    match body {
        BodyType::SevenBit => BODY_TYPE_SEVEN_BIT,
        BodyType::EightBitMime => BODY_TYPE_EIGHT_BIT_MIME,
    }
}

fn ret_byte(ret: Ret) -> u8 {
    match ret {
        Ret::Full => RET_FULL,
        Ret::Headers => RET_HEADERS,
    }
}

fn notify_byte(notify: Notify) -> u8 {
    let mut byte = 0;
    for (set, bit) in [
        (notify.never, NOTIFY_NEVER),
        (notify.success, NOTIFY_SUCCESS),
        (notify.failure, NOTIFY_FAILURE),
        (notify.delay, NOTIFY_DELAY),
    ] {
        if set {
            byte |= bit;
        }
    }
    byte
}

fn read_notify(reader: &mut Reader<'_>) -> Result<Notify, PayloadError> {
    let byte = reader.u8("notify")?;
    if byte & !(NOTIFY_NEVER | NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY) != 0 {
        return Err(PayloadError::InvalidTag {
            field: "notify",
            tag: byte,
        });
    }
    Ok(Notify {
        never: byte & NOTIFY_NEVER != 0,
        success: byte & NOTIFY_SUCCESS != 0,
        failure: byte & NOTIFY_FAILURE != 0,
        delay: byte & NOTIFY_DELAY != 0,
    })
}

impl<'a> BodyRecord<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        put_u8(out, PAYLOAD_VERSION);
        put_str(out, self.queue_id);
        out.extend_from_slice(self.chunk);
        debug_assert_eq!(out.len() - start, self.encoded_len());
    }

    /// Payload bytes `encode` produces: what an `Extent` records as its `length`.
    pub fn encoded_len(&self) -> usize {
        1 + 4 + self.queue_id.len() + self.chunk.len()
    }

    /// Decodes without copying: the chunk borrows from `payload`.
    pub fn decode(payload: &'a [u8]) -> Result<BodyRecord<'a>, PayloadError> {
        let mut reader = Reader::new(payload);
        read_version(&mut reader)?;
        let queue_id = reader.str("queue_id")?;
        let chunk = reader.rest();
        reader.finish()?;
        Ok(BodyRecord { queue_id, chunk })
    }
}

impl OutcomeRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, PAYLOAD_VERSION);
        put_str(out, &self.queue_id);
        put_count(out, self.recipients.len());
        for index in &self.recipients {
            put_u32(out, *index);
        }
        put_str(out, &self.detail);
        put_option(out, self.next_attempt_unix_ms.as_ref(), |out, at| {
            put_u64(out, *at)
        });
    }

    pub fn decode(payload: &[u8]) -> Result<OutcomeRecord, PayloadError> {
        let mut reader = Reader::new(payload);
        read_version(&mut reader)?;
        let queue_id = reader.string("queue_id")?;
        let count = reader.count("recipients", 4)?;
        let mut recipients = Vec::with_capacity(count);
        for _ in 0..count {
            recipients.push(reader.u32("recipient")?);
        }
        let detail = reader.string("detail")?;
        let next_attempt_unix_ms =
            reader.option("next_attempt", |reader| reader.u64("next_attempt"))?;
        reader.finish()?;
        Ok(OutcomeRecord {
            queue_id,
            recipients,
            detail,
            next_attempt_unix_ms,
        })
    }
}

impl AdminRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, PAYLOAD_VERSION);
        put_str(out, &self.queue_id);
        put_str(out, &self.actor);
    }

    pub fn decode(payload: &[u8]) -> Result<AdminRecord, PayloadError> {
        let mut reader = Reader::new(payload);
        read_version(&mut reader)?;
        let queue_id = reader.string("queue_id")?;
        let actor = reader.string("actor")?;
        reader.finish()?;
        Ok(AdminRecord { queue_id, actor })
    }
}

/// Reads only the queue id that every payload except SEAL starts with, without decoding the
/// rest: enough to route a record to its message. Every layout version puts it first.
pub fn peek_queue_id(payload: &[u8]) -> Result<&str, PayloadError> {
    let mut reader = Reader::new(payload);
    read_commit_version(&mut reader)?;
    reader.str("queue_id")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_envelope() -> Envelope {
        Envelope {
            helo: "client.example.org".into(),
            mail_from: "sender@example.org".into(),
            rcpt_to: vec![
                Recipient {
                    address: "a@example.com".into(),
                    notify: None,
                    orcpt: None,
                },
                Recipient {
                    address: "bé@example.com".into(),
                    notify: Some(Notify {
                        never: false,
                        success: true,
                        failure: true,
                        delay: true,
                    }),
                    orcpt: Some("rfc822;b@example.com".into()),
                },
                Recipient {
                    address: "postmaster".into(),
                    notify: Some(Notify {
                        never: true,
                        ..Notify::default()
                    }),
                    orcpt: None,
                },
            ],
            body: BodyType::EightBitMime,
            smtputf8: true,
            declared_size: Some(12_345),
            ret: Some(Ret::Headers),
            envid: Some("QQ314159".into()),
            auth: Some("sub+mitter@example.org".into()),
        }
    }

    fn round_trip_commit(commit: &CommitRecord) {
        let mut payload = Vec::new();
        commit.encode(&mut payload);
        assert_eq!(CommitRecord::decode(&payload).as_ref(), Ok(commit));
        assert_every_truncation_fails(&payload, |bytes| CommitRecord::decode(bytes).map(drop));
    }

    /// Every strict prefix of a valid payload must be refused, never accepted or panicking.
    fn assert_every_truncation_fails(
        payload: &[u8],
        decode: impl Fn(&[u8]) -> Result<(), PayloadError>,
    ) {
        for cut in 0..payload.len() {
            assert!(
                decode(&payload[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(decode(&longer).is_err(), "trailing byte accepted");
    }

    #[test]
    fn commit_with_inline_body_round_trips() {
        round_trip_commit(&CommitRecord {
            queue_id: "0A1B2C3D4E5F".into(),
            received_at_unix_ms: 1_760_000_000_123,
            envelope: sample_envelope(),
            header_prefix: b"DKIM-Signature: v=1; a=ed25519-sha256\r\n".to_vec(),
            body: BodyLocation::Inline(b"Received: from x\r\n\r\nHello\r\n".to_vec()),
            copied: None,
        });
    }

    #[test]
    fn commit_with_extents_and_bare_envelope_round_trips() {
        round_trip_commit(&CommitRecord {
            queue_id: "Q2".into(),
            received_at_unix_ms: 0,
            envelope: Envelope::default(),
            header_prefix: Vec::new(),
            body: BodyLocation::Extents(vec![
                Extent {
                    generation: 3,
                    segment: 7,
                    offset: 4096,
                    length: 1 << 20,
                },
                Extent {
                    generation: u64::MAX,
                    segment: 8,
                    offset: 0,
                    length: 1,
                },
            ]),
            copied: None,
        });
        round_trip_commit(&CommitRecord {
            queue_id: String::new(),
            received_at_unix_ms: u64::MAX,
            envelope: Envelope::default(),
            header_prefix: Vec::new(),
            body: BodyLocation::Extents(Vec::new()),
            copied: None,
        });
    }

    #[test]
    fn copied_commit_round_trips_as_version_2() {
        let commit = CommitRecord {
            queue_id: "0A1B2C3D4E5F".into(),
            received_at_unix_ms: 1_760_000_000_123,
            envelope: sample_envelope(),
            header_prefix: Vec::new(),
            body: BodyLocation::Inline(b"Received: from x\r\n\r\nHello\r\n".to_vec()),
            copied: Some(CopiedState {
                attempts: 7,
                next_attempt_unix_ms: 1_760_086_400_000,
                held: true,
                pending: vec![0, 2],
            }),
        };
        round_trip_commit(&commit);
        let mut payload = Vec::new();
        commit.encode(&mut payload);
        assert_eq!(payload[0], COMMIT_COPY_VERSION);

        // The copied state is a tail after the version 1 fields, nothing else moves.
        let mut original = Vec::new();
        CommitRecord {
            copied: None,
            ..commit
        }
        .encode(&mut original);
        assert_eq!(original[0], PAYLOAD_VERSION);
        assert_eq!(payload[1..original.len()], original[1..]);
        assert_eq!(payload.len(), original.len() + 4 + 8 + 1 + 4 + 2 * 4);
    }

    /// A COMMIT exactly as builds before version 2 wrote it, byte for byte: a spool written by
    /// an older build must still recover.
    #[test]
    fn a_version_1_commit_from_an_older_build_still_decodes() {
        let written: &[u8] = &[
            1, // version
            1, 0, 0, 0, b'Q', // queue id
            1, 0, 0, 0, 0, 0, 0, 0, // received at
            0, 0, 0, 0, // helo
            0, 0, 0, 0, // mail from
            0, // body type 7BIT
            0, // smtputf8
            0, 0, 0, 0, // declared size, ret, envid, auth: absent
            1, 0, 0, 0, // one recipient
            1, 0, 0, 0, b'r', 0, 0, // address, no NOTIFY, no ORCPT
            0, 0, 0, 0, // header prefix
            0, 2, 0, 0, 0, b'h', b'i', // inline body
        ];
        let commit = CommitRecord::decode(written).unwrap();
        assert_eq!(commit.queue_id, "Q");
        assert_eq!(commit.received_at_unix_ms, 1);
        assert_eq!(commit.envelope.rcpt_to[0].address, "r");
        assert_eq!(commit.body, BodyLocation::Inline(b"hi".to_vec()));
        assert_eq!(commit.copied, None);
        let mut again = Vec::new();
        commit.encode(&mut again);
        assert_eq!(
            again, written,
            "a COMMIT without copied state is still written as version 1"
        );
    }

    #[test]
    fn body_round_trips_without_copying() {
        let body = BodyRecord {
            queue_id: "Q1",
            chunk: b"line one\r\nline two\r\n",
        };
        let mut payload = Vec::new();
        body.encode(&mut payload);
        assert_eq!(payload.len(), body.encoded_len());
        let decoded = BodyRecord::decode(&payload).unwrap();
        assert_eq!(decoded, body);
        assert!(std::ptr::eq(
            decoded.chunk.as_ptr(),
            payload[payload.len() - 20..].as_ptr()
        ));
        assert_eq!(peek_queue_id(&payload), Ok("Q1"));

        let empty = BodyRecord {
            queue_id: "",
            chunk: b"",
        };
        payload.clear();
        empty.encode(&mut payload);
        assert_eq!(BodyRecord::decode(&payload), Ok(empty));
    }

    #[test]
    fn outcome_round_trips() {
        for outcome in [
            OutcomeRecord {
                queue_id: "Q1".into(),
                recipients: vec![0, 2, u32::MAX],
                detail: "250 2.0.0 ok queued as 42".into(),
                next_attempt_unix_ms: None,
            },
            OutcomeRecord {
                queue_id: "Q1".into(),
                recipients: Vec::new(),
                detail: String::new(),
                next_attempt_unix_ms: Some(1_760_000_600_000),
            },
        ] {
            let mut payload = Vec::new();
            outcome.encode(&mut payload);
            assert_eq!(OutcomeRecord::decode(&payload).as_ref(), Ok(&outcome));
            assert_eq!(peek_queue_id(&payload), Ok("Q1"));
            assert_every_truncation_fails(&payload, |b| OutcomeRecord::decode(b).map(drop));
        }
    }

    #[test]
    fn admin_round_trips() {
        let admin = AdminRecord {
            queue_id: "Q9".into(),
            actor: "cli:root".into(),
        };
        let mut payload = Vec::new();
        admin.encode(&mut payload);
        assert_eq!(AdminRecord::decode(&payload).as_ref(), Ok(&admin));
        assert_every_truncation_fails(&payload, |b| AdminRecord::decode(b).map(drop));
    }

    #[test]
    fn unknown_version_and_tags_are_refused() {
        let admin = AdminRecord {
            queue_id: "Q".into(),
            actor: "a".into(),
        };
        let mut payload = Vec::new();
        admin.encode(&mut payload);
        // Version 2 exists for COMMIT only.
        payload[0] = COMMIT_COPY_VERSION;
        assert_eq!(
            AdminRecord::decode(&payload),
            Err(PayloadError::UnsupportedVersion { version: 2 })
        );
        payload[0] = 3;
        assert_eq!(
            peek_queue_id(&payload),
            Err(PayloadError::UnsupportedVersion { version: 3 })
        );

        let commit = CommitRecord {
            queue_id: "Q".into(),
            received_at_unix_ms: 1,
            envelope: Envelope::default(),
            header_prefix: Vec::new(),
            body: BodyLocation::Inline(Vec::new()),
            copied: None,
        };
        payload.clear();
        commit.encode(&mut payload);
        // Layout: version 1, queue id 4+1, time 8, helo 4, mail_from 4, then body_type.
        let body_type_at = 1 + 5 + 8 + 4 + 4;
        payload[body_type_at] = 9;
        assert_eq!(
            CommitRecord::decode(&payload),
            Err(PayloadError::InvalidTag {
                field: "body_type",
                tag: 9
            })
        );
        payload[body_type_at] = 0;
        payload[body_type_at + 1] = 2;
        assert!(matches!(
            CommitRecord::decode(&payload),
            Err(PayloadError::InvalidTag {
                field: "smtputf8",
                ..
            })
        ));
    }

    #[test]
    fn forged_counts_and_bad_utf8_are_refused_without_allocating() {
        let mut payload = vec![PAYLOAD_VERSION];
        put_str(&mut payload, "Q");
        put_u32(&mut payload, u32::MAX);
        assert_eq!(
            OutcomeRecord::decode(&payload),
            Err(PayloadError::Truncated {
                field: "recipients"
            })
        );

        let mut payload = vec![PAYLOAD_VERSION];
        put_bytes(&mut payload, &[0xff, 0xfe]);
        put_str(&mut payload, "actor");
        assert_eq!(
            AdminRecord::decode(&payload),
            Err(PayloadError::InvalidUtf8 { field: "queue_id" })
        );
    }

    fn notify_strategy() -> impl Strategy<Value = Option<Notify>> {
        proptest::option::of(
            any::<[bool; 4]>().prop_map(|[never, success, failure, delay]| Notify {
                never,
                success,
                failure,
                delay,
            }),
        )
    }

    fn envelope_strategy() -> impl Strategy<Value = Envelope> {
        let recipient = (".*", notify_strategy(), proptest::option::of(".*")).prop_map(
            |(address, notify, orcpt)| Recipient {
                address,
                notify,
                orcpt,
            },
        );
        (
            (".*", ".*", prop::collection::vec(recipient, 0..5)),
            (
                any::<bool>(),
                any::<bool>(),
                any::<Option<u64>>(),
                proptest::option::of(any::<bool>()),
                proptest::option::of(".*"),
                proptest::option::of(".*"),
            ),
        )
            .prop_map(
                |(
                    (helo, mail_from, rcpt_to),
                    (eight_bit, smtputf8, declared_size, ret, envid, auth),
                )| {
                    Envelope {
                        helo,
                        mail_from,
                        rcpt_to,
                        body: if eight_bit {
                            BodyType::EightBitMime
                        } else {
                            BodyType::SevenBit
                        },
                        smtputf8,
                        declared_size,
                        ret: ret.map(|full| if full { Ret::Full } else { Ret::Headers }),
                        envid,
                        auth,
                    }
                },
            )
    }

    fn copied_state_strategy() -> impl Strategy<Value = CopiedState> {
        (
            any::<u32>(),
            any::<u64>(),
            any::<bool>(),
            prop::collection::vec(any::<u32>(), 0..6),
        )
            .prop_map(
                |(attempts, next_attempt_unix_ms, held, pending)| CopiedState {
                    attempts,
                    next_attempt_unix_ms,
                    held,
                    pending,
                },
            )
    }

    fn body_location_strategy() -> impl Strategy<Value = BodyLocation> {
        let extent =
            any::<(u64, u64, u64, u32)>().prop_map(|(generation, segment, offset, length)| {
                Extent {
                    generation,
                    segment,
                    offset,
                    length,
                }
            });
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300).prop_map(BodyLocation::Inline),
            prop::collection::vec(extent, 0..6).prop_map(BodyLocation::Extents),
        ]
    }

    proptest! {
        #[test]
        fn any_commit_round_trips(
            queue_id in ".*",
            received_at_unix_ms in any::<u64>(),
            envelope in envelope_strategy(),
            header_prefix in prop::collection::vec(any::<u8>(), 0..100),
            body in body_location_strategy(),
            copied in proptest::option::of(copied_state_strategy()),
        ) {
            let version = if copied.is_some() { COMMIT_COPY_VERSION } else { PAYLOAD_VERSION };
            let commit = CommitRecord {
                queue_id, received_at_unix_ms, envelope, header_prefix, body, copied,
            };
            let mut payload = Vec::new();
            commit.encode(&mut payload);
            prop_assert_eq!(payload[0], version);
            prop_assert_eq!(peek_queue_id(&payload), Ok(commit.queue_id.as_str()));
            prop_assert_eq!(CommitRecord::decode(&payload), Ok(commit));
        }

        #[test]
        fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            // With the right version byte in front as well, so the bytes reach the fields.
            let with_version = |version: u8| [&[version][..], &bytes].concat();
            for bytes in [bytes.clone(), with_version(PAYLOAD_VERSION),
                with_version(COMMIT_COPY_VERSION)] {
                let _ = CommitRecord::decode(&bytes);
                let _ = BodyRecord::decode(&bytes);
                let _ = OutcomeRecord::decode(&bytes);
                let _ = AdminRecord::decode(&bytes);
                let _ = peek_queue_id(&bytes);
            }
        }
    }
}
