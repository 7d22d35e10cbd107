//! Big-endian writes for the encoders.
//!
//! The encoders exist for tests, benchmarks and test servers. They write exactly the layout the
//! decoders accept, and refuse (rather than truncate) values the wire cannot carry: strings with
//! an interior NUL, byte strings longer than `i32::MAX`, more than `u16::MAX` columns.

use bytes::{BufMut, BytesMut};

use crate::{Error, Lsn, Oid, PgTimestamp, Result, Xid};

/// An output buffer tagged with the name of the message being encoded.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut BytesMut,
    message: &'static str,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut BytesMut, message: &'static str) -> Self {
        Writer { buf, message }
    }

    pub(crate) fn unencodable(&self, field: &'static str, reason: &'static str) -> Error {
        Error::Unencodable {
            message: self.message,
            field,
            reason,
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.buf.put_u8(u8::from(v));
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    pub(crate) fn lsn(&mut self, v: Lsn) {
        self.buf.put_u64(v.0);
    }

    pub(crate) fn xid(&mut self, v: Xid) {
        self.buf.put_u32(v.0);
    }

    /// The xid prefix of a change inside a stream block, when there is one.
    pub(crate) fn stream_xid(&mut self, v: Option<Xid>) {
        if let Some(xid) = v {
            self.xid(xid);
        }
    }

    pub(crate) fn oid(&mut self, v: Oid) {
        self.buf.put_u32(v.0);
    }

    pub(crate) fn timestamp(&mut self, v: PgTimestamp) {
        self.buf.put_i64(v.0);
    }

    /// Raw bytes with no length prefix.
    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }

    /// A count as Int32.
    pub(crate) fn len_i32(&mut self, len: usize, field: &'static str) -> Result<()> {
        let v = i32::try_from(len).map_err(|_| self.unencodable(field, "exceeds i32::MAX"))?;
        self.i32(v);
        Ok(())
    }

    /// A count as an unsigned 16-bit integer.
    pub(crate) fn len_u16(&mut self, len: usize, field: &'static str) -> Result<()> {
        let v = u16::try_from(len).map_err(|_| self.unencodable(field, "exceeds u16::MAX"))?;
        self.buf.put_u16(v);
        Ok(())
    }

    /// A byte string with an Int32 length prefix.
    pub(crate) fn bytes_i32(&mut self, v: &[u8], field: &'static str) -> Result<()> {
        self.len_i32(v.len(), field)?;
        self.raw(v);
        Ok(())
    }

    /// A NUL-terminated string.
    pub(crate) fn cstring(&mut self, v: &str, field: &'static str) -> Result<()> {
        if v.as_bytes().contains(&0) {
            return Err(self.unencodable(field, "contains a NUL byte"));
        }
        self.raw(v.as_bytes());
        self.u8(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_the_wire_cannot_carry() {
        let mut buf = BytesMut::new();
        let mut w = Writer::new(&mut buf, "Test");
        assert!(matches!(
            w.cstring("a\0b", "name"),
            Err(Error::Unencodable { field: "name", .. })
        ));
        assert!(w.len_u16(70_000, "columns").is_err());
        w.cstring("ab", "name").unwrap();
        w.bytes_i32(b"xy", "data").unwrap();
        assert_eq!(&buf[..], b"ab\0\0\0\0\x02xy");
    }
}
