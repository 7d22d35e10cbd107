//! The replication CopyData framing (streaming replication protocol, inside `CopyBoth`).
//!
//! After `START_REPLICATION SLOT ... LOGICAL`, each CopyData body from the server is either
//! XLogData (`w`), whose payload is one pgoutput message for
//! [`LogicalMessage::decode`](crate::LogicalMessage::decode) or
//! [`StreamDecoder`](crate::StreamDecoder), or a primary keepalive (`k`). The client answers
//! with standby status updates (`r`) and, rarely, hot standby feedback (`h`). Decoders for the
//! client messages and encoders for the server ones exist for test servers.
//!
//! Facts worth knowing (measured on PostgreSQL 15): XLogData's `wal_end` is sometimes 0, so take
//! progress from `wal_start` and from the messages (`Commit.end_lsn`), not from `wal_end`. A
//! keepalive's `wal_end` is the server's sent position; when no transaction is in flight a client
//! may acknowledge it so the slot advances past WAL with nothing published.

use bytes::{Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::writer::Writer;
use crate::{Lsn, PgTimestamp, Result, Xid};

const TAG_XLOG_DATA: u8 = b'w';
const TAG_KEEPALIVE: u8 = b'k';
const TAG_STATUS_UPDATE: u8 = b'r';
const TAG_HOT_STANDBY_FEEDBACK: u8 = b'h';

/// A CopyData body sent by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCopyMessage {
    /// `w`: WAL data, here one logical replication message.
    XLogData(XLogData),
    /// `k`: a keepalive.
    PrimaryKeepalive(PrimaryKeepalive),
}

/// `w`: one logical replication message and where it sits in the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// The WAL position this message was decoded at.
    pub wal_start: Lsn,
    /// The server's current end of WAL (sometimes 0; do not use for progress).
    pub wal_end: Lsn,
    /// The server's clock at sending.
    pub server_time: PgTimestamp,
    /// The pgoutput message, a zero-copy slice of the CopyData body.
    pub data: Bytes,
}

/// `k`: the server is alive and (maybe) wants a status update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// The server's clock at sending.
    pub server_time: PgTimestamp,
    /// Whether the client should reply at once (to avoid a `wal_sender_timeout` disconnect).
    pub reply_requested: bool,
}

/// A CopyData body sent by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCopyMessage {
    /// `r`
    StandbyStatusUpdate(StandbyStatusUpdate),
    /// `h`
    HotStandbyFeedback(HotStandbyFeedback),
}

/// `r`: the client's progress. For logical replication the server uses `flushed` as the slot's
/// `confirmed_flush_lsn`: WAL before it may be recycled and will not be re-sent after reconnect.
/// Report the `end_lsn` of the last commit made durable downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Position received and written.
    pub written: Lsn,
    /// Position durably processed (the one that moves the slot).
    pub flushed: Lsn,
    /// Position applied.
    pub applied: Lsn,
    /// The client's clock at sending.
    pub client_time: PgTimestamp,
    /// Ask the server to reply at once with a keepalive.
    pub reply_requested: bool,
}

/// `h`: hot standby feedback (physical standbys; rarely useful for logical clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotStandbyFeedback {
    /// The client's clock at sending.
    pub client_time: PgTimestamp,
    /// The standby's current global xmin, excluding catalog xmin (0 for none).
    pub xmin: Xid,
    /// The epoch of `xmin`.
    pub xmin_epoch: u32,
    /// The lowest catalog xmin of the standby's slots (0 for none).
    pub catalog_xmin: Xid,
    /// The epoch of `catalog_xmin`.
    pub catalog_xmin_epoch: u32,
}

