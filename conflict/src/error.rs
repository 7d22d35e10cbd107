//! The crate's one error type.
//!
//! Every fallible operation returns [`Error`]; nothing in this crate panics on bad input. Errors
//! are values the caller can log or quarantine: they carry the offending input.

use crate::dot::Dot;
use crate::field::FieldPath;
use crate::hlc::Hlc;
use crate::region::RegionId;

/// Everything that can go wrong in `conflict`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A region id that is empty, longer than 16 bytes, or uses a byte outside `a-z0-9_-`.
    #[error("invalid region id {0:?}: expected 1 to 16 characters from a-z, 0-9, '_' and '-'")]
    InvalidRegionId(String),

    /// A field path that breaks the syntax documented on [`FieldPath`].
    #[error("invalid field path {path:?}: {reason}")]
    InvalidFieldPath {
        /// The rejected text.
        path: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// The existence field was used where only ordinary fields are allowed (write it with
    /// `delete`, `resolve_existence`, or let `local_write` create the entity).
    #[error("field {0} is the existence field; it cannot be written as an ordinary field")]
    ReservedField(FieldPath),

    /// A region's counter for one entity reached `u64::MAX`.
    #[error("counter of region {0} is exhausted")]
    CounterOverflow(RegionId),

    /// A dot with counter 0 (counter 0 means "no write" and can name none).
    #[error("dot {0} has counter 0, which names no write")]
    ZeroDot(Dot),

    /// A wall time that does not fit the 48-bit wall part of an [`Hlc`].
    #[error("wall time {wall_ms} ms does not fit the 48-bit wall part of an hlc")]
    WallClockOutOfRange {
        /// The rejected wall time, milliseconds since the Unix epoch.
        wall_ms: u64,
    },

    /// No hlc is greater than this one.
    #[error("no hlc is greater than {0}")]
    HlcExhausted(Hlc),

    /// An hlc that does not fit a PostgreSQL `bigint` (or a negative `bigint`).
    #[error("hlc {0} does not fit a non-negative PostgreSQL bigint")]
    HlcOutOfBigintRange(i128),

    /// A local write whose hlc is not greater than every hlc the entity already holds.
    #[error("hlc {given} is not after {max}, the greatest hlc the entity holds")]
    StaleHlc {
        /// The hlc the caller passed.
        given: Hlc,
        /// The greatest hlc stored in the entity.
        max: Hlc,
    },

    /// A local write that changes nothing.
    #[error("a write must change at least one field")]
    EmptyWrite,

    /// Two different versions of one field carry the same dot: a region reused a counter (for
    /// example after a restore from backup). The input must be quarantined, not merged.
    #[error("dot {dot} names two different versions of field {field}")]
    DotReused {
        /// The field on which the two versions met.
        field: FieldPath,
        /// The reused dot.
        dot: Dot,
    },

    /// A state whose clock does not cover one of its own versions.
    #[error("dot {dot} of field {field} is not covered by the entity clock")]
    DotNotCovered {
        /// The field whose version is uncovered.
        field: FieldPath,
        /// Its dot.
        dot: Dot,
    },

    /// A natural-key rename that cannot fit the key's length limit.
    #[error("a renamed key cannot fit in {max_len} characters")]
    KeyTooLong {
        /// The limit the caller gave.
        max_len: usize,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
