//! TLS against a fake server on loopback: a CA and a server certificate made here (rcgen), the
//! PostgreSQL `SSLRequest` exchange, and just enough of startup for a connection to complete.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::conn::PgConn;
use crate::Config;

/// A CA, written as PEM to a file of its own, that signs server certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: PathBuf,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let pem = std::env::temp_dir().join(format!(
            "pgrepl-tls-{}-{name}-{}.pem",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::write(&pem, cert.pem()).unwrap();
        Ca { cert, key, pem }
    }

    /// A server's TLS configuration with a certificate for `names`, signed by this CA.
    fn server(&self, names: &[&str]) -> Arc<ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let leaf = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone()], key)
                .unwrap();
        Arc::new(config)
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pem);
    }
}

/// Answers startup: no password, server version 15, ready.
async fn serve_startup<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> std::io::Result<()> {
    let len = stream.read_u32().await? as usize;
    let mut startup = vec![0; len.saturating_sub(4)];
    stream.read_exact(&mut startup).await?;
    let mut out = vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0];
    let body = b"server_version\x0015.4\x00";
    out.push(b'S');
    out.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
    stream.write_all(&out).await?;
    stream.flush().await?;
    // Wait for the client to go (it drops the connection).
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    Ok(())
}

/// Connects with `settings` to a fake server that answers `SSLRequest` with TLS (`Some`) or
/// `N`; the result, and whether the connection is encrypted.
async fn connect(server: Option<Arc<ServerConfig>>, settings: TlsSettings) -> Result<bool, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut request = [0u8; 8];
        socket.read_exact(&mut request).await?;
        assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47], "SSLRequest");
        match server {
            Some(config) => {
                socket.write_all(b"S").await?;
                match tokio_rustls::TlsAcceptor::from(config).accept(socket).await {
                    Ok(tls) => serve_startup(tls).await,
                    Err(_) => Ok(()), // the client refused the certificate
                }
            }
            None => {
                socket.write_all(b"N").await?;
                serve_startup(socket).await
            }
        }
    });
    let config = Config::new("localhost", "u")
        .with_port(port)
        .with_tls(settings);
    let conn = PgConn::connect(&config).await?;
    Ok(conn.is_encrypted())
}

fn settings(mode: SslMode, root: Option<&Ca>) -> TlsSettings {
    TlsSettings {
        mode,
        root_cert: root.map(|ca| ca.pem.clone()),
    }
}

#[tokio::test]
async fn verify_full_checks_the_chain_and_the_host_name() {
    let ca = Ca::new("ca");
    let ok = connect(
        Some(ca.server(&["localhost"])),
        settings(SslMode::VerifyFull, Some(&ca)),
    );
    assert!(ok.await.unwrap(), "encrypted");
    let wrong_name = connect(
        Some(ca.server(&["db.example"])),
        settings(SslMode::VerifyFull, Some(&ca)),
    );
    let err = wrong_name.await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err}");
    assert!(!err.is_retryable());
    let other_ca = Ca::new("other");
    let untrusted = connect(
        Some(ca.server(&["localhost"])),
        settings(SslMode::VerifyFull, Some(&other_ca)),
    );
    assert!(matches!(untrusted.await, Err(Error::Tls(_))));
}

#[tokio::test]
async fn verify_ca_checks_the_chain_only() {
    let ca = Ca::new("ca");
    let other_name = connect(
        Some(ca.server(&["db.example"])),
        settings(SslMode::VerifyCa, Some(&ca)),
    );
    assert!(other_name.await.unwrap());
    let other_ca = Ca::new("other");
    let untrusted = connect(
        Some(ca.server(&["localhost"])),
        settings(SslMode::VerifyCa, Some(&other_ca)),
    );
    assert!(matches!(untrusted.await, Err(Error::Tls(_))));
    // `require` with a root file is `verify-ca`, as in libpq.
    let required = connect(
        Some(ca.server(&["localhost"])),
        settings(SslMode::Require, Some(&other_ca)),
    );
    assert!(matches!(required.await, Err(Error::Tls(_))));
}

#[tokio::test]
async fn require_and_prefer_encrypt_without_verifying() {
    let ca = Ca::new("ca");
    for mode in [SslMode::Require, SslMode::Prefer] {
        let any = connect(Some(ca.server(&["db.example"])), settings(mode, None));
        assert!(any.await.unwrap(), "{mode:?}");
    }
}

#[tokio::test]
async fn a_server_without_tls_is_refused_unless_tls_is_only_preferred() {
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        let ca = Ca::new("ca");
        let err = connect(None, settings(mode, Some(&ca))).await.unwrap_err();
        assert!(
            err.to_string().contains("does not accept TLS"),
            "{mode:?}: {err}"
        );
    }
    assert!(
        !connect(None, settings(SslMode::Prefer, None))
            .await
            .unwrap(),
        "plaintext"
    );
}