impl ServerCopyMessage {
    /// Decodes a CopyData body from the server. Offsets in errors count from the body's start.
    pub fn decode(body: Bytes) -> Result<ServerCopyMessage> {
        let mut cur = Cursor::new(body, "CopyData");
        let tag = cur.u8("CopyData tag")?;
        let message = match tag {
            TAG_XLOG_DATA => {
                cur.set_message("XLogData");
                ServerCopyMessage::XLogData(XLogData {
                    wal_start: cur.lsn("wal start")?,
                    wal_end: cur.lsn("wal end")?,
                    server_time: cur.timestamp("server time")?,
                    data: cur.rest(),
                })
            }
            TAG_KEEPALIVE => {
                cur.set_message("Primary keepalive");
                ServerCopyMessage::PrimaryKeepalive(PrimaryKeepalive {
                    wal_end: cur.lsn("wal end")?,
                    server_time: cur.timestamp("server time")?,
                    reply_requested: cur.bool("reply requested")?,
                })
            }
            other => return Err(cur.unknown_tag("CopyData tag", 0, other)),
        };
        cur.finish()?;
        Ok(message)
    }

    /// Encodes the body (for test servers).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            ServerCopyMessage::XLogData(m) => {
                buf.reserve(25 + m.data.len());
                let mut w = Writer::new(&mut buf, "XLogData");
                w.u8(TAG_XLOG_DATA);
                w.lsn(m.wal_start);
                w.lsn(m.wal_end);
                w.timestamp(m.server_time);
                w.raw(&m.data);
            }
            ServerCopyMessage::PrimaryKeepalive(m) => {
                let mut w = Writer::new(&mut buf, "Primary keepalive");
                w.u8(TAG_KEEPALIVE);
                w.lsn(m.wal_end);
                w.timestamp(m.server_time);
                w.bool(m.reply_requested);
            }
        }
        buf.freeze()
    }
}

impl StandbyStatusUpdate {
    /// An update reporting `lsn` as written, flushed and applied.
    pub fn acknowledging(lsn: Lsn, client_time: PgTimestamp, reply_requested: bool) -> Self {
        StandbyStatusUpdate {
            written: lsn,
            flushed: lsn,
            applied: lsn,
            client_time,
            reply_requested,
        }
    }

    /// The CopyData body to send.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(34);
        let mut w = Writer::new(&mut buf, "Standby status update");
        w.u8(TAG_STATUS_UPDATE);
        w.lsn(self.written);
        w.lsn(self.flushed);
        w.lsn(self.applied);
        w.timestamp(self.client_time);
        w.bool(self.reply_requested);
        buf.freeze()
    }
}

impl HotStandbyFeedback {
    /// The CopyData body to send.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(25);
        let mut w = Writer::new(&mut buf, "Hot standby feedback");
        w.u8(TAG_HOT_STANDBY_FEEDBACK);
        w.timestamp(self.client_time);
        w.xid(self.xmin);
        w.u32(self.xmin_epoch);
        w.xid(self.catalog_xmin);
        w.u32(self.catalog_xmin_epoch);
        buf.freeze()
    }
}

impl ClientCopyMessage {
    /// Decodes a CopyData body from a client (for test servers).
    pub fn decode(body: Bytes) -> Result<ClientCopyMessage> {
        let mut cur = Cursor::new(body, "CopyData");
        let tag = cur.u8("CopyData tag")?;
        let message = match tag {
            TAG_STATUS_UPDATE => {
                cur.set_message("Standby status update");
                ClientCopyMessage::StandbyStatusUpdate(StandbyStatusUpdate {
                    written: cur.lsn("written lsn")?,
                    flushed: cur.lsn("flushed lsn")?,
                    applied: cur.lsn("applied lsn")?,
                    client_time: cur.timestamp("client time")?,
                    reply_requested: cur.bool("reply requested")?,
                })
            }
            TAG_HOT_STANDBY_FEEDBACK => {
                cur.set_message("Hot standby feedback");
                ClientCopyMessage::HotStandbyFeedback(HotStandbyFeedback {
                    client_time: cur.timestamp("client time")?,
                    xmin: cur.xid("xmin")?,
                    xmin_epoch: cur.u32("xmin epoch")?,
                    catalog_xmin: cur.xid("catalog xmin")?,
                    catalog_xmin_epoch: cur.u32("catalog xmin epoch")?,
                })
            }
            other => return Err(cur.unknown_tag("CopyData tag", 0, other)),
        };
        cur.finish()?;
        Ok(message)
    }

