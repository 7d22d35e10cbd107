//! Why a record could not be encoded or decoded. Every decode error means "quarantine this record
//! and go on"; an encode error means our own model broke the schema, a bug.

/// The envelope crate's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("record too short for single-object encoding ({len} bytes)")]
    TooShort { len: usize },
    #[error("record does not start with the single-object marker C3 01")]
    NotSingleObject,
    #[error("record written with an unknown schema (fingerprint {fingerprint:016x}); upgrade this applier")]
    UnknownSchema { fingerprint: u64 },
    #[error("avro: {0}")]
    Avro(#[from] Box<apache_avro::Error>),
    #[error("{trailing} bytes after the record's datum")]
    TrailingBytes { trailing: usize },
    #[error("field `{field}`: {problem}")]
    Shape {
        field: &'static str,
        problem: String,
    },
    #[error("field `{field}`: {source}")]
    Clock {
        field: &'static str,
        #[source]
        source: conflict::Error,
    },
    #[error("value of `{path}` is not JSON: {source}")]
    ValueJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("embedded schema `{name}` does not parse: {source}")]
    Schema {
        name: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

impl From<apache_avro::Error> for Error {
    fn from(e: apache_avro::Error) -> Self {
        Error::Avro(Box::new(e))
    }
}

/// The envelope crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn shape(field: &'static str, problem: impl Into<String>) -> Error {
    Error::Shape {
        field,
        problem: problem.into(),
    }
}
