//! Connection settings, parsed from libpq `key=value` strings and `postgres://` URLs.
//!
//! The parser follows libpq's syntax (quoted values with `\'` and `\\` escapes, percent-encoded
//! URLs, URL query parameters) but accepts only what this client honours: an option it cannot
//! honour is an error, never silently ignored. `sslmode` (and the URL's `ssl=true`) and
//! `sslrootcert` are honoured as [`crate::tls`] says; client certificates (`sslcert`, `sslkey`),
//! multiple hosts, Unix-domain sockets, `passfile`, `service` and the `PG*` environment variables
//! are not supported.
//!
//! The password is held in a [`Secret`], which never appears in `Debug` or `Display` output, and
//! no error message quotes it (nor the URL it came from).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::tls::{SslMode, TlsSettings};
use crate::Error;

/// A string that must not leak into logs: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call only where it is used (authentication), never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// Where and how to connect. Build with [`Config::new`] and the `with_*` methods, or parse a
/// libpq connection string or URL with [`str::parse`] / [`Config::parse`].
///
/// `Display` renders a libpq connection string **without the password**, for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    host: String,
    port: u16,
    user: String,
    password: Option<Secret>,
    dbname: Option<String>,
    application_name: Option<String>,
    options: Option<String>,
    connect_timeout: Option<Duration>,
    allow_cleartext_password: bool,
    tls: TlsSettings,
}

/// libpq's default port.
pub const DEFAULT_PORT: u16 = 5432;

impl Config {
    /// Settings for `user` at `host` (a name or an IP address) on port 5432, database = user.
    pub fn new(host: impl Into<String>, user: impl Into<String>) -> Self {
        Config {
            host: host.into(),
            port: DEFAULT_PORT,
            user: user.into(),
            password: None,
            dbname: None,
            application_name: None,
            options: None,
            connect_timeout: None,
            allow_cleartext_password: false,
            tls: TlsSettings::default(),
        }
    }

    /// `sslmode` and `sslrootcert` (see [`crate::tls`]); the default is `prefer`.
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.tls = tls;
        self
    }

    /// How TLS is negotiated.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// Parses a libpq `key=value` connection string or a `postgres://` / `postgresql://` URL.
    pub fn parse(text: &str) -> Result<Config, Error> {
        text.parse()
    }

    /// The TCP port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The password, for SCRAM-SHA-256, md5 or (if allowed) cleartext authentication.
    pub fn with_password(mut self, password: impl Into<Secret>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The database the logical walsender attaches to (default: the user name).
    pub fn with_dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = Some(dbname.into());
        self
    }

    /// `application_name`, shown in `pg_stat_replication` and `pg_stat_activity`.
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Command-line options for the server backend (libpq `options`), e.g.
    /// `-c wal_sender_timeout=30s`.
    pub fn with_options(mut self, options: impl Into<String>) -> Self {
        self.options = Some(options.into());
        self
    }

    /// A bound on TCP connect plus startup and authentication (default: none, as in libpq).
    pub fn with_connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether to send the password in cleartext if the server asks for it (default: no).
    /// Without TLS a cleartext password crosses the network readable; only allow it on
    /// loopback or a trusted network.
    pub fn with_cleartext_password_allowed(mut self, allowed: bool) -> Self {
        self.allow_cleartext_password = allowed;
        self
    }

    /// The host name or IP address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password, if one is configured.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The database name (the user name when none was given, as in libpq).
    pub fn dbname(&self) -> &str {
        self.dbname.as_deref().unwrap_or(&self.user)
    }

    /// `application_name`, if set.
    pub fn application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }

    /// Backend command-line options, if set.
    pub fn options(&self) -> Option<&str> {
        self.options.as_deref()
    }

    /// The bound on connect plus authentication, if any.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// Whether a cleartext password may be sent.
    pub fn cleartext_password_allowed(&self) -> bool {
        self.allow_cleartext_password
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host={} port={} user={} dbname={}",
            quote_value(&self.host),
            self.port,
            quote_value(&self.user),
            quote_value(self.dbname())
        )?;
        if let Some(name) = &self.application_name {
            write!(f, " application_name={}", quote_value(name))?;
        }
        if let Some(options) = &self.options {
            write!(f, " options={}", quote_value(options))?;
        }
        if let Some(timeout) = self.connect_timeout {
            write!(f, " connect_timeout={}", timeout.as_secs())?;
        }
        if self.tls.mode != SslMode::default() {
            write!(f, " sslmode={}", self.tls.mode.as_str())?;
        }
        if let Some(root) = &self.tls.root_cert {
            write!(
                f,
                " sslrootcert={}",
                quote_value(&root.display().to_string())
            )?;
        }
        Ok(())
    }
}

