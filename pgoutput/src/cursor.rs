//! Checked big-endian reads over a shared buffer.
//!
//! Every decoder in the crate reads through a [`Cursor`], whose reads return an [`Error`] naming
//! the message, the field and the offset instead of panicking when the buffer is short; this is
//! what makes the decoders total. Byte-string fields are handed out as `Bytes` slices of the
//! input (a reference count, no copy). Boolean and length fields are checked here once, with the
//! exact values PostgreSQL 15 writes, so every accepted input re-encodes to the same bytes.

use bytes::Bytes;

use crate::{Error, Lsn, Oid, PgTimestamp, Result, Xid};

/// A read position in a buffer, tagged with the name of the message being decoded.
#[derive(Debug)]
pub(crate) struct Cursor {
    buf: Bytes,
    pos: usize,
    message: &'static str,
}

impl Cursor {
    pub(crate) fn new(buf: Bytes, message: &'static str) -> Self {
        Cursor {
            buf,
            pos: 0,
            message,
        }
    }

    /// Names the message for later errors, once its tag has been read.
    pub(crate) fn set_message(&mut self, message: &'static str) {
        self.message = message;
    }

    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn truncated(&self, field: &'static str, needed: usize) -> Error {
        Error::Truncated {
            message: self.message,
            field,
            offset: self.pos,
            needed,
            available: self.remaining(),
        }
    }

    /// An [`Error::InvalidValue`] for a field read at `offset`.
    pub(crate) fn invalid(
        &self,
        field: &'static str,
        offset: usize,
        value: i64,
        reason: &'static str,
    ) -> Error {
        Error::InvalidValue {
            message: self.message,
            field,
            offset,
            value,
            reason,
        }
    }

