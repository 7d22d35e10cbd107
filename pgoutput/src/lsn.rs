//! Log sequence numbers.
//!
//! An LSN is a byte position in PostgreSQL's write-ahead log. It is the one position in the
//! replication protocol that is totally ordered across transactions: the server emits commits in
//! LSN order and the client acknowledges progress in LSNs. Text form is PostgreSQL's own
//! (`pg_lsn` output, `%X/%X`: the high and low 32 bits in upper-case hexadecimal), so values can
//! be compared with `pg_current_wal_lsn()` or `pg_replication_slots.confirmed_flush_lsn` by eye.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A write-ahead log position.
///
/// Ordering: `Ord` is the numeric order of WAL positions, which is the order in which the server
/// wrote the records; a commit with a larger `end_lsn` committed later. `Lsn(0)` is PostgreSQL's
/// `InvalidXLogRecPtr` ("no position"), which sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `InvalidXLogRecPtr`: no position (the server sends it, e.g., as XLogData's `wal_end`).
    pub const INVALID: Lsn = Lsn(0);

    /// Whether this is a real position rather than [`Lsn::INVALID`].
    pub const fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// The position `bytes` further on, or `None` on overflow.
    pub const fn checked_add(self, bytes: u64) -> Option<Lsn> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(Lsn(v)),
            None => None,
        }
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Lsn(v)
    }
}

impl From<Lsn> for u64 {
    fn from(v: Lsn) -> Self {
        v.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    /// Parses `X/X` as `pg_lsn_in` does: each side 1 to 8 hexadecimal digits, either case.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidLsn {
            input: s.chars().take(64).collect(),
        };
        let (hi, lo) = s.split_once('/').ok_or_else(invalid)?;
        let half = |part: &str| -> Result<u64, Error> {
            let ok = (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(invalid());
            }
            u64::from_str_radix(part, 16).map_err(|_| invalid())
        };
        Ok(Lsn((half(hi)? << 32) | half(lo)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_matches_postgres() {
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(0x16B_3748).to_string(), "0/16B3748");
        assert_eq!(Lsn(0x0000_0001_0000_00AB).to_string(), "1/AB");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parses_postgres_forms() {
        assert_eq!("0/16B3748".parse::<Lsn>().unwrap(), Lsn(0x16B_3748));
        assert_eq!("1/ab".parse::<Lsn>().unwrap(), Lsn(0x1_0000_00AB));
        assert_eq!(
            "00000001/000000AB".parse::<Lsn>().unwrap(),
            Lsn(0x1_0000_00AB)
        );
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/0/0",
            "123456789/0",
            "g/0",
            "+1/0",
            " 0/0",
            "0/-1",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn orders_numerically() {
        assert!(Lsn(0x1_0000_0000) > Lsn(0xFFFF_FFFF));
        assert!(!Lsn::INVALID.is_valid());
        assert_eq!(Lsn(u64::MAX).checked_add(1), None);
    }

    proptest! {
        #[test]
        fn text_roundtrip(v: u64) {
            prop_assert_eq!(Lsn(v).to_string().parse::<Lsn>().unwrap(), Lsn(v));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<Lsn>();
        }
    }
}
