//! A PostgreSQL logical streaming-replication client on tokio.
//!
//! `tokio-postgres` cannot open replication connections, so this crate speaks the protocol
//! itself on a `tokio::net::TcpStream`, with `postgres-protocol`'s message codecs and SCRAM
//! implementation, and the sibling crate [`pgoutput`] for the replication CopyData framing
//! (XLogData, keepalives, standby status updates) and the pgoutput messages inside.
//!
//! # Scope
//!
//! * PostgreSQL 15 or later, logical walsender mode (`replication=database`) only.
//! * Authentication: SCRAM-SHA-256 (without channel binding), md5, trust, and cleartext only
//!   when the server asks and [`Config::with_cleartext_password_allowed`] allows it.
//! * TLS with libpq's `sslmode` semantics (`disable`, `prefer` — the default —, `require`,
//!   `verify-ca`, `verify-full`) and `sslrootcert`, over rustls ([`tls`]); no client
//!   certificates. No Unix-domain sockets, multiple hosts, or `PG*` environment variables.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgrepl::Error> {
//! use pgoutput::{Lsn, ServerCopyMessage};
//! use pgrepl::{publication_names, Config, ReplicationClient, ReplicationEvent, SnapshotAction};
//!
//! let config: Config = "host=127.0.0.1 user=replicator password=... dbname=superset".parse()?;
//! let mut client = ReplicationClient::connect(&config).await?;
//! let system = client.identify_system().await?;
//! let slot = client.create_logical_slot("superset_slot", "pgoutput", SnapshotAction::Export).await?;
//! // ... copy the initial data in another session with SET TRANSACTION SNAPSHOT slot.snapshot_name,
//! // while this connection stays idle ...
//! let publications = publication_names(&["superset_pub"]);
//! let mut stream = client
//!     .start_logical_replication(
//!         "superset_slot",
//!         slot.consistent_point,
//!         &[("proto_version", "2"), ("publication_names", &publications), ("streaming", "true")],
//!     )
//!     .await?;
//! let mut durable = Lsn::INVALID;
//! loop {
//!     match stream.next_event().await? {
//!         ReplicationEvent::Message(ServerCopyMessage::XLogData(x)) => { /* decode x.data */ }
//!         ReplicationEvent::Message(ServerCopyMessage::PrimaryKeepalive(_)) => {}
//!         ReplicationEvent::StatusDue => stream.send_status(durable, durable, durable, false).await?,
//!     }
//! }
//! # }
//! ```
//!
//! See [`ReplicationStream`] for keepalives, backpressure and cancel safety, and [`Error`] for
//! the classification of slot failures and [`Error::is_retryable`].

mod client;
mod config;
mod conn;
mod error;
mod stream;
pub mod tls;

pub use client::{
    keepalive_interval, parse_duration_setting, publication_names, CreatedSlot, IdentifySystem,
    ReplicationClient, SnapshotAction,
};
pub use config::{Config, Secret, DEFAULT_PORT};
pub use conn::SimpleRow;
pub use error::{DbError, Error};
pub use stream::{ReplicationEvent, ReplicationStream, ReportedStatus};
pub use tls::{SslMode, TlsSettings};
