//! The replication connection in command mode: system identity, settings, slots, and the start
//! of streaming.

use std::time::Duration;

use pgoutput::Lsn;

use crate::conn::{PgConn, SimpleRow};
use crate::stream::ReplicationStream;
use crate::{Config, Error};

/// A logical walsender connection (`replication=database`) in command mode.
///
/// Commands take `&mut self` and run one at a time. Cancelling a command future half-way (e.g.
/// by a timeout) leaves the exchange's state unknown: the connection then refuses further
/// commands with [`Error::Broken`]; drop it and reconnect.
#[derive(Debug)]
pub struct ReplicationClient {
    conn: PgConn,
}

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySystem {
    /// The cluster's system identifier (a decimal u64, as text).
    pub system_id: String,
    /// The current timeline.
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlog_pos: Lsn,
    /// The database this connection is attached to.
    pub dbname: Option<String>,
}

/// What `CREATE_REPLICATION_SLOT` does with a snapshot of the slot's consistent point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAction {
    /// `SNAPSHOT 'export'`: export a snapshot that other sessions can import with
    /// `SET TRANSACTION SNAPSHOT '<name>'` (in a `REPEATABLE READ` transaction) to copy the
    /// initial data exactly as of the consistent point. The snapshot lives until this connection
    /// runs its next command (typically `START_REPLICATION`) or closes: finish the import first.
    Export,
    /// `SNAPSHOT 'nothing'`: no snapshot.
    NoExport,
    /// `SNAPSHOT 'use'`: install the snapshot in the current transaction of *this* connection,
    /// which must have run `BEGIN ISOLATION LEVEL REPEATABLE READ` (via
    /// [`ReplicationClient::simple_query`]) and nothing else yet.
    Use,
}

impl SnapshotAction {
    fn keyword(self) -> &'static str {
        match self {
            SnapshotAction::Export => "export",
            SnapshotAction::NoExport => "nothing",
            SnapshotAction::Use => "use",
        }
    }
}

/// The answer to `CREATE_REPLICATION_SLOT ... LOGICAL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// The slot's name.
    pub slot_name: String,
    /// The slot's consistent point: streaming from it gives every transaction that committed
    /// after the snapshot (if any) was taken.
    pub consistent_point: Lsn,
    /// The exported snapshot's name, with [`SnapshotAction::Export`].
    pub snapshot_name: Option<String>,
    /// The output plugin.
    pub output_plugin: Option<String>,
}

impl ReplicationClient {
    /// Connects and authenticates (SCRAM-SHA-256, md5, cleartext if allowed, or trust), in
    /// logical walsender mode attached to `config.dbname()`. The server must be PostgreSQL 15
    /// or later, and `pg_hba.conf` must admit the user for that database (a logical walsender is
    /// matched by the database column, not by `replication`).
    pub async fn connect(config: &Config) -> Result<ReplicationClient, Error> {
        Ok(ReplicationClient {
            conn: PgConn::connect(config).await?,
        })
    }

    pub(crate) fn from_conn(conn: PgConn) -> ReplicationClient {
        ReplicationClient { conn }
    }