/// Quotes a conninfo value when it needs it.
fn quote_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && c != '\'' && c != '\\');
    if plain {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

impl FromStr for Config {
    type Err = Error;

    fn from_str(text: &str) -> Result<Config, Error> {
        let mut builder = Builder::default();
        let trimmed = text.trim_start();
        if let Some(rest) = trimmed
            .strip_prefix("postgresql://")
            .or_else(|| trimmed.strip_prefix("postgres://"))
        {
            parse_url(rest, &mut builder)?;
        } else {
            parse_key_values(text, &mut builder)?;
        }
        builder.finish()
    }
}

/// Settings gathered while parsing, before defaults and checks.
#[derive(Default)]
struct Builder {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<Secret>,
    dbname: Option<String>,
    application_name: Option<String>,
    fallback_application_name: Option<String>,
    options: Option<String>,
    connect_timeout: Option<Duration>,
    tls: TlsSettings,
}

impl Builder {
    /// Applies one option. Values are never echoed in errors except for non-secret scalars.
    fn apply(&mut self, key: &str, value: String) -> Result<(), Error> {
        let non_empty = |v: String| (!v.is_empty()).then_some(v);
        match key {
            "host" => {
                if value.contains(',') {
                    return Err(Error::Unsupported("multiple hosts".into()));
                }
                if value.starts_with('/') || value.starts_with('@') {
                    return Err(Error::Unsupported("Unix-domain sockets".into()));
                }
                self.host = non_empty(value);
            }
            "port" => {
                if value.contains(',') {
                    return Err(Error::Unsupported("multiple ports".into()));
                }
                if !value.is_empty() {
                    let port = value
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| Error::Config(format!("invalid port {value:?}")))?;
                    self.port = Some(port);
                }
            }
            "user" => self.user = non_empty(value),
            "password" => self.password = Some(Secret(value)),
            "dbname" => self.dbname = non_empty(value),
            "application_name" => self.application_name = Some(value),
            "fallback_application_name" => self.fallback_application_name = Some(value),
            "options" => self.options = non_empty(value),
            "connect_timeout" => {
                let seconds: i64 = value.trim().parse().map_err(|_| {
                    Error::Config(format!("invalid connect_timeout {value:?}: not an integer"))
                })?;
                // libpq: zero or negative means wait forever; 1 is raised to 2 seconds.
                self.connect_timeout = u64::try_from(seconds)
                    .ok()
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(s.max(2)));
            }
            "sslmode" => {
                self.tls.mode = SslMode::parse(&value)
                    .ok_or_else(|| Error::Config(format!("invalid sslmode {value:?}")))?;
            }
            "sslrootcert" => self.tls.root_cert = non_empty(value).map(Into::into),
            // The URL form of sslmode=require.
            "ssl" => match value.as_str() {
                "true" => self.tls.mode = SslMode::Require,
                "false" => {}
                _ => return Err(Error::Config(format!("invalid ssl {value:?}"))),
            },
            "gssencmode" => match value.as_str() {
                "disable" | "prefer" => {}
                "require" => return Err(Error::Unsupported("GSSAPI encryption".into())),
                _ => return Err(Error::Config(format!("invalid gssencmode {value:?}"))),
            },
            "channel_binding" => match value.as_str() {
                "disable" | "prefer" => {}
                "require" => {
                    return Err(Error::Unsupported("channel binding (it needs TLS)".into()))
                }
                _ => return Err(Error::Config(format!("invalid channel_binding {value:?}"))),
            },
            "replication" => {
                if value != "database" {
                    return Err(Error::Config(format!(
                        "replication={value:?}: this client always connects with \
                         replication=database (logical walsender)"
                    )));
                }
            }
            "client_encoding" => {
                if !value.eq_ignore_ascii_case("utf8") && !value.eq_ignore_ascii_case("utf-8") {
                    return Err(Error::Unsupported(format!(
                        "client_encoding {value:?} (only UTF8)"
                    )));
                }
            }
            "hostaddr"
            | "passfile"
            | "service"
            | "require_auth"
            | "sslcert"
            | "sslkey"
            | "sslcrl"
            | "sslcrldir"
            | "sslpassword"
            | "sslsni"
            | "sslcompression"
            | "ssl_min_protocol_version"
            | "ssl_max_protocol_version"
            | "requirepeer"
            | "krbsrvname"
            | "gsslib"
            | "gssdelegation"
            | "target_session_attrs"
            | "load_balance_hosts"
            | "keepalives"
            | "keepalives_idle"
            | "keepalives_interval"
            | "keepalives_count"
            | "tcp_user_timeout" => {
                return Err(Error::Unsupported(format!("connection option {key}")));
            }
            _ => {
                return Err(Error::Config(format!(
                    "unknown connection option {:?}",
                    key.chars().take(64).collect::<String>()
                )))
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Config, Error> {
        let user = self
            .user
            .ok_or_else(|| Error::Config("no user given (user=... or user@ in the URL)".into()))?;
        Ok(Config {
            host: self.host.unwrap_or_else(|| "localhost".to_owned()),
            port: self.port.unwrap_or(DEFAULT_PORT),
            user,
            password: self.password,
            dbname: self.dbname,
            application_name: self.application_name.or(self.fallback_application_name),
            options: self.options,
            connect_timeout: self.connect_timeout,
            allow_cleartext_password: false,
            tls: self.tls,
        })
    }
}

/// libpq `key = value` pairs separated by whitespace; values may be single-quoted.
fn parse_key_values(text: &str, builder: &mut Builder) -> Result<(), Error> {
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(());
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(Error::Config(format!(
                "missing \"=\" after {:?} in the connection string",
                key.chars().take(64).collect::<String>()
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(Error::Config(format!(
                            "unterminated quoted value of {key:?} in the connection string"
                        )))
                    }
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(Error::Config(format!(
                                "unterminated quoted value of {key:?} in the connection string"
                            )))
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        builder.apply(&key, value)?;
    }
}

/// `[user[:password]@][host][:port][/dbname][?key=value&...]`, after the scheme.
fn parse_url(rest: &str, builder: &mut Builder) -> Result<(), Error> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        builder.apply("user", percent_decode(user, "user")?)?;
        if let Some(password) = password {
            builder.apply("password", percent_decode(password, "password")?)?;
        }
    }
    if hostport.contains(',') {
        return Err(Error::Unsupported("multiple hosts".into()));
    }
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| Error::Config("unterminated [IPv6 address] in the URL".into()))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                Error::Config("unexpected text after the [IPv6 address] in the URL".into())
            })?),
        };
        (host, port)
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    builder.apply("host", percent_decode(host, "host")?)?;
    if let Some(port) = port {
        builder.apply("port", percent_decode(port, "port")?)?;
    }
    if !path.is_empty() {
        builder.apply("dbname", percent_decode(path, "dbname")?)?;
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| Error::Config("a URL query parameter lacks \"=\"".into()))?;
        let key = percent_decode(key, "query parameter name")?;
        let value = percent_decode(value, "query parameter value")?;
        builder.apply(&key, value)?;
    }
    Ok(())
}

