//! The wire: a TCP connection with its read and write buffers, message framing, startup and
//! authentication, and the simple-query exchange.
//!
//! Cancel safety comes from keeping all state in the struct: [`PgConn::fill`] reads with
//! `read_buf` (cancel-safe: when cancelled, no bytes were taken from the socket) into
//! `read_buf`, and frames are cut from that buffer only once complete; outgoing messages are
//! encoded into `write_buf` before the first await and [`PgConn::flush`] advances it after each
//! completed `write`, so a cancelled flush leaves the unsent rest for the next one.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{DataRowBody, Message, RowDescriptionBody};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::{self, MaybeTls};
use crate::{Config, DbError, Error};

/// PostgreSQL's largest message is 1 GB of payload; allow the headers around it.
const MAX_FRAME_LEN: usize = (1 << 30) + 1024;
/// Read at least this much free space per read.
const READ_CHUNK: usize = 64 * 1024;
/// The `W` tag, which postgres-protocol's parser does not know.
const COPY_BOTH_RESPONSE_TAG: u8 = b'W';
const COPY_DATA_TAG: u8 = b'd';

/// The oldest server this client speaks to (the `CREATE_REPLICATION_SLOT ... (SNAPSHOT ...)`
/// syntax is PostgreSQL 15's).
const MIN_SERVER_MAJOR: u32 = 15;

/// One complete backend message.
pub(crate) enum Frame {
    /// `W`: the server entered CopyBoth mode (after `START_REPLICATION`).
    CopyBothResponse,
    /// `d`: a CopyData body (zero-copy slice of the read buffer).
    CopyData(Bytes),
    /// Anything else, parsed by postgres-protocol.
    Message(Message),
}

/// Cuts one complete frame from the front of `buf`, or returns `None` (and reserves room) when
/// the frame is not complete yet.
pub(crate) fn parse_frame(buf: &mut BytesMut) -> Result<Option<Frame>, Error> {
    let Some(&[tag, l0, l1, l2, l3]) = buf.get(..5) else {
        return Ok(None);
    };
    let len = usize::try_from(u32::from_be_bytes([l0, l1, l2, l3]))
        .map_err(|_| Error::Protocol("message length does not fit in memory".into()))?;
    if !(4..=MAX_FRAME_LEN).contains(&len) {
        return Err(Error::Protocol(format!(
            "invalid length {len} of a message with tag {:?}",
            char::from(tag)
        )));
    }
    let total = len + 1;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    match tag {
        COPY_BOTH_RESPONSE_TAG => {
            // Format and per-column formats: meaningless for replication, skipped.
            buf.advance(total);
            Ok(Some(Frame::CopyBothResponse))
        }
        COPY_DATA_TAG => {
            let mut frame = buf.split_to(total).freeze();
            frame.advance(5);
            Ok(Some(Frame::CopyData(frame)))
        }
        _ => match Message::parse(buf) {
            Ok(Some(message)) => Ok(Some(Frame::Message(message))),
            Ok(None) => Err(Error::Protocol(
                "a complete message did not parse".to_owned(),
            )),
            Err(e) => Err(Error::Protocol(format!(
                "unparsable message with tag {:?}: {e}",
                char::from(tag)
            ))),
        },
    }
}

/// A backend message's name, for errors.
pub(crate) fn message_name(message: &Message) -> &'static str {
    match message {
        Message::AuthenticationOk => "AuthenticationOk",
        Message::BackendKeyData(_) => "BackendKeyData",
        Message::BindComplete => "BindComplete",
        Message::CloseComplete => "CloseComplete",
        Message::CommandComplete(_) => "CommandComplete",
        Message::CopyData(_) => "CopyData",
        Message::CopyDone => "CopyDone",
        Message::CopyInResponse(_) => "CopyInResponse",
        Message::CopyOutResponse(_) => "CopyOutResponse",
        Message::DataRow(_) => "DataRow",
        Message::EmptyQueryResponse => "EmptyQueryResponse",
        Message::ErrorResponse(_) => "ErrorResponse",
        Message::NoData => "NoData",
        Message::NoticeResponse(_) => "NoticeResponse",
        Message::NotificationResponse(_) => "NotificationResponse",
        Message::ParameterDescription(_) => "ParameterDescription",
        Message::ParameterStatus(_) => "ParameterStatus",
        Message::ParseComplete => "ParseComplete",
        Message::PortalSuspended => "PortalSuspended",
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::RowDescription(_) => "RowDescription",
        _ => "an authentication message",
    }
}

