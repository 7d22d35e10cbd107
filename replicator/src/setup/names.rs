//! Names of the things setup creates outside its schema: the replication slot and the
//! publication. Both are validated up front (lower-case letters, digits and `_`, at most 63
//! bytes, PostgreSQL's own rule for slot names), so they never need quoting and never surprise
//! anyone reading `pg_replication_slots`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

fn validate(kind: &'static str, name: &str) -> Result<String> {
    let valid = (1..=63).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(Error::InvalidName {
            kind,
            name: name.to_owned(),
        })
    }
}

macro_rules! pg_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(name: &str) -> Result<Self> {
                validate($kind, name).map($name)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(name: &str) -> Result<Self> {
                $name::new(name)
            }
        }
    };
}

pg_name!(
    /// A logical replication slot's name.
    SlotName,
    "slot"
);
pg_name!(
    /// A publication's name.
    PublicationName,
    "publication"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_lower_case_identifiers() {
        assert!(SlotName::new("replicator").is_ok());
        assert!(SlotName::new("it_slot_12_ab3").is_ok());
        for bad in ["", "Replicator", "1slot", "a-b", "a;drop", &"x".repeat(64)] {
            assert!(SlotName::new(bad).is_err(), "{bad}");
            assert!(PublicationName::new(bad).is_err(), "{bad}");
        }
    }
}