/// Decodes `%XX` escapes (not `+`, as libpq). `what` names the part in errors; the text is never
/// quoted because it may be a password.
fn percent_decode(text: &str, what: &str) -> Result<String, Error> {
    let invalid = || Error::Config(format!("invalid percent-encoding in the URL's {what}"));
    let mut bytes = Vec::with_capacity(text.len());
    let mut iter = text.bytes();
    while let Some(b) = iter.next() {
        if b == b'%' {
            let hi = iter.next().and_then(|h| char::from(h).to_digit(16));
            let lo = iter.next().and_then(|l| char::from(l).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    bytes.push(u8::try_from(hi * 16 + lo).map_err(|_| invalid())?)
                }
                _ => return Err(invalid()),
            }
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).map_err(|_| Error::Config(format!("the URL's {what} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::SslMode;

    #[test]
    fn parses_the_lab_conninfo() {
        let c: Config =
            "host=127.0.0.1 port=56432 user=postgres password=s3cr3t dbname=it_x application_name=replicator-it"
                .parse()
                .unwrap();
        assert_eq!(c.host(), "127.0.0.1");
        assert_eq!(c.port(), 56432);
        assert_eq!(c.user(), "postgres");
        assert_eq!(c.password().map(Secret::expose), Some("s3cr3t"));
        assert_eq!(c.dbname(), "it_x");
        assert_eq!(c.application_name(), Some("replicator-it"));
        assert!(!c.cleartext_password_allowed());
    }

    #[test]
    fn quoting_and_escapes_follow_libpq() {
        let c = Config::parse(
            r"user = 'o\'brien'  password='a b\\c' options='-c wal_sender_timeout=3s' dbname=x\ y",
        )
        .unwrap();
        assert_eq!(c.user(), "o'brien");
        assert_eq!(c.password().map(Secret::expose), Some(r"a b\c"));
        assert_eq!(c.options(), Some("-c wal_sender_timeout=3s"));
        assert_eq!(c.dbname(), "x y");
        assert_eq!(c.host(), "localhost");
        assert_eq!(c.port(), 5432);
        assert!(Config::parse("user='unterminated").is_err());
        assert!(Config::parse("user").is_err());
    }

    #[test]
    fn parses_urls() {
        let c = Config::parse(
            "postgresql://rep%40ly:p%3Ass@db.example:6543/super%20set?application_name=r&connect_timeout=1",
        )
        .unwrap();
        assert_eq!(c.user(), "rep@ly");
        assert_eq!(c.password().map(Secret::expose), Some("p:ss"));
        assert_eq!(c.host(), "db.example");
        assert_eq!(c.port(), 6543);
        assert_eq!(c.dbname(), "super set");
        assert_eq!(c.application_name(), Some("r"));
        assert_eq!(c.connect_timeout(), Some(Duration::from_secs(2)));
        let v6 = Config::parse("postgres://u@[::1]:5433").unwrap();
        assert_eq!((v6.host(), v6.port(), v6.dbname()), ("::1", 5433, "u"));
        assert!(Config::parse("postgres://u@h:notaport/db").is_err());
        assert!(Config::parse("postgres://u@h1,h2/db").is_err());
        assert!(Config::parse("postgres://u@h/db?bad").is_err());
    }

    #[test]
    fn unhonoured_options_are_errors_and_tls_options_are_kept() {
        for text in [
            "user=u sslcert=/x",
            "user=u host=/var/run/postgresql",
            "user=u host=a,b",
            "user=u channel_binding=require",
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(matches!(err, Error::Unsupported(_)), "{text}: {err}");
        }
        for (text, mode, root) in [
            ("user=u sslmode=require", SslMode::Require, None),
            (
                "user=u sslmode=verify-full sslrootcert=/ca.pem",
                SslMode::VerifyFull,
                Some("/ca.pem"),
            ),
            (
                "postgres://u@h/db?sslmode=verify-ca",
                SslMode::VerifyCa,
                None,
            ),
            ("postgres://u@h/db?ssl=true", SslMode::Require, None),
            ("user=u", SslMode::Prefer, None),
        ] {
            let config = Config::parse(text).unwrap();
            assert_eq!(config.tls().mode, mode, "{text}");
            assert_eq!(
                config.tls().root_cert.as_deref(),
                root.map(std::path::Path::new),
                "{text}"
            );
        }
        assert!(matches!(
            Config::parse("user=u sslmode=bogus"),
            Err(Error::Config(_))
        ));
        let shown = Config::parse("user=u sslmode=verify-full sslrootcert=/ca.pem")
            .unwrap()
            .to_string();
        assert!(
            shown.ends_with("sslmode=verify-full sslrootcert=/ca.pem"),
            "{shown}"
        );
        assert!(Config::parse("user=u sslmode=prefer").is_ok());
        assert!(Config::parse("user=u sslmode=disable replication=database").is_ok());
        assert!(matches!(
            Config::parse("user=u replication=true"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Config::parse("user=u frobnicate=1"),
            Err(Error::Config(_))
        ));
        assert!(matches!(Config::parse("dbname=x"), Err(Error::Config(_))));
    }

    #[test]
    fn the_password_never_shows() {
        let text = "postgres://u:hunter2@h/db";
        let c = Config::parse(text).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_string().contains("hunter2"));
        assert_eq!(c.to_string(), "host=h port=5432 user=u dbname=db");
        let bad = Config::parse("postgres://u:hunter2%zz@h/db").unwrap_err();
        assert!(!bad.to_string().contains("hunter2"), "{bad}");
        let bad = Config::parse("password=hunter2 frob").unwrap_err();
        assert!(!bad.to_string().contains("hunter2"), "{bad}");
        assert_eq!(format!("{}", Secret::new("x")), "***");
    }

    #[test]
    fn display_round_trips() {
        let c = Config::new("h", "o'brien")
            .with_port(7)
            .with_dbname("a b")
            .with_application_name("app")
            .with_options("-c x=1")
            .with_password("pw");
        let back = Config::parse(&c.to_string()).unwrap();
        assert_eq!(
            back,
            c.clone().with_connect_timeout(None).without_password()
        );
    }

    impl Config {
        fn without_password(mut self) -> Self {
            self.password = None;
            self
        }
    }
}
