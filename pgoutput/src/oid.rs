//! Object ids.
//!
//! pgoutput names relations and types by their 32-bit catalog oid; the relation cache is keyed by
//! it. An oid identifies an object for its lifetime (a dropped and re-created table gets a new
//! one), so the cache never needs to compare oids for anything but equality.

use std::fmt;

/// A PostgreSQL object id (`pg_class.oid`, `pg_type.oid`).
///
/// Ordering: `Ord` is plain numeric order so oids can key ordered maps and sort deterministically
/// in test output; it carries no meaning (oids are allocated from a wrapping counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Oid(pub u32);

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u32> for Oid {
    fn from(v: u32) -> Self {
        Oid(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_decimal() {
        assert_eq!(Oid(16_384).to_string(), "16384");
        assert!(Oid(1) < Oid(2));
    }
}
