//! The crate's single error type.
//!
//! Contract: every decoder in this crate is total. Any byte string — empty, truncated, mutated,
//! from a newer server, or random — yields either a value or one of these errors, never a panic.
//! Each error names the message being decoded (`message`), the field that failed (`field`) and the
//! byte offset of that field from the start of the buffer handed to the decoder (for a logical
//! message that is the `XLogData` payload, for the CopyData framing the CopyData body), so a log
//! line is enough to find the bad byte in a captured stream.
//!
//! Encoders share the type: they refuse values the wire format cannot carry (a string with an
//! interior NUL, more than `u16::MAX` columns) instead of writing something a server would
//! misread.

use crate::Oid;

/// Everything that can go wrong while decoding, encoding or resolving pgoutput data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ended before a field was complete.
    #[error(
        "{message}: truncated {field} at offset {offset}: needs {needed} bytes, {available} left"
    )]
    Truncated {
        /// The message being decoded.
        message: &'static str,
        /// The field that did not fit.
        field: &'static str,
        /// Offset of the field from the start of the buffer.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },

    /// A tag byte (message type, tuple marker, column kind, ...) is not one this decoder knows.
    #[error("{message}: unknown {field} {tag:#04x} ({}) at offset {offset}", printable(*tag))]
    UnknownTag {
        /// The message being decoded.
        message: &'static str,
        /// What the tag selects.
        field: &'static str,
        /// Offset of the tag byte.
        offset: usize,
        /// The tag byte.
        tag: u8,
    },

    /// A field holds a value outside what PostgreSQL 15 sends (a negative length, a flag bit
    /// that is not defined, a boolean byte other than 0 or 1).
    #[error("{message}: invalid {field} {value} at offset {offset}: {reason}")]
    InvalidValue {
        /// The message being decoded.
        message: &'static str,
        /// The offending field.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// The value read, widened.
        value: i64,
        /// What was expected instead.
        reason: &'static str,
    },

    /// A NUL-terminated string runs to the end of the buffer.
    #[error("{message}: {field} at offset {offset} has no NUL terminator")]
    UnterminatedString {
        /// The message being decoded.
        message: &'static str,
        /// The string field.
        field: &'static str,
        /// Offset where the string starts.
        offset: usize,
    },

    /// A string field is not UTF-8 (the crate assumes a UTF8 server encoding for identifiers).
    #[error("{message}: {field} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The message being decoded.
        message: &'static str,
        /// The string field.
        field: &'static str,
        /// Offset where the string starts.
        offset: usize,
    },

    /// The message decoded completely but bytes remain: a newer protocol version or a framing
    /// error. Refused rather than ignored so a misconfigured protocol version is noticed.
    #[error("{message}: {remaining} unexpected trailing bytes at offset {offset}")]
    TrailingBytes {
        /// The message that was decoded.
        message: &'static str,
        /// Offset of the first unread byte.
        offset: usize,
        /// Number of unread bytes.
        remaining: usize,
    },

    /// A protocol version this crate does not decode (it speaks 1 to 3, PostgreSQL 15's set).
    #[error("unsupported pgoutput protocol version {version}: this decoder speaks 1 to 3")]
    UnsupportedProtocolVersion {
        /// The version asked for.
        version: u32,
    },

    /// A message arrived that the negotiated protocol version cannot carry.
    #[error("{message} needs pgoutput protocol version {required}, but the stream uses {actual}")]
    ProtocolTooOld {
        /// The message (or feature) that needs the newer version.
        message: &'static str,
        /// The minimum version.
        required: u32,
        /// The version in use.
        actual: u32,
    },

    /// A message arrived in a state where pgoutput never sends it (e.g. `Begin` inside a stream
    /// block, a nested `Stream Start`, `Stream Stop` outside a block).
    #[error("{message} is not expected {state}")]
    UnexpectedMessage {
        /// The message that arrived.
        message: &'static str,
        /// The state it arrived in, as a phrase ("inside a stream block").
        state: &'static str,
    },

    /// A change refers to a relation for which no `Relation` message has been seen.
    #[error("relation {oid} is unknown: no Relation message was seen for it")]
    UnknownRelation {
        /// The relation's oid.
        oid: Oid,
    },

    /// A tuple's column count differs from the relation's column list.
    #[error(
        "relation {oid} ({name}): tuple has {tuple_columns} columns, \
         the Relation message lists {relation_columns}"
    )]
    ColumnCountMismatch {
        /// The relation's oid.
        oid: Oid,
        /// `namespace.name` of the relation.
        name: String,
        /// Columns in the cached Relation message.
        relation_columns: usize,
        /// Columns in the tuple.
        tuple_columns: usize,
    },

    /// A value cannot be represented on the wire.
    #[error("cannot encode {message}: {field} {reason}")]
    Unencodable {
        /// The message being encoded.
        message: &'static str,
        /// The field that cannot be written.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },

    /// Text that is not an LSN in PostgreSQL's `X/X` hexadecimal form.
    #[error("invalid LSN {input:?}: expected two hexadecimal numbers of 1 to 8 digits as X/X")]
    InvalidLsn {
        /// The text that was parsed (cut to 64 bytes).
        input: String,
    },
}

/// Renders a tag byte as a character when it is printable ASCII.
fn printable(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", char::from(tag))
    } else {
        "non-printable".to_owned()
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_message_field_and_offset() {
        let e = Error::UnknownTag {
            message: "Update",
            field: "tuple marker",
            offset: 5,
            tag: b'X',
        };
        assert_eq!(
            e.to_string(),
            "Update: unknown tuple marker 0x58 ('X') at offset 5"
        );
        let e = Error::UnknownTag {
            message: "logical message",
            field: "message tag",
            offset: 0,
            tag: 0,
        };
        assert!(e.to_string().contains("0x00 (non-printable)"));
    }
}
