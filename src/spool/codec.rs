//! The primitive field encoding shared by every payload: little-endian integers, `u32`
//! length-prefixed byte strings, strictly 0/1 booleans and tagged options. It owns the bounds
//! checks: a `Reader` never indexes past its input, never panics, and never allocates more than
//! the input could possibly describe. It knows nothing of record types.

use super::payload::PayloadError;

pub(crate) fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

/// Writes a `u32` length, then the bytes.
///
/// # Panics
///
/// If `bytes` is 4 GiB or longer. Every payload is bounded far below that by
/// `RECORD_PAYLOAD_MAX_BYTES`, which `encode_record` enforces, so this is a caller bug.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).expect("payload fields are bounded far below 4 GiB");
    put_u32(out, length);
    out.extend_from_slice(bytes);
}

pub(crate) fn put_str(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

/// Writes a count of elements that follow, with the same bound as `put_bytes`.
pub(crate) fn put_count(out: &mut Vec<u8>, count: usize) {
    let count = u32::try_from(count).expect("payload element counts are bounded far below 2^32");
    put_u32(out, count);
}

/// Writes tag 0 for `None`, or tag 1 followed by the value.
pub(crate) fn put_option<T>(out: &mut Vec<u8>, value: Option<&T>, put: impl Fn(&mut Vec<u8>, &T))
where
    T: ?Sized,
{
    match value {
        None => put_u8(out, 0),
        Some(value) => {
            put_u8(out, 1);
            put(out, value);
        }
    }
}

/// A bounds-checked cursor over one payload.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub(crate) fn take(
        &mut self,
        count: usize,
        field: &'static str,
    ) -> Result<&'a [u8], PayloadError> {
        if self.bytes.len() < count {
            return Err(PayloadError::Truncated { field });
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PayloadError> {
        let Some((array, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err(PayloadError::Truncated { field });
        };
        self.bytes = rest;
        Ok(*array)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, PayloadError> {
        self.array::<1>(field).map(|[byte]| byte)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, PayloadError> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, PayloadError> {
        self.array(field).map(u64::from_le_bytes)
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, PayloadError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(PayloadError::InvalidTag { field, tag }),
        }
    }

    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], PayloadError> {
        let length = self.u32(field)? as usize;
        self.take(length, field)
    }

    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, PayloadError> {
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes).map_err(|_| PayloadError::InvalidUtf8 { field })
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, PayloadError> {
        self.str(field).map(str::to_owned)
    }

    /// Reads an element count and checks it against the bytes left, given that each element
    /// takes at least `element_min_bytes`. This is what keeps a forged count from making the
    /// decoder reserve gigabytes for a few-byte payload.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        element_min_bytes: usize,
    ) -> Result<usize, PayloadError> {
        debug_assert!(element_min_bytes > 0);
        let count = self.u32(field)? as usize;
        if count > self.bytes.len() / element_min_bytes {
            return Err(PayloadError::Truncated { field });
        }
        Ok(count)
    }

    /// Reads tag 0 (`None`) or tag 1 followed by a value.
    pub(crate) fn option<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, PayloadError>,
    ) -> Result<Option<T>, PayloadError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => read(self).map(Some),
            tag => Err(PayloadError::InvalidTag { field, tag }),
        }
    }

    /// Everything not yet read.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// Succeeds only if every byte was read: trailing bytes mean the writer and reader disagree
    /// on the layout, which must not pass silently.
    pub(crate) fn finish(self) -> Result<(), PayloadError> {
        match self.bytes.len() {
            0 => Ok(()),
            count => Err(PayloadError::TrailingBytes { count }),
        }
    }
}