    /// The CopyData body.
    pub fn encode(&self) -> Bytes {
        match self {
            ClientCopyMessage::StandbyStatusUpdate(m) => m.encode(),
            ClientCopyMessage::HotStandbyFeedback(m) => m.encode(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn xlog_data_with_zero_wal_end() {
        let body = b"w\0\0\0\0\x01\x6B\x37\x48\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x05E";
        let msg = ServerCopyMessage::decode(Bytes::from_static(body)).unwrap();
        let ServerCopyMessage::XLogData(x) = &msg else {
            panic!("{msg:?}")
        };
        assert_eq!(x.wal_start, Lsn(0x16B_3748));
        assert_eq!(x.wal_end, Lsn::INVALID);
        assert_eq!(x.server_time, PgTimestamp(5));
        assert_eq!(x.data, "E");
        assert_eq!(msg.encode(), &body[..]);
        // An empty payload is framing-valid (the logical decoder will refuse it).
        assert!(ServerCopyMessage::decode(Bytes::copy_from_slice(&body[..25])).is_ok());
        assert!(matches!(
            ServerCopyMessage::decode(Bytes::copy_from_slice(&body[..24])),
            Err(Error::Truncated {
                message: "XLogData",
                field: "server time",
                offset: 17,
                ..
            })
        ));
    }

    #[test]
    fn keepalive() {
        let body = b"k\0\0\0\0\0\0\0\x40\0\0\0\0\0\0\0\x05\x01";
        let msg = ServerCopyMessage::decode(Bytes::from_static(body)).unwrap();
        assert_eq!(
            msg,
            ServerCopyMessage::PrimaryKeepalive(PrimaryKeepalive {
                wal_end: Lsn(64),
                server_time: PgTimestamp(5),
                reply_requested: true,
            })
        );
        assert_eq!(msg.encode(), &body[..]);
        let mut long = body.to_vec();
        long.push(0);
        assert!(matches!(
            ServerCopyMessage::decode(Bytes::from(long)),
            Err(Error::TrailingBytes { offset: 18, .. })
        ));
        assert!(matches!(
            ServerCopyMessage::decode(Bytes::from_static(b"d")),
            Err(Error::UnknownTag { tag: b'd', .. })
        ));
    }

    #[test]
    fn standby_status_update_layout() {
        let update = StandbyStatusUpdate::acknowledging(Lsn(0x1_0000_0002), PgTimestamp(5), false);
        let body = update.encode();
        let lsn = b"\0\0\0\x01\0\0\0\x02";
        let expected = [&b"r"[..], lsn, lsn, lsn, b"\0\0\0\0\0\0\0\x05", b"\0"].concat();
        assert_eq!(body, expected);
        assert_eq!(
            ClientCopyMessage::decode(body).unwrap(),
            ClientCopyMessage::StandbyStatusUpdate(update)
        );
    }

    #[test]
    fn hot_standby_feedback_layout() {
        let feedback = HotStandbyFeedback {
            client_time: PgTimestamp(5),
            xmin: Xid(7),
            xmin_epoch: 1,
            catalog_xmin: Xid(0),
            catalog_xmin_epoch: 0,
        };
        let msg = ClientCopyMessage::HotStandbyFeedback(feedback);
        let body = msg.encode();
        assert_eq!(
            body,
            &b"h\0\0\0\0\0\0\0\x05\0\0\0\x07\0\0\0\x01\0\0\0\0\0\0\0\0"[..]
        );
        assert_eq!(ClientCopyMessage::decode(body).unwrap(), msg);
    }
}
