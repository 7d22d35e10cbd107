//! Server timestamps.
//!
//! The replication protocol carries `TimestampTz` values: signed microseconds since the
//! PostgreSQL epoch, 2000-01-01 00:00:00 UTC. The type keeps the wire value untouched (so
//! encoding is exact) and converts to Unix microseconds or `SystemTime` on request; conversions
//! are checked because the wire value can be anything, including PostgreSQL's ±infinity
//! sentinels (`i64::MIN`, `i64::MAX`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds between the Unix epoch (1970-01-01) and the PostgreSQL epoch (2000-01-01).
pub const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A PostgreSQL `TimestampTz`: microseconds since 2000-01-01 00:00:00 UTC.
///
/// Ordering: `Ord` is chronological order of the wall-clock readings. Timestamps come from the
/// server's clock, which may step backwards, so they order events only loosely; use
/// [`Lsn`](crate::Lsn) to order transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// The PostgreSQL epoch itself.
    pub const EPOCH: PgTimestamp = PgTimestamp(0);

    /// Microseconds since the Unix epoch, or `None` if that overflows `i64`.
    pub const fn to_unix_micros(self) -> Option<i64> {
        self.0.checked_add(POSTGRES_EPOCH_UNIX_MICROS)
    }

    /// The timestamp `micros` microseconds after the Unix epoch, or `None` on overflow.
    pub const fn from_unix_micros(micros: i64) -> Option<PgTimestamp> {
        match micros.checked_sub(POSTGRES_EPOCH_UNIX_MICROS) {
            Some(v) => Some(PgTimestamp(v)),
            None => None,
        }
    }

    /// As a `SystemTime`, or `None` if it is out of the platform's range.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let unix = self.to_unix_micros()?;
        let magnitude = Duration::from_micros(unix.unsigned_abs());
        if unix >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// From a `SystemTime` (truncated to microseconds), or `None` if out of range. Clients use
    /// `PgTimestamp::from_system_time(SystemTime::now())` for status updates.
    pub fn from_system_time(time: SystemTime) -> Option<PgTimestamp> {
        let unix = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_micros()).ok()?,
            Err(before) => i64::try_from(before.duration().as_micros())
                .ok()?
                .checked_neg()?,
        };
        PgTimestamp::from_unix_micros(unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epoch_is_2000() {
        assert_eq!(PgTimestamp(0).to_unix_micros(), Some(946_684_800_000_000));
        let t = PgTimestamp(0).to_system_time().unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_secs(946_684_800)
        );
        assert_eq!(PgTimestamp(i64::MAX).to_unix_micros(), None);
        assert_eq!(PgTimestamp::from_unix_micros(i64::MIN), None);
        let before_unix = PgTimestamp(-POSTGRES_EPOCH_UNIX_MICROS - 5);
        assert_eq!(
            PgTimestamp::from_system_time(before_unix.to_system_time().unwrap()),
            Some(before_unix)
        );
    }

    proptest! {
        #[test]
        fn system_time_roundtrip(v in -(1i64 << 60)..(1i64 << 60)) {
            let t = PgTimestamp(v);
            prop_assert_eq!(PgTimestamp::from_system_time(t.to_system_time().unwrap()), Some(t));
            prop_assert_eq!(PgTimestamp::from_unix_micros(t.to_unix_micros().unwrap()), Some(t));
        }

        #[test]
        fn conversions_never_panic(v: i64) {
            let t = PgTimestamp(v);
            let _ = t.to_system_time();
            let _ = t.to_unix_micros();
        }
    }
}
