//! The connection in CopyBoth mode: server messages in, status updates out.

use std::time::{Duration, SystemTime};

use pgoutput::{Lsn, PgTimestamp, ServerCopyMessage, StandbyStatusUpdate};
use postgres_protocol::message::backend::Message;
use tokio::time::Instant;

use crate::client::{keepalive_interval, ReplicationClient};
use crate::conn::{frame_name, parse_frame, Frame, PgConn};
use crate::{DbError, Error};

/// What [`ReplicationStream::next_event`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationEvent {
    /// A message from the server: XLogData (one pgoutput message in `data`) or a keepalive.
    Message(ServerCopyMessage),
    /// Time to send a status update: the status interval passed since the last one, or the
    /// server asked for a reply (a keepalive with `reply_requested`). Answer with
    /// [`ReplicationStream::send_status`]. Ignored, it comes back one interval later.
    StatusDue,
}

/// The positions last reported to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportedStatus {
    /// Received and written.
    pub written: Lsn,
    /// Durably processed: the slot's `confirmed_flush_lsn` follows this.
    pub flushed: Lsn,
    /// Applied.
    pub applied: Lsn,
}

/// A logical replication stream (after `START_REPLICATION`).
///
/// # Driving it
///
/// One task owns the stream and loops:
///
/// ```no_run
/// # async fn run(mut stream: pgrepl::ReplicationStream) -> Result<(), pgrepl::Error> {
/// use pgoutput::{Lsn, ServerCopyMessage};
/// use pgrepl::ReplicationEvent;
/// let mut durable = Lsn::INVALID; // end_lsn of the last commit made durable downstream
/// loop {
///     match stream.next_event().await? {
///         ReplicationEvent::Message(ServerCopyMessage::XLogData(x)) => {
///             // decode x.data with pgoutput::StreamDecoder; hand it downstream; when a
///             // Commit / StreamCommit is durable downstream, durable = its end_lsn.
///         }
///         ReplicationEvent::Message(ServerCopyMessage::PrimaryKeepalive(_)) => {
///             // A reply, if requested, is due now: the next call returns StatusDue.
///         }
///         ReplicationEvent::StatusDue => stream.send_status(durable, durable, durable, false).await?,
///     }
/// }
/// # }
/// ```
///
/// # Backpressure
///
/// The stream reads from the socket only inside `next_event` / `next_message_before`. Not
/// calling them lets TCP flow control stop the walsender — but keep sending status updates
/// (at [`ReplicationStream::status_interval`]) while paused, or the server ends the connection
/// after `wal_sender_timeout` without a reply. Time spent outside these calls does not count
/// toward the receive timeout.
///
/// # Cancel safety
///
/// `next_event` and `next_message_before` are cancel-safe: partial frames stay in the stream's
/// buffer, no message is lost, so they can sit in a `tokio::select!`. `send_status` queues its
/// update before its first await: once polled, the update is sent, if not by this call then
/// by the next call of any method. `stop` is not cancel-safe (drop the stream instead).
///
/// # Errors
///
/// After any error the stream is finished (later calls return [`Error::Broken`]); reconnect
/// and start again from the last confirmed position. A server-side end of the stream (CopyDone,
/// e.g. at server shutdown) is [`Error::ConnectionClosed`], retryable.
#[derive(Debug)]
pub struct ReplicationStream {
    conn: PgConn,
    slot: String,
    wal_sender_timeout: Duration,
    status_interval: Duration,
    next_status_at: Instant,
    receive_timeout: Option<Duration>,
    /// Time spent waiting inside reads with nothing arriving, since the last bytes arrived.
    idle: Duration,
    reported: ReportedStatus,
}

impl ReplicationStream {
    pub(crate) fn new(conn: PgConn, slot: String, wal_sender_timeout: Duration) -> Self {
        let status_interval = keepalive_interval(wal_sender_timeout);
        ReplicationStream {
            conn,
            slot,
            wal_sender_timeout,
            status_interval,
            next_status_at: Instant::now() + status_interval,
            receive_timeout: (!wal_sender_timeout.is_zero()).then_some(wal_sender_timeout),
            idle: Duration::ZERO,
            reported: ReportedStatus::default(),
        }
    }

    /// The slot being streamed.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// The server's `wal_sender_timeout` when streaming started (zero: disabled).
    pub fn wal_sender_timeout(&self) -> Duration {
        self.wal_sender_timeout
    }

    /// How often [`ReplicationEvent::StatusDue`] comes (default: [`keepalive_interval`]).
    pub fn status_interval(&self) -> Duration {
        self.status_interval
    }

