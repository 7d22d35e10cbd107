//! The harness's one error type. A harness failure fails the test with the operator-style hint
//! that gets the lab going again.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("the lab is not up ({reason}); start it with `dev/lab --name test up` (or run every test with `dev/lab test`)")]
    LabNotUp { reason: String },
    #[error("region `{0}` is not part of the lab")]
    UnknownRegion(String),
    #[error("postgres: {context}")]
    Postgres {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("kafka: {context}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("{0}")]
    Other(String),
}

impl HarnessError {
    pub fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| Self::Postgres { context, source }
    }

    pub(crate) fn kafka(
        context: impl Into<String>,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        let context = context.into();
        move |source| Self::Kafka { context, source }
    }
}