    /// A run-time parameter the server reported at startup or since (`server_version`,
    /// `server_encoding`, `TimeZone`, ...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.conn.parameter(name)
    }

    /// The server's version string (`server_version`).
    pub fn server_version(&self) -> Option<&str> {
        self.conn.parameter("server_version")
    }

    /// The walsender's process id (`pg_stat_replication.pid`).
    pub fn backend_pid(&self) -> Option<i32> {
        self.conn.backend_pid()
    }

    /// Runs SQL or a replication command with the simple-query protocol and returns the rows of
    /// all its result sets as text. A logical walsender accepts ordinary SQL too (e.g.
    /// `SET logical_decoding_work_mem = '64kB'`, `BEGIN ISOLATION LEVEL REPEATABLE READ`).
    /// `COPY` and `START_REPLICATION` are refused here.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleRow>, Error> {
        self.conn.query(sql, None, false).await
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<IdentifySystem, Error> {
        let rows = self.conn.query("IDENTIFY_SYSTEM", None, false).await?;
        let row = single_row(&rows, "IDENTIFY_SYSTEM")?;
        let timeline = row.required("timeline", "IDENTIFY_SYSTEM")?;
        let xlog_pos = row.required("xlogpos", "IDENTIFY_SYSTEM")?;
        Ok(IdentifySystem {
            system_id: row.required("systemid", "IDENTIFY_SYSTEM")?.to_owned(),
            timeline: timeline.parse().map_err(|_| {
                Error::Protocol(format!("IDENTIFY_SYSTEM: invalid timeline {timeline:?}"))
            })?,
            xlog_pos: parse_lsn(xlog_pos, "IDENTIFY_SYSTEM")?,
            dbname: row.get("dbname").map(str::to_owned),
        })
    }

    /// `SHOW name`: a setting's current value as the server displays it (`1min`, `64kB`).
    pub async fn show(&mut self, name: &str) -> Result<String, Error> {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid {
            return Err(Error::InvalidArgument(format!(
                "{name:?} is not a setting name"
            )));
        }
        let rows = self
            .conn
            .query(&format!("SHOW {name}"), None, false)
            .await?;
        let row = single_row(&rows, "SHOW")?;
        row.get_index(0)
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol(format!("SHOW {name} returned no value")))
    }

    /// The server's `wal_sender_timeout` (zero when disabled).
    pub async fn wal_sender_timeout(&mut self) -> Result<Duration, Error> {
        let text = self.show("wal_sender_timeout").await?;
        parse_duration_setting(&text, Duration::from_millis(1))
            .ok_or_else(|| Error::Protocol(format!("unparsable wal_sender_timeout {text:?}")))
    }

    /// How often to send status updates on this connection: [`keepalive_interval`] of the
    /// server's `wal_sender_timeout`.
    pub async fn keepalive_interval(&mut self) -> Result<Duration, Error> {
        Ok(keepalive_interval(self.wal_sender_timeout().await?))
    }

    /// `CREATE_REPLICATION_SLOT "name" LOGICAL "plugin" (SNAPSHOT '...')` (PostgreSQL 15
    /// syntax). Slot names are 1 to 63 characters of `a-z`, `0-9` and `_`. An existing slot of
    /// that name gives [`Error::SlotAlreadyExists`].
    pub async fn create_logical_slot(
        &mut self,
        name: &str,
        plugin: &str,
        snapshot: SnapshotAction,
    ) -> Result<CreatedSlot, Error> {
        validate_slot_name(name)?;
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL {} (SNAPSHOT '{}')",
            quote_identifier(name)?,
            quote_identifier(plugin)?,
            snapshot.keyword()
        );
        let rows = self.conn.query(&sql, Some(name), false).await?;
        let row = single_row(&rows, "CREATE_REPLICATION_SLOT")?;
        Ok(CreatedSlot {
            slot_name: row
                .required("slot_name", "CREATE_REPLICATION_SLOT")?
                .to_owned(),
            consistent_point: parse_lsn(
                row.required("consistent_point", "CREATE_REPLICATION_SLOT")?,
                "CREATE_REPLICATION_SLOT",
            )?,
            snapshot_name: row.get("snapshot_name").map(str::to_owned),
            output_plugin: row.get("output_plugin").map(str::to_owned),
        })
    }

    /// `DROP_REPLICATION_SLOT "name" [WAIT]`. Without `wait`, a slot in use gives
    /// [`Error::SlotInUse`]; with it, the command waits until the slot is free. A missing slot
    /// gives [`Error::SlotMissing`].
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<(), Error> {
        validate_slot_name(name)?;
        let sql = format!(
            "DROP_REPLICATION_SLOT {}{}",
            quote_identifier(name)?,
            if wait { " WAIT" } else { "" }
        );
        self.conn.query(&sql, Some(name), false).await?;
        Ok(())
    }

    /// `START_REPLICATION SLOT "slot" LOGICAL start_lsn (options)` and the switch to CopyBoth
    /// mode. Options go to the output plugin, e.g. for pgoutput on PostgreSQL 15:
    /// `("proto_version", "2")`, `("publication_names", &publication_names(&["p"]))`,
    /// `("streaming", "true")`, `("messages", "true")`, `("binary", "false")`,
    /// `("two_phase", "true")` (proto 3). Values are sent as string literals.
    ///
    /// `start_lsn` is usually the last position confirmed downstream, or [`Lsn::INVALID`]: the
    /// server starts at the later of it and the slot's `confirmed_flush_lsn` (transactions
    /// whose commit ends at or before that are not sent again).
    ///
    /// Before starting, this asks the server for `wal_sender_timeout` and sets the stream's
    /// status interval ([`keepalive_interval`]) and receive timeout (`wal_sender_timeout`).
    ///
    /// Errors: [`Error::SlotMissing`], [`Error::SlotInUse`], [`Error::SlotInvalidated`], or a
    /// server error for bad options. The connection is consumed either way.
    ///
    /// Streaming runs once per connection: after [`ReplicationStream::stop`] the connection
    /// takes commands again (e.g. `DROP_REPLICATION_SLOT`) but a second `START_REPLICATION` is
    /// refused with [`Error::Unsupported`], because PostgreSQL 15's walsender keeps its
    /// "streaming done" state and would end the new stream at once (measured on 15.18).
    pub async fn start_logical_replication(
        mut self,
        slot: &str,
        start_lsn: Lsn,
        options: &[(&str, &str)],
    ) -> Result<ReplicationStream, Error> {
        validate_slot_name(slot)?;
        if self.conn.streamed {
            return Err(Error::Unsupported(
                "a second START_REPLICATION on one connection (PostgreSQL 15's walsender \
                 ends it at once); reconnect to stream again"
                    .into(),
            ));
        }
        let wal_sender_timeout = self.wal_sender_timeout().await?;
        let mut sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {start_lsn}",
            quote_identifier(slot)?
        );
        if !options.is_empty() {
            let rendered: Result<Vec<String>, Error> = options
                .iter()
                .map(|(key, value)| {
                    Ok(format!(
                        "{} {}",
                        quote_identifier(key)?,
                        quote_literal(value)?
                    ))
                })
                .collect();
            sql.push_str(&format!(" ({})", rendered?.join(", ")));
        }
        self.conn.query(&sql, Some(slot), true).await?;
        self.conn.streamed = true;
        Ok(ReplicationStream::new(
            self.conn,
            slot.to_owned(),
            wal_sender_timeout,
        ))
    }
}

