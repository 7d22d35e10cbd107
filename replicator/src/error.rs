//! The replicator library's one error type.
//!
//! Every variant carries what an operator needs: the message says what is wrong, [`Error::hint`]
//! says what to do about it, and [`Error::action`] says who acts: retry by itself ([`Action::Retry`]),
//! a person must change something ([`Action::Operator`]), or the replicator itself is wrong
//! ([`Action::Fatal`]). The source chain is kept (`#[source]`), so logs show the PostgreSQL error
//! under ours. No message ever contains a password: connection targets are shown redacted.

use tokio_postgres::error::SqlState;

/// Who has to act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transient (connection lost, lock busy): trying again later may succeed.
    Retry,
    /// Configuration or database state that a person must fix; retrying will not help.
    Operator,
    /// A bug or a broken invariant of the replicator itself.
    Fatal,
    /// The input is at fault (a record or source transaction that cannot be decoded or written
    /// here): the applier quarantines it with the reason and goes on (DESIGN §5).
    Quarantine,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {kind} name {name:?}")]
    InvalidName { kind: &'static str, name: String },

    #[error("invalid database url (libpq `key=value` string or `postgresql://` url expected)")]
    InvalidDatabaseUrl {
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("postgres: {context}")]
    Postgres {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("another `replicator setup` is running against this database")]
    SetupBusy,

    #[error("this database belongs to region {stored:?}; it cannot become region {requested:?}")]
    RegionMismatch { stored: String, requested: String },

    #[error("schema `replicator` exists but was not created by `replicator setup` (it has no schema_migrations)")]
    ForeignSchema,

    #[error("migration {version} ({name}) differs from the one applied to this database")]
    MigrationChanged { version: i32, name: String },

    #[error("this database has replicator schema version {found}, newer than this binary knows ({known})")]
    SchemaTooNew { found: i32, known: i32 },

    #[error("table public.{table} is in the table policy but not in this database")]
    MissingTable { table: String },

    #[error(
        "column public.{table}.{column} is named by the table policy but not in this database"
    )]
    MissingColumn { table: String, column: String },

    #[error("publication {publication} publishes all tables")]
    PublicationForAllTables { publication: String },

    #[error("replication slot {slot} uses plugin {plugin:?}, not pgoutput")]
    SlotPlugin { slot: String, plugin: String },

    #[error("replication slot {slot} belongs to database {database:?}, not this one")]
    SlotElsewhere { slot: String, database: String },

    #[error("wal_level is {wal_level:?}; logical replication needs \"logical\"")]
    WalLevel { wal_level: String },

    #[error("the replication stream could not be decoded")]
    Decode {
        #[source]
        source: pgoutput::Error,
    },

    #[error("unexpected replication stream: {problem}")]
    StreamShape { problem: String },

    #[error("replication slot {slot} {}", if *lost_wal { "was invalidated: it lost WAL it still needed" } else { "does not exist" })]
    SlotGone { slot: String, lost_wal: bool },

    #[error("replication connection settings: {problem}")]
    ReplicationConfig { problem: String },

    #[error("replication: {context}")]
    Replication {
        context: String,
        #[source]
        source: pgrepl::Error,
    },
    #[error("kafka setting `{key}`: {problem}")]
    KafkaSetting { key: String, problem: String },

    #[error("kafka: {context}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    #[error("topic {topic} has {partitions} partitions; a region's topic must have exactly one")]
    TopicPartitions { topic: String, partitions: usize },

    #[error("a record for topic {topic} was not delivered")]
    Delivery {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    #[error("{pending} record(s) for topic {topic} still unacknowledged after {after:?}")]
    PublishTimeout {
        topic: String,
        pending: usize,
        after: std::time::Duration,
    },

    #[error("a change envelope could not be encoded")]
    Encode {
        #[source]
        source: envelope::Error,
    },

    #[error("capture: a change of table {table:?}, which the table policy does not replicate")]
    NotReplicated { table: String },

    #[error("capture: {table} {entity}: stamped field `{field}` has no value in the captured row ({why})")]
    StampedValueMissing {
        table: String,
        entity: uuid::Uuid,
        field: String,
        why: &'static str,
    },

    #[error("capture: {table}.{field}: {reason}")]
    CanonicalValue {
        table: String,
        field: String,
        reason: String,
    },

    #[error("capture: {table}.{column}: the ids embedded in it cannot be translated")]
    EmbeddedIds {
        table: String,
        column: String,
        #[source]
        source: canonical::Error,
    },

    #[error("this database is not set up for capture (schema `replicator` or its local region is missing)")]
    NotSetUp,

    #[error("snapshot: {problem}")]
    Snapshot { problem: String },

    #[error("apply: {table}.{field}: {reason}")]
    LocalValue {
        table: String,
        field: String,
        reason: String,
    },

    #[error("apply: {table} {entity}: the merge refused the change")]
    Merge {
        table: String,
        entity: uuid::Uuid,
        #[source]
        source: conflict::Error,
    },

    #[error("apply: {problem}")]
    Unappliable { problem: String },

    #[error("configuration: {problem}")]
    Config { problem: String },

    /// One setting of the configuration (file, environment or flag) is wrong; `key` is its
    /// dotted name in the file (`applier.sources`), `fix` what to do.
    #[error("configuration: {key}: {problem}")]
    Setting {
        key: String,
        problem: String,
        fix: String,
    },

    #[error("database TLS: {problem}")]
    DatabaseTls { problem: String },

    #[error("cannot serve metrics on {address}")]
    MetricsListen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("apply: {table} {entity}: {context}")]
    ApplyRow {
        table: String,
        entity: uuid::Uuid,
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("no {kind} with id {id} in this region")]
    NoSuchRecord { kind: &'static str, id: i64 },

    #[error("conflict {id} cannot be resolved that way: {reason}")]
    CannotResolve { id: i64, reason: String },

    #[error("teardown cannot run now: {reason}")]
    TeardownBlocked { reason: String },

    #[error("teardown was not confirmed (expected {expected:?})")]
    NotConfirmed { expected: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A wrapper for `map_err` that names what was being done.
    pub(crate) fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| Error::Postgres { context, source }
    }

    /// What the operator should do.
    pub fn hint(&self) -> String {
        match self {
            Error::InvalidName { .. } => {
                "use 1 to 63 characters from a-z, 0-9 and `_`, starting with a letter or `_`".into()
            }
            Error::InvalidDatabaseUrl { .. } => {
                "e.g. `host=db.internal dbname=superset user=replicator` or `postgresql://replicator@db.internal/superset`; give a password through PGPASSWORD or REPLICATOR_DATABASE_URL, not on the command line".into()
            }
            Error::Connect { .. } => {
                "check that the database is up and reachable, and the user, password and dbname".into()
            }
            Error::Postgres { source, .. } => match source.code() {
                Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
                    "setup must run as the owner of Superset's tables, with the REPLICATION attribute (or as a superuser)".into()
                }
                Some(code) if *code == SqlState::LOCK_NOT_AVAILABLE => {
                    "a table was locked by a long transaction; run setup again when Superset is quieter".into()
                }
                _ => "see the PostgreSQL error below; setup is idempotent and can be run again once it is fixed".into(),
            },
            Error::SetupBusy => "wait for the other setup to finish, then run setup again".into(),
            Error::RegionMismatch { stored, .. } => format!(
                "a region id is inside every version a region writes, so it never changes: run this sidecar with `--region {stored}`, or set up a new database for the new region"
            ),
            Error::ForeignSchema => {
                "rename or drop that schema (it is not ours), then run setup again".into()
            }
            Error::MigrationChanged { .. } => {
                "this binary's migrations do not match the database's history: use the replicator release that set it up, or restore the schema from a backup".into()
            }
            Error::SchemaTooNew { .. } => {
                "a newer replicator has set up this database: upgrade this binary".into()
            }
            Error::MissingTable { .. } | Error::MissingColumn { .. } => {
                "this database is not Superset 6.1's schema: run `superset db upgrade`, or use a replicator built for this Superset version".into()
            }
            Error::PublicationForAllTables { .. } => {
                "choose another `--publication` name, or drop that publication if nothing uses it".into()
            }
            Error::SlotPlugin { .. } | Error::SlotElsewhere { .. } => {
                "choose another `--slot` name, or drop that slot if nothing uses it (`SELECT pg_drop_replication_slot(...)`)".into()
            }
            Error::WalLevel { .. } => {
                "set `wal_level = logical` in postgresql.conf and restart PostgreSQL".into()
            }
            Error::SlotGone { .. } => "the slot held every change not yet published: the reader never recreates it, which would silently skip them; run `replicator setup` to create a new slot, then bootstrap this region again from a snapshot (see the runbook)".into(),
            Error::ReplicationConfig { .. } => {
                "use a `host=… port=… user=… dbname=…` target with one TCP host".into()
            }
            Error::Replication { source, .. } => match source {
                pgrepl::Error::SlotMissing { .. } => "the slot is gone, and with it every change not yet published: never recreate it by hand; run `replicator setup` to create a new slot, then bootstrap this region again from a snapshot (see the runbook)".into(),
                pgrepl::Error::SlotInvalidated { .. } => "the slot lost WAL it still needed (max_slot_wal_keep_size): changes are missing; recreate the slot with `replicator setup` and bootstrap this region again from a snapshot (see the runbook)".into(),
                pgrepl::Error::Tls(_) => "TLS to the database failed as `sslmode` requires: check that the server has `ssl = on`, that `sslrootcert` holds the CA of its certificate, and (verify-full) that the url's host is a name in the certificate".into(),
                pgrepl::Error::SlotInUse { .. } => "another reader is streaming this slot; only one sidecar may run per region (this one retries)".into(),
                _ if source.is_retryable() => "the replication connection failed; the reader reconnects and resumes at the slot's confirmed position".into(),
                _ => "check the replication user's REPLICATION attribute, pg_hba.conf and the database settings".into(),
            },
            Error::Decode { .. } | Error::StreamShape { .. } => {
                "the slot still holds every unconfirmed change; report this with the log line, and run a replicator built for this PostgreSQL and schema version".into()
            }
            Error::KafkaSetting { .. } => {
                "fix the Kafka client setting; the replicator sets idempotence, acks, in-flight limits, timeouts and compression itself".into()
            }
            Error::Kafka { source, .. } | Error::Delivery { source, .. }
                if kafka_action(source) == Action::Operator =>
            {
                "the broker refused: check the Kafka credentials and ACLs (Describe, Create and Write on the topic, IdempotentWrite on the cluster) and the topic's `max.message.bytes`".into()
            }
            Error::Kafka { .. } => {
                "check that the broker is up and reachable from this host (bootstrap servers, TLS and SASL settings)".into()
            }
            Error::Delivery { .. } | Error::PublishTimeout { .. } => {
                "the broker did not acknowledge records in time; publishing restarts from the slot's confirmed position (only the unacknowledged tail is sent again). If it persists, check the broker's health and reachability".into()
            }
            Error::TopicPartitions { .. } => {
                "one partition per region topic keeps the source commit order: recreate the topic with one partition, or choose another topic name".into()
            }
            Error::Encode { .. } => {
                "a bug: a change envelope does not fit its schema; report it with the log line".into()
            }
            Error::NotReplicated { .. } => {
                "the publication publishes a table this binary's policy does not replicate: run `replicator setup` with this binary, so that the publication matches its policy".into()
            }
            Error::StampedValueMissing { .. } => {
                "a bug: the capture triggers stamp only columns whose value changed, and PostgreSQL always sends a changed TOAST value in full, so a stamped column is always in the captured row; nothing was published for this change (the slot still holds it). Report it with the log line".into()
            }
            Error::CanonicalValue { .. } => {
                "the value is not in the text form the reader expects (text format, DateStyle ISO, a UTF8 database) or the policy does not match the schema; nothing was published for this change (the slot still holds it). Report it with the log line".into()
            }
            Error::EmbeddedIds { .. } => {
                "a bug: canonical form and the table policy disagree about this column; nothing was published for this change (the slot still holds it). Report it with the log line".into()
            }
            Error::NotSetUp => {
                "run `replicator setup --region <id>` against this database first".into()
            }
            Error::LocalValue { .. } => {
                "the change cannot be written in this region's terms (a value its column cannot hold, a column this database lacks, or a local id where only uuids belong): the applier quarantines it with this reason; check that both regions run the same Superset and replicator versions".into()
            }
            Error::Config { .. } => {
                "fix the named setting (see `replicator <command> --help`) and start again".into()
            }
            Error::Setting { fix, .. } => fix.clone(),
            Error::DatabaseTls { .. } => {
                "check `sslmode` (disable, prefer, require, verify-ca, verify-full) and `sslrootcert` (a readable PEM file of the CA that signed the server's certificate, or `system`) in the database url".into()
            }
            Error::MetricsListen { .. } => {
                "another process holds the port, or the address is not this host's: choose another with `metrics.listen` (REPLICATOR_METRICS_LISTEN, --metrics-listen), or `off` to serve no metrics".into()
            }
            Error::Merge { .. } | Error::Unappliable { .. } | Error::ApplyRow { .. } => {
                "the applier quarantined the source transaction with this reason and went on; read it with `replicator quarantine list`, fix its cause (often a region running another Superset or replicator version), then replay it as docs/operations.md describes (move the source's `resume_offset` back)".into()
            }
            Error::Snapshot { .. } => {
                "what a failed snapshot published is harmless (full entity states merge away; a snapshot transaction without its commit record is never applied): report this with the log line, then run the snapshot again".into()
            }
            Error::NoSuchRecord { kind, .. } => format!(
                "ids are per region (each region keeps its own log under its own ids): list this region's with `replicator {} list`",
                if *kind == "conflict" { "conflicts" } else { "quarantine" }
            ),
            Error::CannotResolve { .. } => {
                "settle it in Superset instead (edit or recreate the object in one region; the edit replicates everywhere), or choose another `--keep`".into()
            }
            Error::TeardownBlocked { .. } => {
                "stop this region's sidecar (`replicator run`, `capture` or `apply`) first, then run teardown again".into()
            }
            Error::NotConfirmed { .. } => {
                "nothing was changed; run teardown again and type the region id when asked, or pass `--yes` (see `--dry-run` for what it drops)".into()
            }
        }
    }

    /// Who acts on this error.
    pub fn action(&self) -> Action {
        match self {
            Error::InvalidName { .. }
            | Error::InvalidDatabaseUrl { .. }
            | Error::RegionMismatch { .. }
            | Error::ForeignSchema
            | Error::SchemaTooNew { .. }
            | Error::MissingTable { .. }
            | Error::MissingColumn { .. }
            | Error::PublicationForAllTables { .. }
            | Error::SlotPlugin { .. }
            | Error::SlotElsewhere { .. }
            | Error::WalLevel { .. } => Action::Operator,
            Error::ReplicationConfig { .. } | Error::SlotGone { .. } => Action::Operator,
            Error::Replication { source, .. } => {
                // A slot that vanished or lost WAL mid-session is the same operator error.
                if source.is_retryable() {
                    Action::Retry
                } else {
                    Action::Operator
                }
            }
            Error::MigrationChanged { .. } | Error::Decode { .. } | Error::StreamShape { .. } => {
                Action::Fatal
            }
            Error::Connect { .. } | Error::SetupBusy => Action::Retry,
            Error::Postgres { source, .. } => postgres_action(source),
            Error::KafkaSetting { .. } | Error::TopicPartitions { .. } => Action::Operator,
            Error::Kafka { source, .. } | Error::Delivery { source, .. } => kafka_action(source),
            Error::PublishTimeout { .. } => Action::Retry,
            Error::Encode { .. } => Action::Fatal,
            Error::NotReplicated { .. } => Action::Operator,
            Error::StampedValueMissing { .. }
            | Error::CanonicalValue { .. }
            | Error::EmbeddedIds { .. } => Action::Fatal,
            Error::NotSetUp => Action::Operator,
            Error::Snapshot { .. } => Action::Fatal,
            Error::Config { .. } => Action::Operator,
            Error::Setting { .. } | Error::MetricsListen { .. } | Error::DatabaseTls { .. } => {
                Action::Operator
            }
            Error::LocalValue { .. } | Error::Merge { .. } | Error::Unappliable { .. } => {
                Action::Quarantine
            }
            Error::NoSuchRecord { .. }
            | Error::CannotResolve { .. }
            | Error::TeardownBlocked { .. }
            | Error::NotConfirmed { .. } => Action::Operator,
            Error::ApplyRow { source, .. } => {
                // A value (class 22) or constraint (23) this database refuses: the row is at
                // fault, not the connection or the privileges.
                let class = source.code().map(|c| c.code().get(..2).unwrap_or_default());
                match class {
                    Some("22" | "23") => Action::Quarantine,
                    _ => postgres_action(source),
                }
            }
        }
    }
}

