//! The crate's one error type, with the classification an operator (and a retry loop) needs.
//!
//! Server errors are parsed into [`DbError`] (SQLSTATE, message, detail, hint). The replication
//! slot's fate is typed, because each calls for a different action:
//!
//! | variant | SQLSTATE | typical message | action |
//! |---|---|---|---|
//! | [`Error::SlotMissing`] | 42704 | `replication slot "x" does not exist` | recreate the slot and resynchronise |
//! | [`Error::SlotInvalidated`] | 55000 | `can no longer get changes from replication slot "x"` | the slot lost WAL: recreate and resynchronise |
//! | [`Error::SlotInUse`] | 55006 | `replication slot "x" is active for PID n` | retry later (often our own previous connection, not yet reaped) |
//! | [`Error::SlotAlreadyExists`] | 42710 | `replication slot "x" already exists` | use it, or pick another name |
//!
//! [`Error::is_retryable`] says whether reconnecting and trying again can help: I/O errors, a
//! closed connection, timeouts, a slot in use, and server errors of the transient classes
//! (connection exceptions, insufficient resources, operator intervention) are retryable.

use std::fmt;
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorResponseBody;

/// Everything that can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection settings are invalid (a bad port, an unknown option, no user).
    #[error("invalid connection settings: {0}")]
    Config(String),

    /// A feature this client does not have yet (TLS, Unix sockets, multiple hosts, ...).
    #[error("{0} is not supported yet")]
    Unsupported(String),

    /// An argument cannot be sent (an invalid slot name, a NUL byte in a query).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Reading or writing the socket failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the client was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The server closed the connection (end of file on the socket).
    #[error("the server closed the connection while {context}")]
    ConnectionClosed {
        /// What the client was doing.
        context: &'static str,
    },

    /// A deadline passed (connect timeout, receive timeout).
    #[error("timed out after {after:?} while {context}")]
    Timeout {
        /// What the client was waiting for.
        context: &'static str,
        /// The bound that passed.
        after: Duration,
    },

    /// Authentication could not proceed on the client side (no password configured, a method
    /// this client does not speak, a server signature that does not verify). A rejected
    /// password is a [`Error::Server`] error with SQLSTATE 28P01.
    #[error("authentication failed: {0}")]
    Auth(String),

    /// The replication slot does not exist (SQLSTATE 42704).
    #[error("replication slot {slot:?} does not exist: {error}")]
    SlotMissing {
        /// The slot's name.
        slot: String,
        /// The server's error.
        error: Box<DbError>,
    },

    /// The slot was invalidated (it lost required WAL, e.g. past `max_slot_wal_keep_size`):
    /// SQLSTATE 55000 "can no longer get changes from replication slot".
    #[error("replication slot {slot:?} was invalidated: {error}")]
    SlotInvalidated {
        /// The slot's name.
        slot: String,
        /// The server's error.
        error: Box<DbError>,
    },

    /// Another process streams from the slot (SQLSTATE 55006). Retryable: after a crash it is
    /// usually our own previous walsender, which the server ends within `wal_sender_timeout`.
    #[error("replication slot {slot:?} is in use by another process: {error}")]
    SlotInUse {
        /// The slot's name.
        slot: String,
        /// The server's error.
        error: Box<DbError>,
    },

    /// `CREATE_REPLICATION_SLOT` for a name that exists (SQLSTATE 42710).
    #[error("replication slot {slot:?} already exists: {error}")]
    SlotAlreadyExists {
        /// The slot's name.
        slot: String,
        /// The server's error.
        error: Box<DbError>,
    },

    /// Any other error the server reported.
    #[error("server error: {0}")]
    Server(Box<DbError>),

    /// TLS could not be set up as `sslmode` requires: the server refuses TLS, its certificate
    /// does not verify, or the trusted roots cannot be read.
    #[error("TLS: {0}")]
    Tls(String),

    /// The server sent something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(String),

    /// A CopyData body in the replication stream did not decode.
    #[error("undecodable replication message: {0}")]
    Decode(#[from] pgoutput::Error),

    /// This connection can no longer be used: an earlier error ended the stream, or a command
    /// was cancelled half-way. Reconnect.
    #[error("the connection is unusable: {0}")]
    Broken(&'static str),
}

impl Error {
    /// Whether reconnecting and retrying (with backoff) can succeed without operator action.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { .. }
            | Error::ConnectionClosed { .. }
            | Error::Timeout { .. }
            | Error::SlotInUse { .. }
            | Error::Broken(_) => true,
            Error::Server(db) => db.is_transient(),
            Error::Config(_)
            | Error::Unsupported(_)
            | Error::InvalidArgument(_)
            | Error::Auth(_)
            | Error::SlotMissing { .. }
            | Error::SlotInvalidated { .. }
            | Error::SlotAlreadyExists { .. }
            | Error::Protocol(_)
            | Error::Tls(_)
            | Error::Decode(_) => false,
        }
    }

    /// The server's error, when the server reported one.
    pub fn db_error(&self) -> Option<&DbError> {
        match self {
            Error::SlotMissing { error, .. }
            | Error::SlotInvalidated { error, .. }
            | Error::SlotInUse { error, .. }
            | Error::SlotAlreadyExists { error, .. }
            | Error::Server(error) => Some(error),
            _ => None,
        }
    }

    /// The SQLSTATE, when the server reported an error.
    pub fn sqlstate(&self) -> Option<&str> {
        self.db_error().map(|e| e.code.as_str())
    }

    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { context, source }
    }

    /// Types a server error about slot `slot` (or, when `None`, the slot the message names).
    pub(crate) fn from_db(error: DbError, slot: Option<&str>) -> Error {
        let about_slot = error.message.contains("replication slot");
        let invalidated = error
            .message
            .contains("can no longer get changes from replication slot");
        let slot = slot
            .map(str::to_owned)
            .or_else(|| first_quoted(&error.message))
            .unwrap_or_default();
        let code = error.code.clone();
        let error = Box::new(error);
        match code.as_str() {
            "42704" if about_slot => Error::SlotMissing { slot, error },
            "55000" if invalidated => Error::SlotInvalidated { slot, error },
            "55006" if about_slot => Error::SlotInUse { slot, error },
            "42710" if about_slot => Error::SlotAlreadyExists { slot, error },
            _ => Error::Server(error),
        }
    }
}