    /// Changes the status interval (at least 1 ms). Keep it well under `wal_sender_timeout`.
    pub fn set_status_interval(&mut self, interval: Duration) {
        self.status_interval = interval.max(Duration::from_millis(1));
        self.next_status_at = self
            .next_status_at
            .min(Instant::now() + self.status_interval);
    }

    /// How long reads may wait with nothing at all arriving before failing with
    /// [`Error::Timeout`] (default: `wal_sender_timeout`, or none when that is disabled). While
    /// idle, status updates ask the server for a reply, so a live server always answers
    /// within a status interval.
    pub fn receive_timeout(&self) -> Option<Duration> {
        self.receive_timeout
    }

    /// Changes the receive timeout.
    pub fn set_receive_timeout(&mut self, timeout: Option<Duration>) {
        self.receive_timeout = timeout;
    }

    /// The walsender's process id (`pg_stat_replication.pid`).
    pub fn backend_pid(&self) -> Option<i32> {
        self.conn.backend_pid()
    }

    /// The positions last sent with [`ReplicationStream::send_status`].
    pub fn reported(&self) -> ReportedStatus {
        self.reported
    }

    /// Whether a status update is due now.
    pub fn status_due(&self) -> bool {
        Instant::now() >= self.next_status_at
    }

    /// The next message, or [`ReplicationEvent::StatusDue`] when a status update is due.
    /// Cancel-safe.
    pub async fn next_event(&mut self) -> Result<ReplicationEvent, Error> {
        self.conn.check_usable()?;
        loop {
            if Instant::now() >= self.next_status_at {
                self.next_status_at = Instant::now() + self.status_interval;
                return Ok(ReplicationEvent::StatusDue);
            }
            if let Some(message) = self.recv_until(self.next_status_at).await? {
                return Ok(ReplicationEvent::Message(message));
            }
        }
    }