pub(crate) fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::CopyBothResponse => "CopyBothResponse",
        Frame::CopyData(_) => "CopyData",
        Frame::Message(message) => message_name(message),
    }
}

/// One row of a simple-query result: text values by column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleRow {
    columns: Arc<[String]>,
    values: Vec<Option<String>>,
}

impl SimpleRow {
    /// The column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The value of the column named `name` (`None` if NULL or no such column).
    pub fn get(&self, name: &str) -> Option<&str> {
        let index = self.columns.iter().position(|c| c == name)?;
        self.get_index(index)
    }

    /// The value of column `index` (`None` if NULL or out of range).
    pub fn get_index(&self, index: usize) -> Option<&str> {
        self.values.get(index)?.as_deref()
    }

    /// The value of `name`, or a protocol error naming what was being read.
    pub(crate) fn required(&self, name: &str, what: &str) -> Result<&str, Error> {
        self.get(name)
            .ok_or_else(|| Error::Protocol(format!("{what}: no value in column {name:?}")))
    }
}

/// A connection in command mode or in CopyBoth mode; the two public types wrap it.
pub(crate) struct PgConn {
    stream: MaybeTls,
    pub(crate) read_buf: BytesMut,
    write_buf: BytesMut,
    parameters: BTreeMap<String, String>,
    backend_pid: Option<i32>,
    /// Set while a command is in flight; still set after an await was cancelled half-way, when
    /// the exchange's state is unknown.
    broken: Option<&'static str>,
    /// Whether START_REPLICATION ran on this connection.
    pub(crate) streamed: bool,
}

impl std::fmt::Debug for PgConn {
    /// The peer, the backend and the buffer sizes; never buffered bytes (row data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("peer", &self.stream.peer_addr().ok())
            .field("tls", &self.is_encrypted())
            .field("backend_pid", &self.backend_pid)
            .field("server_version", &self.parameter("server_version"))
            .field("buffered_in", &self.read_buf.len())
            .field("buffered_out", &self.write_buf.len())
            .field("broken", &self.broken)
            .finish()
    }
}

impl PgConn {
    /// Connects, starts a logical walsender session (`replication=database`) and authenticates.
    pub(crate) async fn connect(config: &Config) -> Result<PgConn, Error> {
        match config.connect_timeout() {
            Some(after) => tokio::time::timeout(after, Self::connect_inner(config))
                .await
                .map_err(|_| Error::Timeout {
                    context: "connecting and authenticating",
                    after,
                })?,
            None => Self::connect_inner(config).await,
        }
    }

    async fn connect_inner(config: &Config) -> Result<PgConn, Error> {
        let stream = TcpStream::connect((config.host(), config.port()))
            .await
            .map_err(Error::io("connecting"))?;
        stream
            .set_nodelay(true)
            .map_err(Error::io("setting TCP_NODELAY"))?;
        let stream = tls::negotiate(stream, config.host(), config.tls()).await?;
        let mut conn = PgConn {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::new(),
            parameters: BTreeMap::new(),
            backend_pid: None,
            broken: None,
            streamed: false,
        };
        let mut params = vec![
            ("user", config.user()),
            ("database", config.dbname()),
            ("replication", "database"),
            ("client_encoding", "UTF8"),
        ];
        if let Some(name) = config.application_name() {
            params.push(("application_name", name));
        }
        if let Some(options) = config.options() {
            params.push(("options", options));
        }
        frontend::startup_message(params, &mut conn.write_buf)
            .map_err(|e| Error::InvalidArgument(format!("startup parameters: {e}")))?;
        conn.flush().await?;
        conn.authenticate(config).await?;
        conn.await_ready().await?;
        conn.check_server_version()?;
        Ok(conn)
    }

    /// Whether the connection is encrypted (TLS was negotiated).
    pub(crate) fn is_encrypted(&self) -> bool {
        matches!(self.stream, MaybeTls::Tls(_))
    }

    /// A connection over an already-open socket, past startup (for tests with a fake peer).
    #[cfg(test)]
    pub(crate) fn from_stream(stream: TcpStream) -> PgConn {
        PgConn {
            stream: MaybeTls::Plain(stream),
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            parameters: BTreeMap::new(),
            backend_pid: None,
            broken: None,
            streamed: true,
        }
    }

