//! Region identity.
//!
//! A region is one independent Superset with its own metadata database. Its id appears in every
//! dot, every clock entry and as the tie-breaker of the write order, so it must be the same bytes
//! everywhere: a short validated ASCII string, compared byte-wise (never by locale, never by a
//! configuration-dependent number).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A validated region id: 1 to 16 bytes from `a-z`, `0-9`, `_` and `-` (e.g. `us`, `eu-west`).
///
/// **Ordering.** Region ids are ordered by their bytes, lexicographically (so `eu < eu-west < us`),
/// which is the same order in every region and every language runtime (PostgreSQL `COLLATE "C"`
/// gives the same). That order breaks ties between two writes with equal hlcs, so it must never
/// depend on configuration: renaming a region changes who wins future ties, never past ones.
///
/// Stored inline (no heap), so it is `Copy`; it serializes as its string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionId {
    /// The id's bytes, zero-padded. Valid bytes are all non-zero, so the padding never compares
    /// equal to a real byte.
    bytes: [u8; RegionId::MAX_LEN],
    /// How many of `bytes` are used (1..=16).
    len: u8,
}

impl RegionId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 16;

    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self> {
        let valid_byte =
            |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-');
        let raw = id.as_bytes();
        let len = u8::try_from(raw.len()).map_err(|_| Error::InvalidRegionId(id.to_owned()))?;
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.iter().all(valid_byte) {
            return Err(Error::InvalidRegionId(id.to_owned()));
        }
        let mut bytes = [0_u8; Self::MAX_LEN];
        for (slot, byte) in bytes.iter_mut().zip(raw) {
            *slot = *byte;
        }
        Ok(Self { bytes, len })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|used| std::str::from_utf8(used).ok())
            .unwrap_or_default()
    }
}

impl Ord for RegionId {
    /// Byte-wise on the text. Comparing the zero-padded arrays gives exactly that: every valid
    /// byte is non-zero, so a proper prefix (padded with zeros) sorts first, as it should.
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl PartialOrd for RegionId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegionId({:?})", self.as_str())
    }
}

impl FromStr for RegionId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<&str> for RegionId {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl Serialize for RegionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RegionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["us", "eu-west", "a", "ap_1", "0123456789abcdef"] {
            assert_eq!(RegionId::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "US", "eu west", "é", "0123456789abcdefg", "a/b", "a\0"] {
            assert!(RegionId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serde_is_a_string() {
        let id = RegionId::new("eu").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"eu\"");
        assert_eq!(serde_json::from_str::<RegionId>("\"eu\"").unwrap(), id);
        assert!(serde_json::from_str::<RegionId>("\"EU\"").is_err());
    }

    proptest! {
        #[test]
        fn order_is_byte_order(a in "[a-z0-9_-]{1,16}", b in "[a-z0-9_-]{1,16}") {
            let (ra, rb) = (RegionId::new(&a).unwrap(), RegionId::new(&b).unwrap());
            prop_assert_eq!(ra.cmp(&rb), a.as_bytes().cmp(b.as_bytes()));
            prop_assert_eq!(ra == rb, a == b);
        }
    }
}