    /// An [`Error::UnknownTag`] for a tag byte read at `offset`.
    pub(crate) fn unknown_tag(&self, field: &'static str, offset: usize, tag: u8) -> Error {
        Error::UnknownTag {
            message: self.message,
            field,
            offset,
            tag,
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let end = self.pos.checked_add(N);
        let bytes = end
            .and_then(|end| self.buf.get(self.pos..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| self.truncated(field, N))?;
        self.pos += N;
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32> {
        self.array(field).map(i32::from_be_bytes)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64> {
        self.array(field).map(i64::from_be_bytes)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64> {
        self.array(field).map(u64::from_be_bytes)
    }

    pub(crate) fn lsn(&mut self, field: &'static str) -> Result<Lsn> {
        self.u64(field).map(Lsn)
    }

    pub(crate) fn xid(&mut self, field: &'static str) -> Result<Xid> {
        self.u32(field).map(Xid)
    }

    pub(crate) fn oid(&mut self, field: &'static str) -> Result<Oid> {
        self.u32(field).map(Oid)
    }

    pub(crate) fn timestamp(&mut self, field: &'static str) -> Result<PgTimestamp> {
        self.i64(field).map(PgTimestamp)
    }

    /// The xid prefix of a change inside a stream block, if `streamed`.
    pub(crate) fn stream_xid(&mut self, streamed: bool) -> Result<Option<Xid>> {
        if streamed {
            self.xid("streamed transaction xid").map(Some)
        } else {
            Ok(None)
        }
    }

    /// A byte that must be 0 (false) or 1 (true).
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool> {
        let offset = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.invalid(field, offset, other.into(), "expected 0 or 1")),
        }
    }

    /// A flags byte that PostgreSQL 15 always sends as 0.
    pub(crate) fn zero_flags(&mut self, field: &'static str) -> Result<()> {
        let offset = self.pos;
        match self.u8(field)? {
            0 => Ok(()),
            other => Err(self.invalid(
                field,
                offset,
                other.into(),
                "flags are unused and must be 0",
            )),
        }
    }

    /// A signed 32-bit count or length that must not be negative.
    pub(crate) fn len_i32(&mut self, field: &'static str) -> Result<usize> {
        let offset = self.pos;
        let v = self.i32(field)?;
        usize::try_from(v)
            .map_err(|_| self.invalid(field, offset, v.into(), "must not be negative"))
    }

    /// An unsigned 16-bit count. The documentation says Int16, but PostgreSQL writes and reads
    /// column counts as `uint16` (and never exceeds 1664), so the unsigned reading is exact.
    pub(crate) fn len_u16(&mut self, field: &'static str) -> Result<usize> {
        self.array(field)
            .map(|b| usize::from(u16::from_be_bytes(b)))
    }

    /// The next `len` bytes as a zero-copy slice of the input.
    pub(crate) fn bytes(&mut self, len: usize, field: &'static str) -> Result<Bytes> {
        if len > self.remaining() {
            return Err(self.truncated(field, len));
        }
        let start = self.pos;
        self.pos += len;
        Ok(self.buf.slice(start..self.pos))
    }

    /// Everything that is left, as a zero-copy slice.
    pub(crate) fn rest(&mut self) -> Bytes {
        let start = self.pos.min(self.buf.len());
        self.pos = self.buf.len();
        self.buf.slice(start..)
    }

    /// A NUL-terminated UTF-8 string (PostgreSQL's protocol `String`).
    pub(crate) fn cstring(&mut self, field: &'static str) -> Result<String> {
        let offset = self.pos;
        let tail = self.buf.get(offset..).unwrap_or_default();
        let len = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(Error::UnterminatedString {
                message: self.message,
                field,
                offset,
            })?;
        let text = tail.get(..len).unwrap_or_default();
        let text = std::str::from_utf8(text).map_err(|_| Error::InvalidUtf8 {
            message: self.message,
            field,
            offset,
        })?;
        let text = text.to_owned();
        self.pos = offset + len + 1;
        Ok(text)
    }

    /// Capacity to reserve for `count` items of at least `min_size` bytes each: never more than
    /// the remaining input could hold, so a hostile count cannot trigger a huge allocation.
    pub(crate) fn capacity_for(&self, count: usize, min_size: usize) -> usize {
        count.min(self.remaining() / min_size.max(1))
    }

    /// Succeeds only if the whole buffer was consumed.
    pub(crate) fn finish(self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            remaining => Err(Error::TrailingBytes {
                message: self.message,
                offset: self.pos,
                remaining,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_tracks_offset() {
        let mut c = Cursor::new(Bytes::from_static(&[0, 1, 0, 0, 0, 2, 0xFF]), "test");
        assert_eq!(c.len_u16("a").unwrap(), 1);
        assert_eq!(c.i32("b").unwrap(), 2);
        assert_eq!(c.offset(), 6);
        let err = c.len_u16("c").unwrap_err();
        assert_eq!(
            err,
            Error::Truncated {
                message: "test",
                field: "c",
                offset: 6,
                needed: 2,
                available: 1
            }
        );
        // A failed read consumes nothing.
        assert_eq!(c.u8("d").unwrap(), 0xFF);
        c.finish().unwrap();
    }

    #[test]
    fn strings() {
        let mut c = Cursor::new(Bytes::from_static(b"ab\0\0x"), "test");
        assert_eq!(c.cstring("s").unwrap(), "ab");
        assert_eq!(c.cstring("s").unwrap(), "");
        assert!(matches!(
            c.cstring("s"),
            Err(Error::UnterminatedString { offset: 4, .. })
        ));
        let mut c = Cursor::new(Bytes::from_static(b"\xFF\0"), "test");
        assert!(matches!(c.cstring("s"), Err(Error::InvalidUtf8 { .. })));
    }

    #[test]
    fn checked_scalars() {
        let mut c = Cursor::new(Bytes::from_static(&[2, 1, 0xFF, 0xFF, 0xFF, 0xFF]), "t");
        assert!(matches!(
            c.bool("b"),
            Err(Error::InvalidValue { value: 2, .. })
        ));
        assert!(matches!(
            c.zero_flags("f"),
            Err(Error::InvalidValue { value: 1, .. })
        ));
        assert!(matches!(
            c.len_i32("n"),
            Err(Error::InvalidValue { value: -1, .. })
        ));
        let c = Cursor::new(Bytes::from_static(&[0; 10]), "t");
        assert_eq!(c.capacity_for(usize::MAX, 4), 2);
        assert_eq!(c.capacity_for(1, 0), 1);
    }

    #[test]
    fn slices_share_the_input() {
        let input = Bytes::from_static(b"hello world");
        let mut c = Cursor::new(input.clone(), "t");
        let s = c.bytes(5, "s").unwrap();
        assert_eq!(s, "hello");
        assert_eq!(s.as_ptr(), input.as_ptr());
        assert!(c.bytes(7, "s").is_err());
        assert_eq!(c.rest(), " world");
        assert_eq!(c.rest(), "");
    }
}