    async fn authenticate(&mut self, config: &Config) -> Result<(), Error> {
        let password = || {
            config.password().map(|p| p.expose()).ok_or_else(|| {
                Error::Auth("the server asks for a password and none is configured".into())
            })
        };
        loop {
            match self.read_auth_message().await? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    if !config.cleartext_password_allowed() {
                        return Err(Error::Auth(
                            "the server asks for a cleartext password, which this connection \
                             does not allow (see Config::with_cleartext_password_allowed)"
                                .into(),
                        ));
                    }
                    frontend::password_message(password()?.as_bytes(), &mut self.write_buf)
                        .map_err(|e| Error::InvalidArgument(format!("password: {e}")))?;
                    self.flush().await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(
                        config.user().as_bytes(),
                        password()?.as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.write_buf)
                        .map_err(|e| Error::InvalidArgument(format!("password: {e}")))?;
                    self.flush().await?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut offered = Vec::new();
                    let mut mechanisms = body.mechanisms();
                    while let Some(mechanism) = mechanisms
                        .next()
                        .map_err(|e| Error::Protocol(format!("SASL mechanisms: {e}")))?
                    {
                        offered.push(mechanism.to_owned());
                    }
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(Error::Unsupported(format!(
                            "SASL authentication with {offered:?} (this client speaks \
                             SCRAM-SHA-256 without channel binding)"
                        )));
                    }
                    self.scram(password()?).await?;
                }
                Message::AuthenticationKerberosV5 => {
                    return Err(Error::Unsupported("Kerberos V5 authentication".into()))
                }
                Message::AuthenticationScmCredential => {
                    return Err(Error::Unsupported("SCM credential authentication".into()))
                }
                Message::AuthenticationGss | Message::AuthenticationGssContinue(_) => {
                    return Err(Error::Unsupported("GSSAPI authentication".into()))
                }
                Message::AuthenticationSspi => {
                    return Err(Error::Unsupported("SSPI authentication".into()))
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected {} during authentication",
                        message_name(&other)
                    )))
                }
            }
        }
    }

    /// SCRAM-SHA-256 (RFC 7677) without channel binding: there is no TLS channel to bind to.
    /// The server's final signature is verified, so a server that does not know the password
    /// cannot pretend to.
    async fn scram(&mut self, password: &str) -> Result<(), Error> {
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut self.write_buf)
            .map_err(|e| Error::Protocol(format!("SASL initial response: {e}")))?;
        self.flush().await?;
        let Message::AuthenticationSaslContinue(body) = self.read_auth_message().await? else {
            return Err(Error::Protocol(
                "expected AuthenticationSASLContinue".into(),
            ));
        };
        scram
            .update(body.data())
            .map_err(|e| Error::Auth(format!("SCRAM server-first message: {e}")))?;
        frontend::sasl_response(scram.message(), &mut self.write_buf)
            .map_err(|e| Error::Protocol(format!("SASL response: {e}")))?;
        self.flush().await?;
        let Message::AuthenticationSaslFinal(body) = self.read_auth_message().await? else {
            return Err(Error::Protocol("expected AuthenticationSASLFinal".into()));
        };
        scram
            .finish(body.data())
            .map_err(|e| Error::Auth(format!("the server's SCRAM signature: {e}")))
    }

    /// The next authentication-phase message; an ErrorResponse becomes the error.
    async fn read_auth_message(&mut self) -> Result<Message, Error> {
        loop {
            match self.read_frame("authenticating").await? {
                Frame::Message(Message::ErrorResponse(body)) => {
                    return Err(Error::Server(Box::new(DbError::parse(&body)?)))
                }
                Frame::Message(message) => {
                    if !self.handle_async(&message) {
                        return Ok(message);
                    }
                }
                _ => {
                    return Err(Error::Protocol(
                        "unexpected copy message while authenticating".into(),
                    ))
                }
            }
        }
    }

    /// After AuthenticationOk: parameter statuses and the backend key, until ReadyForQuery.
    async fn await_ready(&mut self) -> Result<(), Error> {
        loop {
            match self.read_frame("starting the session").await? {
                Frame::Message(Message::ReadyForQuery(_)) => return Ok(()),
                Frame::Message(Message::BackendKeyData(body)) => {
                    self.backend_pid = Some(body.process_id());
                }
                Frame::Message(Message::ErrorResponse(body)) => {
                    return Err(Error::Server(Box::new(DbError::parse(&body)?)))
                }
                Frame::Message(message) if self.handle_async(&message) => {}
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected {} while starting the session",
                        frame_name(&other)
                    )))
                }
            }
        }
    }

    fn check_server_version(&self) -> Result<(), Error> {
        let version = self.parameter("server_version").unwrap_or("");
        let major: Option<u32> = version
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|m| m.parse().ok());
        match major {
            Some(major) if major >= MIN_SERVER_MAJOR => Ok(()),
            _ => Err(Error::Unsupported(format!(
                "PostgreSQL server version {version:?} (this client needs {MIN_SERVER_MAJOR} or later)"
            ))),
        }
    }

    /// Consumes the messages the server may send at any time. Returns whether it did.
    pub(crate) fn handle_async(&mut self, message: &Message) -> bool {
        match message {
            Message::ParameterStatus(body) => {
                if let (Ok(name), Ok(value)) = (body.name(), body.value()) {
                    self.parameters.insert(name.to_owned(), value.to_owned());
                }
                true
            }
            Message::NoticeResponse(body) => {
                let mut fields = body.fields();
                let mut text = String::new();
                while let Ok(Some(field)) = fields.next() {
                    if matches!(field.type_(), b'V' | b'C' | b'M' | b'D') {
                        if !text.is_empty() {
                            text.push_str(": ");
                        }
                        text.push_str(&String::from_utf8_lossy(field.value_bytes()));
                    }
                }
                tracing::info!(notice = %text, "postgres notice");
                true
            }
            Message::NotificationResponse(_) => true,
            _ => false,
        }
    }

    /// A run-time parameter the server reported (`server_version`, `integer_datetimes`, ...).
    pub(crate) fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    pub(crate) fn backend_pid(&self) -> Option<i32> {
        self.backend_pid
    }

    /// Reads more bytes from the socket into `read_buf`. Cancel-safe.
    pub(crate) async fn fill(&mut self, context: &'static str) -> Result<(), Error> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
            self.read_buf.reserve(READ_CHUNK);
        }
        let n = self
            .stream
            .read_buf(&mut self.read_buf)
            .await
            .map_err(Error::io(context))?;
        if n == 0 {
            return Err(Error::ConnectionClosed { context });
        }
        Ok(())
    }

    /// The next complete frame, reading as needed. Cancel-safe (partial frames stay buffered).
    pub(crate) async fn read_frame(&mut self, context: &'static str) -> Result<Frame, Error> {
        loop {
            if let Some(frame) = parse_frame(&mut self.read_buf)? {
                return Ok(frame);
            }
            self.fill(context).await?;
        }
    }

    /// Encodes a message into the write buffer (nothing is sent until [`PgConn::flush`]).
    pub(crate) fn queue_copy_data(&mut self, body: Bytes) -> Result<(), Error> {
        frontend::CopyData::new(body)
            .map_err(|e| Error::InvalidArgument(format!("CopyData: {e}")))?
            .write(&mut self.write_buf);
        Ok(())
    }

    pub(crate) fn queue_copy_done(&mut self) {
        frontend::copy_done(&mut self.write_buf);
    }

    /// Sends everything queued. Cancel-safe: what was not written stays queued.
    pub(crate) async fn flush(&mut self) -> Result<(), Error> {
        while !self.write_buf.is_empty() {
            let n = self
                .stream
                .write(&self.write_buf)
                .await
                .map_err(Error::io("writing"))?;
            if n == 0 {
                return Err(Error::ConnectionClosed { context: "writing" });
            }
            self.write_buf.advance(n);
        }
        // TLS holds records back until flushed; a plain socket has nothing to flush.
        self.stream.flush().await.map_err(Error::io("writing"))
    }

    /// Fails if an earlier command was abandoned half-way.
    pub(crate) fn check_usable(&self) -> Result<(), Error> {
        match self.broken {
            Some(reason) => Err(Error::Broken(reason)),
            None => Ok(()),
        }
    }

    /// Runs one simple query and collects its rows. `slot` names the slot the command is about,
    /// for error classification. When `copy_both` is set the command must answer with
    /// CopyBothResponse (START_REPLICATION) and rows are not expected.
    pub(crate) async fn query(
        &mut self,
        sql: &str,
        slot: Option<&str>,
        copy_both: bool,
    ) -> Result<Vec<SimpleRow>, Error> {
        self.check_usable()?;
        frontend::query(sql, &mut self.write_buf)
            .map_err(|e| Error::InvalidArgument(format!("query: {e}")))?;
        self.broken = Some("a command was cancelled before it completed");
        self.flush().await?;
        let mut rows = Vec::new();
        let mut columns: Arc<[String]> = Arc::from(Vec::new());
        let mut error = None;
        loop {
            match self.read_frame("running a command").await? {
                Frame::CopyBothResponse if copy_both && error.is_none() => {
                    self.broken = None;
                    return Ok(rows);
                }
                Frame::Message(Message::RowDescription(body)) => columns = column_names(&body)?,
                Frame::Message(Message::DataRow(body)) => rows.push(SimpleRow {
                    columns: columns.clone(),
                    values: row_values(&body)?,
                }),
                Frame::Message(Message::CommandComplete(_) | Message::EmptyQueryResponse) => {}
                Frame::Message(Message::ErrorResponse(body)) => {
                    error = Some(DbError::parse(&body)?);
                }
                Frame::Message(Message::ReadyForQuery(_)) => {
                    self.broken = None;
                    return match error {
                        Some(db) => Err(Error::from_db(db, slot)),
                        None if copy_both => Err(Error::Protocol(
                            "the command completed without entering CopyBoth mode".into(),
                        )),
                        None => Ok(rows),
                    };
                }
                Frame::Message(message) if self.handle_async(&message) => {}
                other => {
                    self.broken = Some("the server answered a command with an unexpected message");
                    return Err(Error::Protocol(format!(
                        "unexpected {} in answer to a command (COPY and START_REPLICATION \
                         are not supported through simple_query)",
                        frame_name(&other)
                    )));
                }
            }
        }
    }

    /// Marks the connection unusable (the stream failed or ended).
    pub(crate) fn set_broken(&mut self, reason: &'static str) {
        self.broken = Some(reason);
    }

    /// Clears the mark after a clean end of CopyBoth mode.
    pub(crate) fn set_usable(&mut self) {
        self.broken = None;
    }
}