/// How often a client should send status updates for a server `wal_sender_timeout`: the smaller
/// of 1 s and half the timeout, and 1 s when the timeout is disabled (0). Half the timeout is
/// when the server itself starts asking for a reply; 1 s keeps `pg_stat_replication` fresh and
/// lets the slot advance promptly.
pub fn keepalive_interval(wal_sender_timeout: Duration) -> Duration {
    let second = Duration::from_secs(1);
    if wal_sender_timeout.is_zero() {
        second
    } else {
        second.min(wal_sender_timeout / 2)
    }
}

/// Parses a time setting as `SHOW` displays it (`0`, `500ms`, `60s`, `1min`, `2h`, `1d`, `10us`);
/// a bare number is in `unit` (the setting's base unit, milliseconds for `wal_sender_timeout`).
/// Negative values (`-1`, "disabled" for some settings) parse as zero.
pub fn parse_duration_setting(text: &str, unit: Duration) -> Option<Duration> {
    let text = text.trim();
    if let Some(negative) = text.strip_prefix('-') {
        return negative
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse::<u64>()
            .ok()
            .map(|_| Duration::ZERO);
    }
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let per_unit = match suffix.trim() {
        "" => unit,
        "us" => Duration::from_micros(1),
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        _ => return None,
    };
    per_unit.checked_mul(u32::try_from(number).ok()?)
}

/// The value of pgoutput's `publication_names` option for these publications (each quoted as an
/// identifier, comma-separated).
pub fn publication_names(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{}\"", n.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(",")
}

/// PostgreSQL's rule for slot names (`ReplicationSlotValidateName`), checked before sending.
fn validate_slot_name(name: &str) -> Result<(), Error> {
    let valid = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{:?} is not a valid replication slot name (1 to 63 of a-z, 0-9, _)",
            name.chars().take(80).collect::<String>()
        )))
    }
}

fn quote_identifier(name: &str) -> Result<String, Error> {
    if name.is_empty() || name.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "{name:?} is not a valid identifier"
        )));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

fn quote_literal(value: &str) -> Result<String, Error> {
    if value.contains('\0') {
        return Err(Error::InvalidArgument(
            "an option value contains a NUL byte".into(),
        ));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

fn single_row<'a>(rows: &'a [SimpleRow], command: &str) -> Result<&'a SimpleRow, Error> {
    match rows {
        [row] => Ok(row),
        _ => Err(Error::Protocol(format!(
            "{command} returned {} rows, expected one",
            rows.len()
        ))),
    }
}

fn parse_lsn(text: &str, command: &str) -> Result<Lsn, Error> {
    text.parse()
        .map_err(|_| Error::Protocol(format!("{command}: invalid LSN {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_interval_is_at_most_a_second_and_half_the_timeout() {
        assert_eq!(keepalive_interval(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            keepalive_interval(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
        assert_eq!(
            keepalive_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            keepalive_interval(Duration::from_millis(500)),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn parses_settings_as_show_displays_them() {
        let ms = Duration::from_millis(1);
        assert_eq!(
            parse_duration_setting("1min", ms),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_duration_setting("60s", ms),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_duration_setting("500ms", ms),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_duration_setting("0", ms), Some(Duration::ZERO));
        assert_eq!(
            parse_duration_setting("250", ms),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration_setting("2h", ms),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(parse_duration_setting("-1", ms), Some(Duration::ZERO));
        assert_eq!(parse_duration_setting("1 fortnight", ms), None);
        assert_eq!(parse_duration_setting("", ms), None);
    }

    #[test]
    fn names_and_values_are_quoted() {
        assert_eq!(quote_identifier("a\"b").unwrap(), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert!(quote_literal("a\0").is_err());
        assert_eq!(
            publication_names(&["p1", "odd\"name"]),
            "\"p1\",\"odd\"\"name\""
        );
        assert!(validate_slot_name("it_slot_1").is_ok());
        for bad in ["", "Upper", "has space", "x;DROP", &"a".repeat(64)] {
            assert!(validate_slot_name(bad).is_err(), "{bad}");
        }
    }
}
