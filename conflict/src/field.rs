//! Field paths: the unit of last-writer-wins.
//!
//! DESIGN §3 keys the per-column bookkeeping by a *path*, not a fixed column list, so that one
//! column holding a document (`position_json`, `json_metadata`) can be split into finer fields and
//! two people editing different parts of one dashboard both keep their work. A path is a column
//! name optionally followed by sub-keys: `dashboard_title`, `position_json/CHART-abc`,
//! `json_metadata/native_filter_configuration/NATIVE_FILTER-x`.
//!
//! Paths are plain data with one fixed spelling, so every region derives the same path for the
//! same piece of an entity; how a document is cut into paths is the caller's (canonical form's)
//! business. A piece that is removed must be written as a value meaning "removed" (for example
//! JSON `null`), never by omitting the path: absence means "never written".

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Name of the existence field.
const EXISTENCE: &str = "$exists";

/// A validated path naming one field of an entity.
///
/// Syntax: 1 to 1024 bytes; segments separated by `/`, each non-empty and made of visible ASCII
/// (`!` to `~`) other than `/`; the first byte is not `$`, which is reserved for the special
/// [`existence`](Self::existence) field. Anything else (Unicode keys, `/` inside a key) must be
/// escaped by the caller, e.g. percent-encoded.
///
/// **Ordering.** Byte-wise on the text. It only orders reports and storage deterministically;
/// fields are independent registers and their order never decides a winner.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// Longest accepted path, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Validates `path`.
    pub fn new(path: &str) -> Result<Self> {
        let reject = |reason| Error::InvalidFieldPath {
            path: path.to_owned(),
            reason,
        };
        if path.is_empty() || path.len() > Self::MAX_LEN {
            return Err(reject("must be 1 to 1024 bytes"));
        }
        if path.starts_with('$') {
            return Err(reject("'$' at the start is reserved"));
        }
        if path.split('/').any(str::is_empty) {
            return Err(reject("empty segment"));
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(reject("only visible ASCII is allowed"));
        }
        Ok(Self(path.to_owned()))
    }

    /// The special field holding alive/deleted (`$exists`).
    pub fn existence() -> Self {
        Self(EXISTENCE.to_owned())
    }

    /// Whether this is the existence field.
    pub fn is_existence(&self) -> bool {
        self.0 == EXISTENCE
    }

    /// `self` extended by one segment, e.g. `position_json` + `CHART-abc`.
    pub fn child(&self, segment: &str) -> Result<Self> {
        if self.is_existence() {
            return Err(Error::ReservedField(self.clone()));
        }
        Self::new(&format!("{}/{segment}", self.0))
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The first segment: the column this field lives in.
    pub fn column(&self) -> &str {
        self.segments().next().unwrap_or_default()
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({:?})", self.0)
    }
}

impl std::str::FromStr for FieldPath {
    type Err = Error;

    /// Parses a path; unlike [`FieldPath::new`], accepts `$exists`.
    fn from_str(s: &str) -> Result<Self> {
        if s == EXISTENCE {
            Ok(Self::existence())
        } else {
            Self::new(s)
        }
    }
}

impl Serialize for FieldPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    /// Accepts what [`FromStr`](std::str::FromStr) accepts (including `$exists`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_superset_paths() {
        for ok in [
            "dashboard_title",
            "position_json/CHART-abc",
            "json_metadata/native_filter_configuration/NATIVE_FILTER-x_Y",
            "params/a%2Fb",
        ] {
            let path = FieldPath::new(ok).unwrap();
            assert_eq!(path.as_str(), ok);
            assert!(!path.is_existence());
        }
        let nested = FieldPath::new("position_json")
            .unwrap()
            .child("CHART-1")
            .unwrap();
        assert_eq!(nested.as_str(), "position_json/CHART-1");
        assert_eq!(nested.column(), "position_json");
        assert_eq!(
            nested.segments().collect::<Vec<_>>(),
            ["position_json", "CHART-1"]
        );
    }

    #[test]
    fn rejects_bad_paths() {
        let long = "a".repeat(FieldPath::MAX_LEN + 1);
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a b",
            "é",
            "$exists",
            "$x",
            long.as_str(),
        ] {
            assert!(FieldPath::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(FieldPath::existence().child("x").is_err());
    }

    #[test]
    fn existence_round_trips_through_text() {
        let exists = FieldPath::existence();
        assert!(exists.is_existence());
        assert_eq!("$exists".parse::<FieldPath>().unwrap(), exists);
        let json = serde_json::to_string(&exists).unwrap();
        assert_eq!(serde_json::from_str::<FieldPath>(&json).unwrap(), exists);
        assert!(serde_json::from_str::<FieldPath>("\"a//b\"").is_err());
    }
}
