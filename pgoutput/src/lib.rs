//! A pure decoder for PostgreSQL's logical replication stream: the pgoutput message format
//! (protocol versions 1–3, PostgreSQL 15) and the streaming-replication CopyData framing around
//! it.
//!
//! # Contract
//!
//! * Pure: no I/O, no clock, no async. Callers own the connection; this crate turns bytes into
//!   values and back.
//! * Total: every decoder returns a value or an [`Error`] naming the message, field and offset;
//!   no input panics (checked by proptest and a cargo-fuzz target in `fuzz/`).
//! * Exact: PostgreSQL 15's layouts are decoded exactly. Unknown tags, undefined flag bits and
//!   trailing bytes (e.g. PostgreSQL 16's longer `Stream Abort`) are errors, so a misnegotiated
//!   protocol version fails loudly. Consequently decoding is canonical: an accepted message
//!   re-encodes to the same bytes.
//! * Zero-copy where cheap: input is `bytes::Bytes`, and column values and XLogData payloads are
//!   slices of it. Identifiers (relation, column, origin names) are owned `String`s.
//!
//! # Use
//!
//! ```
//! use bytes::Bytes;
//! use pgoutput::{LogicalMessage, ProtocolVersion, RelationCache, ServerCopyMessage, StreamDecoder};
//!
//! # fn main() -> Result<(), pgoutput::Error> {
//! let mut decoder = StreamDecoder::new(ProtocolVersion::V2);
//! let mut relations = RelationCache::new();
//! # let copy_data_bodies: Vec<Bytes> = vec![];
//! for body in copy_data_bodies {
//!     match ServerCopyMessage::decode(body)? {
//!         ServerCopyMessage::XLogData(x) => {
//!             let message = decoder.decode(x.data)?;
//!             relations.observe(&message);
//!             if let LogicalMessage::Insert(insert) = &message {
//!                 let row = relations.resolve(insert.relation, &insert.new)?;
//!                 for column in &row.columns {
//!                     let _ = (column.name, column.type_oid, column.value);
//!                 }
//!             }
//!         }
//!         ServerCopyMessage::PrimaryKeepalive(k) if k.reply_requested => {
//!             // Send StandbyStatusUpdate::acknowledging(last_flushed, now, false).encode().
//!         }
//!         ServerCopyMessage::PrimaryKeepalive(_) => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod copy;
mod cursor;
mod decoder;
mod error;
mod lsn;
mod message;
mod oid;
mod relation;
mod relation_cache;
mod timestamp;
mod tuple;
mod writer;
mod xid;

pub use copy::{
    ClientCopyMessage, HotStandbyFeedback, PrimaryKeepalive, ServerCopyMessage,
    StandbyStatusUpdate, XLogData,
};
pub use decoder::StreamDecoder;
pub use error::{Error, Result};
pub use lsn::Lsn;
pub use message::{
    Begin, Commit, CommitPrepared, DecodeContext, DecodingMessage, Delete, Insert, LogicalMessage,
    MessageKind, OldTuple, Origin, PreparedTransaction, ProtocolVersion, RollbackPrepared,
    StreamAbort, StreamCommit, StreamStart, Truncate, TruncateOptions, Type, Update,
};
pub use oid::Oid;
pub use relation::{Relation, RelationColumn, ReplicaIdentity};
pub use relation_cache::{RelationCache, ResolvedColumn, ResolvedTuple};
pub use timestamp::{PgTimestamp, POSTGRES_EPOCH_UNIX_MICROS};
pub use tuple::{ColumnKind, ColumnValue, TupleData};
pub use xid::Xid;