/// Classifies a PostgreSQL error by its SQLSTATE class.
fn postgres_action(error: &tokio_postgres::Error) -> Action {
    let Some(code) = error.code() else {
        // No SQLSTATE: the connection broke or the client failed; both may pass.
        return Action::Retry;
    };
    let class = code.code().get(..2).unwrap_or_default();
    match class {
        // connection exception, transaction rollback (serialization, deadlock), insufficient
        // resources, operator intervention (shutdown), system error
        "08" | "40" | "53" | "57" | "58" => Action::Retry,
        "55" if *code == SqlState::LOCK_NOT_AVAILABLE => Action::Retry,
        // e.g. the replication origin still held by the session of an applier that just died
        "55" if *code == SqlState::OBJECT_IN_USE => Action::Retry,
        // privileges, invalid authorization, configuration limits, object state
        "42" if *code == SqlState::INSUFFICIENT_PRIVILEGE => Action::Operator,
        "28" | "55" | "54" => Action::Operator,
        // syntax errors and the like in our own SQL are our bug
        "42" => Action::Fatal,
        _ => Action::Operator,
    }
}

/// Classifies a Kafka error: refusals a person must fix (credentials, ACLs, sizes, settings), or
/// anything else, which a new client may get past (broker down, timeouts, fatal idempotence state).
fn kafka_action(error: &rdkafka::error::KafkaError) -> Action {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode as Code;
    let code = match error {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => return Action::Operator,
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    };
    match code {
        Some(
            Code::TopicAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::GroupAuthorizationFailed
            | Code::TransactionalIdAuthorizationFailed
            | Code::SaslAuthenticationFailed
            | Code::Authentication
            | Code::SSL
            | Code::MessageSizeTooLarge
            | Code::InvalidRequiredAcks
            | Code::InvalidConfig
            | Code::PolicyViolation
            | Code::InvalidPartitions
            | Code::InvalidReplicationFactor
            | Code::UnsupportedCompressionType,
        ) => Action::Operator,
        _ => Action::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_errors_have_hints_and_say_who_acts() {
        let mismatch = Error::RegionMismatch {
            stored: "us".into(),
            requested: "eu".into(),
        };
        assert_eq!(mismatch.action(), Action::Operator);
        assert!(mismatch.hint().contains("--region us"));
        assert_eq!(Error::SetupBusy.action(), Action::Retry);
        assert_eq!(
            Error::MigrationChanged {
                version: 1,
                name: "state".into()
            }
            .action(),
            Action::Fatal
        );
    }
}
