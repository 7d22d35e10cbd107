//! What the decoder must be told: the negotiated protocol version and whether a stream block is
//! open. Neither is visible in a message's bytes, and both change how (or whether) it decodes.

use std::fmt;

use crate::{Error, Result};

/// A pgoutput protocol version (`proto_version` in `START_REPLICATION`).
///
/// Ordering: later versions are supersets of earlier ones, so `>=` answers "can carry".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// Version 1 (PostgreSQL 10+): transactions after commit.
    V1,
    /// Version 2 (PostgreSQL 14+): adds streaming of in-progress transactions.
    V2,
    /// Version 3 (PostgreSQL 15+): adds two-phase commit.
    V3,
}

impl ProtocolVersion {
    /// The version number as sent in `proto_version`.
    pub const fn number(self) -> u32 {
        match self {
            ProtocolVersion::V1 => 1,
            ProtocolVersion::V2 => 2,
            ProtocolVersion::V3 => 3,
        }
    }
}

impl TryFrom<u32> for ProtocolVersion {
    type Error = Error;

    fn try_from(version: u32) -> Result<Self> {
        match version {
            1 => Ok(ProtocolVersion::V1),
            2 => Ok(ProtocolVersion::V2),
            3 => Ok(ProtocolVersion::V3),
            version => Err(Error::UnsupportedProtocolVersion { version }),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// What the decoder must know that the bytes do not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeContext {
    /// The negotiated protocol version.
    pub protocol_version: ProtocolVersion,
    /// Whether the message is inside a stream block (after `Stream Start`, before `Stream Stop`).
    pub in_stream: bool,
}

impl DecodeContext {
    /// Outside any stream block.
    pub const fn new(protocol_version: ProtocolVersion) -> Self {
        DecodeContext {
            protocol_version,
            in_stream: false,
        }
    }

    /// Inside a stream block.
    pub const fn streaming(protocol_version: ProtocolVersion) -> Self {
        DecodeContext {
            protocol_version,
            in_stream: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions() {
        assert_eq!(ProtocolVersion::try_from(3).unwrap(), ProtocolVersion::V3);
        assert_eq!(
            ProtocolVersion::try_from(4),
            Err(Error::UnsupportedProtocolVersion { version: 4 })
        );
        assert!(ProtocolVersion::try_from(0).is_err());
        assert!(ProtocolVersion::V3 > ProtocolVersion::V1);
        assert_eq!(ProtocolVersion::V2.to_string(), "2");
    }
}