    /// The next message, or `None` when `deadline` passes first. Does not report due status
    /// updates: callers using it keep their own timer. Cancel-safe.
    pub async fn next_message_before(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<ServerCopyMessage>, Error> {
        self.conn.check_usable()?;
        self.recv_until(deadline).await
    }

    async fn recv_until(&mut self, deadline: Instant) -> Result<Option<ServerCopyMessage>, Error> {
        loop {
            if let Some(message) = self.take_buffered()? {
                return Ok(Some(message));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if let Err(e) = self.conn.flush().await {
                return Err(self.fail(e));
            }
            let wake = match self.receive_timeout {
                Some(limit) => deadline.min(now + limit.saturating_sub(self.idle)),
                None => deadline,
            };
            let started = Instant::now();
            match tokio::time::timeout_at(wake, self.conn.fill("streaming")).await {
                Ok(Ok(())) => self.idle = Duration::ZERO,
                Ok(Err(e)) => return Err(self.fail(e)),
                Err(_elapsed) => {
                    self.idle += started.elapsed();
                    if let Some(limit) = self.receive_timeout {
                        if self.idle >= limit {
                            return Err(self.fail(Error::Timeout {
                                context: "waiting for the replication stream",
                                after: limit,
                            }));
                        }
                    }
                }
            }
        }
    }

    /// Decodes the next complete message already in the buffer.
    fn take_buffered(&mut self) -> Result<Option<ServerCopyMessage>, Error> {
        loop {
            let frame = match parse_frame(&mut self.conn.read_buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.fail(e)),
            };
            match frame {
                Frame::CopyData(body) => {
                    let message = match ServerCopyMessage::decode(body) {
                        Ok(message) => message,
                        Err(e) => return Err(self.fail(e.into())),
                    };
                    if let ServerCopyMessage::PrimaryKeepalive(k) = &message {
                        if k.reply_requested {
                            self.next_status_at = Instant::now();
                        }
                    }
                    return Ok(Some(message));
                }
                Frame::Message(Message::ErrorResponse(body)) => {
                    let error = match DbError::parse(&body) {
                        Ok(db) => Error::from_db(db, Some(&self.slot)),
                        Err(e) => e,
                    };
                    return Err(self.fail(error));
                }
                Frame::Message(Message::CopyDone) => {
                    return Err(self.fail(Error::ConnectionClosed {
                        context: "streaming (the server ended the stream with CopyDone)",
                    }))
                }
                Frame::Message(Message::CommandComplete(_)) => {
                    return Err(self.fail(Error::ConnectionClosed {
                        context: "streaming (the server left copy mode)",
                    }))
                }
                Frame::Message(message) if self.conn.handle_async(&message) => {}
                other => {
                    let name = frame_name(&other);
                    return Err(self.fail(Error::Protocol(format!(
                        "unexpected {name} in the replication stream"
                    ))));
                }
            }
        }
    }

    /// Sends a standby status update. `flushed` is what moves the slot: report the `end_lsn`
    /// of the last commit made durable downstream (or a keepalive's `wal_end` when nothing is
    /// in flight). Positions never go backwards: each is raised to the highest sent before,
    /// because PostgreSQL 15 would otherwise move `confirmed_flush_lsn` back. Also requests a
    /// reply when nothing arrived during the last wait, so a live server proves itself.
    pub async fn send_status(
        &mut self,
        written: Lsn,
        flushed: Lsn,
        applied: Lsn,
        reply_requested: bool,
    ) -> Result<(), Error> {
        self.conn.check_usable()?;
        let reported = ReportedStatus {
            written: written.max(self.reported.written),
            flushed: flushed.max(self.reported.flushed),
            applied: applied.max(self.reported.applied),
        };
        let client_time =
            PgTimestamp::from_system_time(SystemTime::now()).unwrap_or(PgTimestamp::EPOCH);
        let update = StandbyStatusUpdate {
            written: reported.written,
            flushed: reported.flushed,
            applied: reported.applied,
            client_time,
            reply_requested: reply_requested
                || (self.receive_timeout.is_some() && !self.idle.is_zero()),
        };
        self.conn.queue_copy_data(update.encode())?;
        self.reported = reported;
        self.next_status_at = Instant::now() + self.status_interval;
        match self.conn.flush().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Ends streaming cleanly (CopyDone both ways) and returns the connection in command mode,
    /// e.g. to drop the slot. Messages still in flight are discarded: report what you have
    /// processed with `send_status` first. Streaming again needs a new connection (see
    /// [`ReplicationClient::start_logical_replication`]).
    pub async fn stop(mut self) -> Result<ReplicationClient, Error> {
        self.conn.check_usable()?;
        self.conn.queue_copy_done();
        self.conn.flush().await?;
        let mut error = None;
        loop {
            match self.conn.read_frame("ending the stream").await? {
                Frame::CopyData(_) | Frame::Message(Message::CopyDone) => {}
                Frame::Message(Message::CommandComplete(_)) => {}
                Frame::Message(Message::ErrorResponse(body)) => {
                    error = Some(Error::from_db(DbError::parse(&body)?, Some(&self.slot)));
                }
                Frame::Message(Message::ReadyForQuery(_)) => {
                    return match error {
                        Some(e) => Err(e),
                        None => {
                            self.conn.set_usable();
                            Ok(ReplicationClient::from_conn(self.conn))
                        }
                    };
                }
                Frame::Message(message) if self.conn.handle_async(&message) => {}
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected {} while ending the stream",
                        frame_name(&other)
                    )))
                }
            }
        }
    }

    fn fail(&mut self, error: Error) -> Error {
        self.conn
            .set_broken("the replication stream ended with an error");
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use pgoutput::{ClientCopyMessage, PrimaryKeepalive, XLogData};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A stream whose server side the test writes by hand.
    async fn fake_pair() -> (ReplicationStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut stream =
            ReplicationStream::new(PgConn::from_stream(client), "s".into(), Duration::ZERO);
        stream.set_status_interval(Duration::from_secs(3600));
        (stream, server)
    }

    fn copy_data(message: &ServerCopyMessage) -> Vec<u8> {
        let body = message.encode();
        let mut wire = vec![b'd'];
        wire.extend_from_slice(&(u32::try_from(body.len()).unwrap() + 4).to_be_bytes());
        wire.extend_from_slice(&body);
        wire
    }

    /// Reads one CopyData frame the client sent and decodes it.
    async fn client_message(server: &mut TcpStream) -> ClientCopyMessage {
        let mut header = [0u8; 5];
        server.read_exact(&mut header).await.unwrap();
        assert_eq!(header[0], b'd');
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        server.read_exact(&mut body).await.unwrap();
        ClientCopyMessage::decode(Bytes::from(body)).unwrap()
    }

    #[tokio::test]
    async fn a_frame_split_across_cancelled_reads_arrives_whole() {
        let (mut stream, mut server) = fake_pair().await;
        let xlog = ServerCopyMessage::XLogData(XLogData {
            wal_start: Lsn(16),
            wal_end: Lsn::INVALID,
            server_time: PgTimestamp(1),
            data: Bytes::from_static(b"B payload"),
        });
        let wire = copy_data(&xlog);
        let (head, tail) = wire.split_at(10);
        server.write_all(head).await.unwrap();
        // The head arrives and the read is cancelled while it waits for the tail.
        let waited = tokio::time::timeout(Duration::from_millis(300), stream.next_event()).await;
        assert!(waited.is_err());
        assert_eq!(stream.conn.read_buf.len(), 10, "the head stays buffered");
        server.write_all(tail).await.unwrap();
        assert_eq!(
            stream.next_event().await.unwrap(),
            ReplicationEvent::Message(xlog)
        );
        assert!(stream.conn.read_buf.is_empty());
    }

    #[tokio::test]
    async fn a_requested_reply_is_due_at_once_and_positions_never_go_back() {
        let (mut stream, mut server) = fake_pair().await;
        let keepalive = ServerCopyMessage::PrimaryKeepalive(PrimaryKeepalive {
            wal_end: Lsn(99),
            server_time: PgTimestamp(1),
            reply_requested: true,
        });
        server.write_all(&copy_data(&keepalive)).await.unwrap();
        assert_eq!(
            stream.next_event().await.unwrap(),
            ReplicationEvent::Message(keepalive)
        );
        assert!(stream.status_due());
        assert_eq!(
            stream.next_event().await.unwrap(),
            ReplicationEvent::StatusDue
        );
        assert!(!stream.status_due(), "reported once per interval");

        stream
            .send_status(Lsn(100), Lsn(90), Lsn(80), false)
            .await
            .unwrap();
        stream
            .send_status(Lsn(50), Lsn(95), Lsn::INVALID, false)
            .await
            .unwrap();
        let ClientCopyMessage::StandbyStatusUpdate(first) = client_message(&mut server).await
        else {
            panic!("not a status update")
        };
        assert_eq!(
            (first.written, first.flushed, first.applied),
            (Lsn(100), Lsn(90), Lsn(80))
        );
        let ClientCopyMessage::StandbyStatusUpdate(second) = client_message(&mut server).await
        else {
            panic!("not a status update")
        };
        assert_eq!(
            (second.written, second.flushed, second.applied),
            (Lsn(100), Lsn(95), Lsn(80))
        );
        assert!(second.client_time.0 > 0);
    }

    #[tokio::test]
    async fn a_silent_server_times_out_after_asking_it_to_reply() {
        let (mut stream, mut server) = fake_pair().await;
        stream.set_status_interval(Duration::from_millis(50));
        stream.set_receive_timeout(Some(Duration::from_millis(300)));
        let started = Instant::now();
        assert_eq!(
            stream.next_event().await.unwrap(),
            ReplicationEvent::StatusDue
        );
        // Nothing arrived while waiting: the update asks the server to prove it is alive.
        stream
            .send_status(Lsn(1), Lsn(1), Lsn(1), false)
            .await
            .unwrap();
        let ClientCopyMessage::StandbyStatusUpdate(update) = client_message(&mut server).await
        else {
            panic!("not a status update")
        };
        assert!(update.reply_requested);
        let error = loop {
            match stream.next_event().await {
                Ok(ReplicationEvent::StatusDue) => {}
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        assert!(matches!(error, Error::Timeout { .. }), "{error}");
        assert!(error.is_retryable());
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(matches!(stream.next_event().await, Err(Error::Broken(_))));
    }

    #[tokio::test]
    async fn server_errors_and_eof_end_the_stream() {
        let (mut stream, mut server) = fake_pair().await;
        let mut body = BytesMut::new();
        for (kind, value) in [
            (b'V', "ERROR"),
            (b'C', "55000"),
            (
                b'M',
                "can no longer get changes from replication slot \"s\"",
            ),
        ] {
            body.extend_from_slice(&[kind]);
            body.extend_from_slice(value.as_bytes());
            body.extend_from_slice(&[0]);
        }
        body.extend_from_slice(&[0]);
        let mut wire = vec![b'E'];
        wire.extend_from_slice(&(u32::try_from(body.len()).unwrap() + 4).to_be_bytes());
        wire.extend_from_slice(&body);
        server.write_all(&wire).await.unwrap();
        let error = stream.next_event().await.unwrap_err();
        assert!(
            matches!(&error, Error::SlotInvalidated { slot, .. } if slot == "s"),
            "{error}"
        );

        let (mut stream, server) = fake_pair().await;
        drop(server);
        let error = stream.next_event().await.unwrap_err();
        assert!(matches!(error, Error::ConnectionClosed { .. }), "{error}");
        assert!(error.is_retryable());
    }
}
