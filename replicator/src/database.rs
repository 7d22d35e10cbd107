//! The regional metadata database the sidecar works on: where it is, and a connection to it.
//!
//! **Contract.** A [`DatabaseUrl`] is parsed from a libpq `key=value` string or a `postgresql://`
//! url. It never shows its password: [`Display`](std::fmt::Display) and [`Debug`] print the target
//! as `user@host:port/dbname`, which is what every log line and error message uses. Like libpq,
//! a password missing from the url is taken from `PGPASSWORD`.
//!
//! TLS follows libpq's `sslmode` (`disable`, `prefer` — the default —, `require`, `verify-ca`,
//! `verify-full`) and `sslrootcert` (a PEM file of trusted roots, or `system`), over rustls, for
//! ordinary and replication connections alike ([`pgrepl::tls`] says what each mode checks).

use std::fmt;
use std::str::FromStr;

use pgrepl::{SslMode, TlsSettings};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};

mod tls;

/// Where the metadata database is, with its credentials.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: Config,
    tls: TlsSettings,
    /// The rustls configuration for `tls` (none with `sslmode=disable`).
    connector: Option<tls::MakeRustls>,
}

impl DatabaseUrl {
    /// Parses `text`; when it holds no password and `PGPASSWORD` is set, uses that.
    pub fn parse(text: &str) -> Result<Self> {
        let (text, tls) = tls::split(text)?;
        let mut config =
            Config::from_str(&text).map_err(|source| Error::InvalidDatabaseUrl { source })?;
        config.ssl_mode(tls::postgres_mode(tls.mode));
        let connector = match tls.mode {
            SslMode::Disable => None,
            _ => Some(tls::MakeRustls(tls.client_config().map_err(|e| {
                Error::DatabaseTls {
                    problem: e.to_string(),
                }
            })?)),
        };
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("replicator");
        }
        Ok(DatabaseUrl {
            config,
            tls,
            connector,
        })
    }

    /// The same target with `password` (from the configuration's secret), over the url's.
    pub fn with_password(mut self, password: &str) -> Self {
        self.config.password(password);
        self
    }

    /// The target without credentials: `user@host:port/dbname`.
    pub fn redacted(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let ports = self
            .config
            .get_ports()
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let user = self.config.get_user().unwrap_or("(default user)");
        let dbname = self.config.get_dbname().unwrap_or("(default database)");
        let host = if host.is_empty() {
            "localhost".to_owned()
        } else {
            host
        };
        let port = if ports.is_empty() {
            String::new()
        } else {
            format!(":{ports}")
        };
        format!("{user}@{host}{port}/{dbname}")
    }

    /// The same target for a replication connection (the reader's walsender session).
    pub fn replication_config(&self) -> Result<pgrepl::Config> {
        let host = match self.config.get_hosts() {
            [Host::Tcp(name)] => name.clone(),
            [] => "localhost".to_owned(),
            _ => {
                return Err(Error::ReplicationConfig {
                    problem: "give exactly one TCP host (Unix sockets are not supported yet)"
                        .into(),
                })
            }
        };
        let user = self.config.get_user().unwrap_or("postgres");
        let mut config = pgrepl::Config::new(host, user)
            .with_port(
                self.config
                    .get_ports()
                    .first()
                    .copied()
                    .unwrap_or(pgrepl::DEFAULT_PORT),
            )
            .with_application_name("replicator-reader")
            .with_connect_timeout(self.config.get_connect_timeout().copied());
        if let Some(dbname) = self.config.get_dbname() {
            config = config.with_dbname(dbname);
        }
        config = config.with_tls(self.tls.clone());
        if let Some(password) = self.config.get_password() {
            let password =
                String::from_utf8(password.to_vec()).map_err(|_| Error::ReplicationConfig {
                    problem: "the password is not UTF-8".into(),
                })?;
            config = config.with_password(password);
        }
        Ok(config)
    }

    /// Connects; the connection's driver runs as a task on the current runtime and ends when the
    /// client is dropped.
    pub async fn connect(&self) -> Result<Client> {
        let connect_error = |source| Error::Connect {
            target: self.redacted(),
            source,
        };
        let client = match &self.connector {
            None => {
                let (client, connection) =
                    self.config.connect(NoTls).await.map_err(connect_error)?;
                tokio::spawn(drive(connection));
                client
            }
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(connect_error)?;
                tokio::spawn(drive(connection));
                client
            }
        };
        Ok(client)
    }
}

/// Runs a connection's driver until the client is dropped.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(error) = connection.await {
        tracing::warn!(%error, "the database connection ended with an error");
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl FromStr for DatabaseUrl {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        DatabaseUrl::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_never_shows_its_password() {
        for text in [
            "postgresql://alice:s3cr3t-pw@db.internal:5433/superset",
            "host=db.internal port=5433 user=alice password=s3cr3t-pw dbname=superset",
        ] {
            let url = DatabaseUrl::parse(text).expect("valid");
            for shown in [url.to_string(), format!("{url:?}"), url.redacted()] {
                assert!(!shown.contains("s3cr3t-pw"), "{shown}");
                assert_eq!(url.redacted(), "alice@db.internal:5433/superset");
            }
        }
    }

    #[test]
    fn a_bad_url_is_an_operator_error_without_the_text() {
        let error = DatabaseUrl::parse("host=x password=s3cr3t-pw sslmode=bogus").expect_err("bad");
        assert_eq!(error.action(), crate::Action::Operator);
        let chain = format!("{error} {:?}", std::error::Error::source(&error));
        assert!(!chain.contains("s3cr3t-pw"), "{chain}");
    }
}