fn column_names(body: &RowDescriptionBody) -> Result<Arc<[String]>, Error> {
    let mut names = Vec::new();
    let mut fields = body.fields();
    while let Some(field) = fields
        .next()
        .map_err(|e| Error::Protocol(format!("RowDescription: {e}")))?
    {
        names.push(field.name().to_owned());
    }
    Ok(Arc::from(names))
}

fn row_values(body: &DataRowBody) -> Result<Vec<Option<String>>, Error> {
    let buffer = body.buffer();
    let mut values = Vec::new();
    let mut ranges = body.ranges();
    while let Some(range) = ranges
        .next()
        .map_err(|e| Error::Protocol(format!("DataRow: {e}")))?
    {
        let value = match range {
            None => None,
            Some(range) => {
                let bytes = buffer
                    .get(range)
                    .ok_or_else(|| Error::Protocol("DataRow: value out of bounds".into()))?;
                Some(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| Error::Protocol("DataRow: a value is not UTF-8".into()))?,
                )
            }
        };
        values.push(value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(u32::try_from(body.len()).unwrap() + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn cuts_frames_only_when_complete() {
        let mut wire = frame(b'W', &[0, 0, 0]);
        wire.extend(frame(b'd', b"k0123456789abcdef\x01"));
        wire.extend(frame(b'Z', b"I"));
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        // Feed one byte at a time: every prefix is either incomplete or yields whole frames.
        for byte in wire {
            buf.extend_from_slice(&[byte]);
            while let Some(frame) = parse_frame(&mut buf).unwrap() {
                got.push(frame);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got.len(), 3);
        assert!(matches!(got[0], Frame::CopyBothResponse));
        assert!(matches!(&got[1], Frame::CopyData(b) if &b[..] == b"k0123456789abcdef\x01"));
        assert!(matches!(&got[2], Frame::Message(Message::ReadyForQuery(_))));
    }

    #[test]
    fn refuses_bad_lengths_and_tags() {
        let mut buf = BytesMut::from(&b"d\0\0\0\x02"[..]);
        assert!(matches!(parse_frame(&mut buf), Err(Error::Protocol(_))));
        let mut buf = BytesMut::from(&b"d\x7f\xff\xff\xff"[..]);
        assert!(matches!(parse_frame(&mut buf), Err(Error::Protocol(_))));
        let mut buf = BytesMut::from(&frame(b'?', b"")[..]);
        assert!(matches!(parse_frame(&mut buf), Err(Error::Protocol(_))));
    }
}
