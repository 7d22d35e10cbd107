//! Errors of the canonical crate.

/// Why a JSON column could not be translated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The column's text is not JSON. Superset only writes JSON there, so this is corrupt data.
    #[error("column `{column}` does not hold JSON: {source}")]
    NotJson {
        column: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The caller's translator refused an id (e.g. a uuid not present in this region yet: park).
    #[error("cannot translate {kind:?} id {id}: {reason}")]
    Untranslatable {
        kind: crate::RefKind,
        id: String,
        reason: String,
    },
}

/// The canonical crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
