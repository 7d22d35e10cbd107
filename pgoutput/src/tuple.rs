//! Row images (`TupleData`).
//!
//! pgoutput sends a row as a column count (unsigned 16-bit) followed by one kind byte per column: `n` SQL NULL,
//! `u` an unchanged TOASTed value the server did not send (an `UPDATE` that did not touch a large
//! column; the consumer must keep its previous value), `t` the value in text output format, `b`
//! the value in binary send format (only with the `binary` option). Values are handed out as
//! `Bytes` slices of the XLogData payload, uninterpreted: converting text to a typed value needs
//! the column's type oid, which lives in the Relation message (see
//! [`RelationCache`](crate::RelationCache)).

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::writer::Writer;
use crate::Result;

const KIND_NULL: u8 = b'n';
const KIND_UNCHANGED_TOAST: u8 = b'u';
const KIND_TEXT: u8 = b't';
const KIND_BINARY: u8 = b'b';

/// One row image: the column values in the relation's column order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TupleData {
    /// The values, one per column of the Relation message.
    pub columns: Vec<ColumnValue>,
}

/// One column's value in a [`TupleData`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value that was not sent; the previous value still holds.
    UnchangedToast,
    /// `t`: the value in the type's text output format (server encoding, not validated here).
    Text(Bytes),
    /// `b`: the value in the type's binary send format.
    Binary(Bytes),
}

/// The kind of a [`ColumnValue`], without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// SQL NULL.
    Null,
    /// Unchanged TOASTed value, not sent.
    UnchangedToast,
    /// Text format.
    Text,
    /// Binary format.
    Binary,
}

impl ColumnValue {
    /// The kind of value.
    pub fn kind(&self) -> ColumnKind {
        match self {
            ColumnValue::Null => ColumnKind::Null,
            ColumnValue::UnchangedToast => ColumnKind::UnchangedToast,
            ColumnValue::Text(_) => ColumnKind::Text,
            ColumnValue::Binary(_) => ColumnKind::Binary,
        }
    }

    /// The value's bytes, for `Text` and `Binary`.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            ColumnValue::Text(b) | ColumnValue::Binary(b) => Some(b),
            ColumnValue::Null | ColumnValue::UnchangedToast => None,
        }
    }

    /// A `Text` value as `&str`, if it is text and valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ColumnValue::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

impl TupleData {
    /// A tuple of the given values.
    pub fn new(columns: Vec<ColumnValue>) -> Self {
        TupleData { columns }
    }

    /// Reads `Int16` column count, then each column.
    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self> {
        let count = cur.len_u16("tuple column count")?;
        // Every column takes at least its kind byte.
        let mut columns = Vec::with_capacity(cur.capacity_for(count, 1));
        for _ in 0..count {
            let offset = cur.offset();
            let value = match cur.u8("tuple column kind")? {
                KIND_NULL => ColumnValue::Null,
                KIND_UNCHANGED_TOAST => ColumnValue::UnchangedToast,
                KIND_TEXT => {
                    let len = cur.len_i32("tuple column length")?;
                    ColumnValue::Text(cur.bytes(len, "tuple column value")?)
                }
                KIND_BINARY => {
                    let len = cur.len_i32("tuple column length")?;
                    ColumnValue::Binary(cur.bytes(len, "tuple column value")?)
                }
                other => return Err(cur.unknown_tag("tuple column kind", offset, other)),
            };
            columns.push(value);
        }
        Ok(TupleData { columns })
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<()> {
        w.len_u16(self.columns.len(), "tuple column count")?;
        for value in &self.columns {
            match value {
                ColumnValue::Null => w.u8(KIND_NULL),
                ColumnValue::UnchangedToast => w.u8(KIND_UNCHANGED_TOAST),
                ColumnValue::Text(b) => {
                    w.u8(KIND_TEXT);
                    w.bytes_i32(b, "tuple column value")?;
                }
                ColumnValue::Binary(b) => {
                    w.u8(KIND_BINARY);
                    w.bytes_i32(b, "tuple column value")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use bytes::BytesMut;

    fn decode(bytes: &[u8]) -> Result<TupleData> {
        let mut cur = Cursor::new(Bytes::copy_from_slice(bytes), "TupleData");
        let t = TupleData::decode(&mut cur)?;
        cur.finish()?;
        Ok(t)
    }

    #[test]
    fn all_four_kinds() {
        // 4 columns: n, u, t "42", b [7].
        let bytes: &[u8] = b"\x00\x04nut\x00\x00\x00\x0242b\x00\x00\x00\x01\x07";
        let t = decode(bytes).unwrap();
        assert_eq!(
            t.columns,
            vec![
                ColumnValue::Null,
                ColumnValue::UnchangedToast,
                ColumnValue::Text(Bytes::from_static(b"42")),
                ColumnValue::Binary(Bytes::from_static(&[7])),
            ]
        );
        assert_eq!(t.columns[2].as_str(), Some("42"));
        assert_eq!(t.columns[3].kind(), ColumnKind::Binary);
        let mut buf = BytesMut::new();
        t.encode(&mut Writer::new(&mut buf, "TupleData")).unwrap();
        assert_eq!(&buf[..], bytes);
    }

    #[test]
    fn empty_tuple_and_empty_text() {
        assert_eq!(decode(b"\x00\x00").unwrap().columns, vec![]);
        assert_eq!(
            decode(b"\x00\x01t\x00\x00\x00\x00").unwrap().columns,
            vec![ColumnValue::Text(Bytes::new())]
        );
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(
            decode(b"\x00\x01x"),
            Err(Error::UnknownTag {
                tag: b'x',
                offset: 2,
                ..
            })
        ));
        assert!(matches!(
            decode(b"\xFF\xFF"),
            Err(Error::Truncated {
                field: "tuple column kind",
                ..
            })
        ));
        assert!(matches!(
            decode(b"\x00\x01t\xFF\xFF\xFF\xFF"),
            Err(Error::InvalidValue { value: -1, .. })
        ));
        assert!(matches!(
            decode(b"\x00\x01t\x00\x00\x00\x05ab"),
            Err(Error::Truncated {
                needed: 5,
                available: 2,
                ..
            })
        ));
        assert!(matches!(decode(b"\x7F\xFF"), Err(Error::Truncated { .. })));
        assert!(matches!(
            decode(b"\x00\x00n"),
            Err(Error::TrailingBytes { .. })
        ));
    }
}
