//! TLS for the sidecar's ordinary PostgreSQL connections: libpq's `sslmode` and `sslrootcert`
//! taken out of the connection string (tokio-postgres knows neither `verify-ca`, `verify-full`
//! nor `sslrootcert`) and honoured through rustls with the same semantics as the replication
//! connection ([`pgrepl::tls`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pgrepl::{SslMode, TlsSettings};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::error::Error;

/// `text` without its `sslmode` and `sslrootcert`, and what they said.
pub(super) fn split(text: &str) -> Result<(String, TlsSettings), Error> {
    let trimmed = text.trim_start();
    let (kept, removed) =
        if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
            split_url(trimmed)
        } else {
            split_key_values(text)
        };
    let mut settings = TlsSettings::default();
    for (key, value) in removed {
        match key.as_str() {
            "sslmode" => {
                settings.mode = SslMode::parse(&value).ok_or_else(|| Error::DatabaseTls {
                    problem: format!("invalid sslmode {value:?}"),
                })?;
            }
            _ => {
                settings.root_cert =
                    Some(value.into()).filter(|p: &std::path::PathBuf| !p.as_os_str().is_empty())
            }
        }
    }
    Ok((kept, settings))
}

fn is_tls_key(key: &str) -> bool {
    matches!(key, "sslmode" | "sslrootcert")
}

/// libpq `key = value` pairs (values may be single-quoted with `\` escapes).
fn split_key_values(text: &str) -> (String, Vec<(String, String)>) {
    let mut kept = String::new();
    let mut removed = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return (kept, removed);
        }
        let mut token = String::new();
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        token.push_str(&key);
        while let Some(c) = chars.next_if(|c| c.is_whitespace()) {
            token.push(c);
        }
        match chars.next() {
            Some('=') => token.push('='),
            // Malformed: leave the whole rest to tokio-postgres, which reports it.
            other => {
                token.extend(other);
                token.extend(chars);
                kept.push(' ');
                kept.push_str(&token);
                return (kept, removed);
            }
        }
        while let Some(c) = chars.next_if(|c| c.is_whitespace()) {
            token.push(c);
        }
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            token.push('\'');
            while let Some(c) = chars.next() {
                token.push(c);
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            token.push(escaped);
                            value.push(escaped);
                        }
                    }
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                token.push(c);
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        token.push(escaped);
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if is_tls_key(&key) {
            removed.push((key, value));
        } else {
            if !kept.is_empty() {
                kept.push(' ');
            }
            kept.push_str(&token);
        }
    }
}

/// A `postgresql://` url: its query parameters.
fn split_url(text: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = text.split_once('?') else {
        return (text.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    for param in query.split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = percent_decode(key);
        if is_tls_key(&key) {
            removed.push((key, percent_decode(value)));
        } else {
            kept.push(param);
        }
    }
    let text = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (text, removed)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What tokio-postgres itself is told: it knows `disable`, `prefer` and `require`; the
/// verification of `verify-*` is the connector's.
pub(super) fn postgres_mode(mode: SslMode) -> tokio_postgres::config::SslMode {
    match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    }
}

/// tokio-postgres's TLS connector over a rustls configuration built by
/// [`TlsSettings::client_config`].
#[derive(Clone)]
pub(super) struct MakeRustls(pub(super) Arc<ClientConfig>);

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeRustls")
    }
}

/// One connection's handshake.
pub(super) struct Connect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// A TLS session to the server.
pub(super) struct Stream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> std::io::Result<Connect> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(Connect {
            config: self.0.clone(),
            name,
        })
    }
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Stream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(Stream(Box::new(tls)))
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for Stream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.get_mut().0.as_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_the_connection_string() {
        let cases = [
            (
                "host=db user=u sslmode=verify-full sslrootcert='/etc/ca dir/ca.pem' dbname=s",
                "host=db user=u dbname=s",
                SslMode::VerifyFull,
                Some("/etc/ca dir/ca.pem"),
            ),
            (
                "host=db password='a b\\'c'",
                "host=db password='a b\\'c'",
                SslMode::Prefer,
                None,
            ),
            (
                "postgresql://u@db/s?sslmode=verify-ca&application_name=x&sslrootcert=%2Fca.pem",
                "postgresql://u@db/s?application_name=x",
                SslMode::VerifyCa,
                Some("/ca.pem"),
            ),
            (
                "postgres://u@db/s?sslmode=require",
                "postgres://u@db/s",
                SslMode::Require,
                None,
            ),
            (
                "host = db sslmode = disable",
                "host = db",
                SslMode::Disable,
                None,
            ),
        ];
        for (text, kept, mode, root) in cases {
            let (rest, tls) = split(text).unwrap();
            assert_eq!(rest, kept, "{text}");
            assert_eq!(tls.mode, mode, "{text}");
            assert_eq!(
                tls.root_cert.as_deref(),
                root.map(std::path::Path::new),
                "{text}"
            );
        }
        assert!(split("host=db sslmode=sometimes").is_err());
    }
}
