//! Message kinds: the tag byte of each logical replication message, its documented name, and the
//! protocol version that introduced it. One table (the `message_kinds!` invocation) is the single
//! source for all three, so tag dispatch, error names and version gating cannot drift apart.

use std::fmt;

use super::ProtocolVersion;

macro_rules! message_kinds {
    ($($kind:ident = $tag:literal, $name:literal, $version:ident;)*) => {
        /// The type of a logical message, as named by its tag byte.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MessageKind {
            $(
                #[doc = concat!("`", $name, "`, tag `", stringify!($tag), "`.")]
                $kind,
            )*
        }

        impl MessageKind {
            /// Every kind, in protocol-document order.
            pub const ALL: &'static [MessageKind] = &[$(MessageKind::$kind),*];

            /// The tag byte.
            pub const fn tag(self) -> u8 {
                match self { $(MessageKind::$kind => $tag,)* }
            }

            /// The kind a tag byte names.
            pub const fn from_tag(tag: u8) -> Option<MessageKind> {
                match tag { $($tag => Some(MessageKind::$kind),)* _ => None }
            }

            /// The name used in the PostgreSQL documentation and in errors.
            pub const fn name(self) -> &'static str {
                match self { $(MessageKind::$kind => $name,)* }
            }

            /// The oldest protocol version that can carry this message.
            pub const fn min_protocol_version(self) -> ProtocolVersion {
                match self { $(MessageKind::$kind => ProtocolVersion::$version,)* }
            }
        }
    };
}

message_kinds! {
    Begin = b'B', "Begin", V1;
    Message = b'M', "Message", V1;
    Commit = b'C', "Commit", V1;
    Origin = b'O', "Origin", V1;
    Relation = b'R', "Relation", V1;
    Type = b'Y', "Type", V1;
    Insert = b'I', "Insert", V1;
    Update = b'U', "Update", V1;
    Delete = b'D', "Delete", V1;
    Truncate = b'T', "Truncate", V1;
    StreamStart = b'S', "Stream Start", V2;
    StreamStop = b'E', "Stream Stop", V2;
    StreamCommit = b'c', "Stream Commit", V2;
    StreamAbort = b'A', "Stream Abort", V2;
    BeginPrepare = b'b', "Begin Prepare", V3;
    Prepare = b'P', "Prepare", V3;
    CommitPrepared = b'K', "Commit Prepared", V3;
    RollbackPrepared = b'r', "Rollback Prepared", V3;
    StreamPrepare = b'p', "Stream Prepare", V3;
}

impl MessageKind {
    /// Whether the message carries an xid prefix inside a stream block (`R Y I U D T M`).
    pub const fn carries_stream_xid(self) -> bool {
        matches!(
            self,
            MessageKind::Relation
                | MessageKind::Type
                | MessageKind::Insert
                | MessageKind::Update
                | MessageKind::Delete
                | MessageKind::Truncate
                | MessageKind::Message
        )
    }

    /// Whether pgoutput sends this message inside a stream block: the changes, `Origin` (after
    /// the first `Stream Start`) and `Stream Stop`. Transaction boundaries never appear there.
    pub const fn allowed_in_stream_block(self) -> bool {
        self.carries_stream_xid() || matches!(self, MessageKind::Origin | MessageKind::StreamStop)
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_distinct_and_roundtrip() {
        for kind in MessageKind::ALL {
            assert_eq!(MessageKind::from_tag(kind.tag()), Some(*kind));
        }
        assert_eq!(MessageKind::ALL.len(), 19);
        assert_eq!(MessageKind::from_tag(b'Z'), None);
    }
}