/// The first `"..."`-quoted part of a message (the server quotes object names so).
fn first_quoted(message: &str) -> Option<String> {
    let (_, rest) = message.split_once('"')?;
    let (name, _) = rest.split_once('"')?;
    Some(name.to_owned())
}

/// An error (or notice) reported by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DbError {
    /// `ERROR`, `FATAL` or `PANIC` (non-localised where the server sends it).
    pub severity: String,
    /// The SQLSTATE, five characters.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The optional detail.
    pub detail: Option<String>,
    /// The optional hint.
    pub hint: Option<String>,
}

impl DbError {
    /// Parses an ErrorResponse or NoticeResponse body.
    pub(crate) fn parse(body: &ErrorResponseBody) -> Result<DbError, Error> {
        let mut severity = None;
        let mut localized_severity = None;
        let mut code = None;
        let mut message = None;
        let mut detail = None;
        let mut hint = None;
        let mut fields = body.fields();
        while let Some(field) = fields
            .next()
            .map_err(|e| Error::Protocol(format!("malformed ErrorResponse: {e}")))?
        {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => severity = Some(value),
                b'S' => localized_severity = Some(value),
                b'C' => code = Some(value),
                b'M' => message = Some(value),
                b'D' => detail = Some(value),
                b'H' => hint = Some(value),
                _ => {}
            }
        }
        Ok(DbError {
            severity: severity
                .or(localized_severity)
                .unwrap_or_else(|| "ERROR".to_owned()),
            code: code.unwrap_or_else(|| "XX000".to_owned()),
            message: message.unwrap_or_default(),
            detail,
            hint,
        })
    }

    /// Whether the error is of a class that can pass by itself: connection exceptions (08),
    /// insufficient resources (53, e.g. too many connections), operator intervention (57:
    /// shutdown, crash, "cannot connect now"), and serialization failure or deadlock (40001,
    /// 40P01).
    pub fn is_transient(&self) -> bool {
        let class = self.code.get(..2).unwrap_or("");
        matches!(class, "08" | "53" | "57") || matches!(self.code.as_str(), "40001" | "40P01")
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (DETAIL: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (HINT: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres_protocol::message::backend::Message;

    /// An ErrorResponse as the server frames it.
    fn error_response(fields: &[(u8, &str)]) -> ErrorResponseBody {
        let mut body = Vec::new();
        for (kind, value) in fields {
            body.push(*kind);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut frame = BytesMut::new();
        frame.extend_from_slice(b"E");
        frame.extend_from_slice(&(u32::try_from(body.len()).unwrap() + 4).to_be_bytes());
        frame.extend_from_slice(&body);
        match Message::parse(&mut frame).unwrap().unwrap() {
            Message::ErrorResponse(body) => body,
            _ => panic!("not an ErrorResponse"),
        }
    }

    fn db(code: &str, message: &str) -> DbError {
        DbError::parse(&error_response(&[
            (b'S', "FEHLER"),
            (b'V', "ERROR"),
            (b'C', code),
            (b'M', message),
            (b'D', "some detail"),
            (b'H', "some hint"),
            (b'F', "slot.c"),
        ]))
        .unwrap()
    }

    #[test]
    fn parses_all_the_fields_an_operator_needs() {
        let e = db("42704", "replication slot \"s\" does not exist");
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.code, "42704");
        assert_eq!(e.detail.as_deref(), Some("some detail"));
        assert_eq!(e.hint.as_deref(), Some("some hint"));
        assert_eq!(
            e.to_string(),
            "ERROR 42704: replication slot \"s\" does not exist (DETAIL: some detail) (HINT: some hint)"
        );
    }

    #[test]
    fn classifies_slot_errors() {
        let missing = Error::from_db(db("42704", "replication slot \"s1\" does not exist"), None);
        assert!(matches!(&missing, Error::SlotMissing { slot, .. } if slot == "s1"));
        assert!(!missing.is_retryable());
        assert_eq!(missing.sqlstate(), Some("42704"));

        let invalidated = Error::from_db(
            db(
                "55000",
                "can no longer get changes from replication slot \"s2\"",
            ),
            Some("s2"),
        );
        assert!(matches!(&invalidated, Error::SlotInvalidated { slot, .. } if slot == "s2"));
        assert!(!invalidated.is_retryable());

        let in_use = Error::from_db(
            db("55006", "replication slot \"s3\" is active for PID 7"),
            None,
        );
        assert!(matches!(&in_use, Error::SlotInUse { slot, .. } if slot == "s3"));
        assert!(in_use.is_retryable());

        let exists = Error::from_db(db("42710", "replication slot \"s4\" already exists"), None);
        assert!(matches!(exists, Error::SlotAlreadyExists { .. }));

        // The same codes about other objects stay generic.
        let publication =
            Error::from_db(db("42704", "publication \"p\" does not exist"), Some("s"));
        assert!(matches!(publication, Error::Server(_)));
        let other_55000 = Error::from_db(
            db(
                "55000",
                "replication slot \"s\" was not created in this database",
            ),
            Some("s"),
        );
        assert!(matches!(other_55000, Error::Server(_)));
    }

    #[test]
    fn retryability() {
        assert!(Error::from_db(db("57P01", "terminating connection"), None).is_retryable());
        assert!(Error::from_db(db("53300", "too many connections"), None).is_retryable());
        assert!(
            !Error::from_db(db("28P01", "password authentication failed"), None).is_retryable()
        );
        assert!(Error::ConnectionClosed { context: "x" }.is_retryable());
        assert!(Error::io("x")(std::io::ErrorKind::ConnectionReset.into()).is_retryable());
        assert!(!Error::Unsupported("TLS".into()).is_retryable());
    }
}
