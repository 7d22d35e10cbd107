//! Transaction ids.
//!
//! pgoutput sends 32-bit transaction ids: of the transaction in `Begin`/`Commit Prepared`, and of
//! the (sub)transaction a streamed change belongs to. They identify transactions; they do not
//! order them.

use std::fmt;

/// A 32-bit PostgreSQL transaction id (`TransactionId`).
///
/// Ordering: deliberately not `Ord`. Xids wrap around modulo 2^32 and are assigned at a
/// transaction's first write, not at commit, so numeric order is neither commit order nor stable
/// across wraparound. Order transactions by their commit [`Lsn`](crate::Lsn) instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Xid(pub u32);

impl fmt::Display for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u32> for Xid {
    fn from(v: u32) -> Self {
        Xid(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_decimal() {
        assert_eq!(Xid(4_000_000_000).to_string(), "4000000000");
    }
}
