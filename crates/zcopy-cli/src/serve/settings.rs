//! The settings of `zcopy serve`: one struct that is both the command-line flags and
//! the TOML config file's schema (each flag is a key of the same name), so the two
//! can't drift apart. Every value is checked when it is parsed, from either side.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use zcopy_http::encoding::Encoding;
use zcopy_http::rules::{Cors, Header};

/// A string that was checked (and maybe normalised) when parsed, from a flag or a
/// file. `$check` turns the text into the stored form or says what is wrong.
macro_rules! checked {
    ($(#[$m:meta])* $name:ident, $check:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<String, String> = $check;
                check(&s).map($name)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::try_from(s.to_owned())
            }
        }
    };
}

/// The engines `serve` can send bodies with.
pub const SERVER_ENGINES: [&str; 7] = [
    "auto",
    "sendfile",
    "splice",
    "mmap",
    "read-write",
    "direct",
    "uring",
];

checked!(
    /// An engine name `serve` accepts.
    EngineName,
    |s| {
        if SERVER_ENGINES.contains(&s) {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "unknown engine '{s}' (known: {})",
                SERVER_ENGINES.join(", ")
            ))
        }
    }
);

checked!(
    /// `follow`, `within-root` or `never`.
    Symlinks,
    |s| match s {
        "follow" | "within-root" | "never" => Ok(s.to_owned()),
        _ => Err(format!(
            "unknown policy '{s}' (known: follow, within-root, never)"
        )),
    }
);

checked!(
    /// A list of encodings in preference order, or `off`.
    Encodings,
    |s| Encoding::parse_list(s).map(|l| {
        if l.is_empty() {
            "off".to_owned()
        } else {
            l.iter().map(|e| e.token()).collect::<Vec<_>>().join(",")
        }
    })
);

checked!(
    /// `Name: value`, a response header.
    HeaderLine,
    |s| Header::parse(s).map(|h| format!("{}: {}", h.name, h.value))
);

checked!(
    /// A Cache-Control value.
    CacheControl,
    |s| Header::parse(&format!("Cache-Control: {s}")).map(|h| h.value)
);

/// `*` or a comma-separated list of origins: the `cors` key, which also takes `true`
/// for `*` (as a bare `--cors` flag does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct CorsSpec(pub String);

impl TryFrom<String> for CorsSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Cors::parse(&s).map(|c| {
            CorsSpec(match c {
                Cors::Any => "*".to_owned(),
                Cors::List(l) => l.join(","),
            })
        })
    }
}

impl From<CorsSpec> for String {
    fn from(v: CorsSpec) -> String {
        v.0
    }
}

impl std::str::FromStr for CorsSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl<'de> Deserialize<'de> for CorsSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CorsSpec, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = CorsSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, \"*\" or a comma-separated list of origins")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<CorsSpec, E> {
                if v {
                    Ok(CorsSpec("*".into()))
                } else {
                    Err(E::custom(
                        "cors = false: CORS is off unless the key is given; remove it",
                    ))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CorsSpec, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The `--cors` flag's value: as [`CorsSpec`], with a hint when the word after a bare
/// `--cors` is a directory, so was meant as ROOT (`zcopy serve --cors dist/`).
fn cors_flag(s: &str) -> Result<CorsSpec, String> {
    s.parse().map_err(|e| {
        if !std::path::Path::new(s).is_dir() {
            e
        } else {
            format!(
                "{e}; a bare --cors (any origin) takes the next word as its value, so give \
                 ROOT before it (`zcopy serve {s} --cors`) or write `--cors '*' {s}`"
            )
        }
    })
}

/// A file path inside ROOT, as `--fallback` and `--error-page` name files: relative
/// to ROOT (a leading `/` means ROOT too, as in a URL), no `..`, `.` or empty
/// segments. Returns it without the leading `/`.
pub(crate) fn inside_root(s: &str) -> Result<String, String> {
    let rel = s.trim_start_matches('/');
    if rel.is_empty()
        || rel.contains('\0')
        || rel
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!(
            "'{s}' is not a file path inside ROOT (--fallback and --error-page name files \
             relative to ROOT)"
        ));
    }
    Ok(rel.to_owned())
}

checked!(
    /// A file path inside ROOT (no `..`, `.` or empty segments).
    FallbackPath,
    inside_root
);

checked!(
    /// `STATUS=FILE` with STATUS 400-599 and FILE a path inside ROOT, as for
    /// `--fallback` (the file is read when the config is built).
    ErrorPageSpec,
    |s| {
        let (status, file) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}': want STATUS=FILE"))?;
        match status.parse::<u16>() {
            Ok(st) if (400..600).contains(&st) && !file.is_empty() => {
                inside_root(file)?;
                Ok(s.to_owned())
            }
            _ => Err(format!("'{s}': want STATUS=FILE with STATUS 400-599")),
        }
    }
);

checked!(
    /// A path glob that stays inside ROOT (`*`, `**`, `?`; no `.` or `..` segments).
    Glob,
    |s| {
        let g = s.trim_start_matches('/');
        if g.split('/').any(|seg| seg == ".." || seg == ".") {
            return Err(format!("glob '{s}' escapes the root ('.' or '..' segment)"));
        }
        if g.bytes().any(|b| b < b' ' || b == 0x7f) {
            return Err(format!("glob '{s}' holds a control character"));
        }
        Ok(g.to_owned())
    }
);

checked!(
    /// Access log line format: `common`, `combined` or `json`.
    LogFormat,
    |s| match s {
        "common" | "combined" | "json" => Ok(s.to_owned()),
        _ => Err(format!(
            "unknown access log format '{s}' (known: common, combined, json)"
        )),
    }
);

checked!(
    /// A rate in bytes per second: `500k`, `10M`, `1G` (powers of 1024) or a number.
    Rate,
    |s| crate::send::parse_rate(s).map(|_| s.to_owned())
);

checked!(
    /// A size band `MIN-MAX` in bytes (suffixes k, M, G: powers of 1024), or `off`.
    Band,
    |s| Band::parse(s).map(|_| s.to_owned())
);

impl Band {
    fn parse(s: &str) -> Result<Option<(u64, u64)>, String> {
        if s == "off" {
            return Ok(None);
        }
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("'{s}': expected MIN-MAX (like 16k-1M) or off"))?;
        let (a, b) = (crate::send::parse_rate(a)?, crate::send::parse_rate(b)?);
        if a > b {
            return Err(format!("'{s}': MIN is above MAX"));
        }
        Ok(Some((a, b)))
    }

    /// The band (checked at parse).
    pub fn bytes(&self) -> Option<(u64, u64)> {
        Band::parse(&self.0).expect("checked at parse")
    }
}

impl Rate {
    /// Bytes per second (checked at parse).
    pub fn bytes_per_sec(&self) -> u64 {
        crate::send::parse_rate(&self.0).expect("checked at parse")
    }
}

checked!(
    /// Kernel TLS mode: `auto` or `off`.
    KtlsName,
    |s| match s {
        "auto" | "off" => Ok(s.to_owned()),
        _ => Err(format!("unknown kTLS mode '{s}' (known: auto, off)")),
    }
);

checked!(
    /// An event loop: `auto`, `epoll` or `uring`.
    IoName,
    |s| s
        .parse::<zcopy_http::driver::IoDriver>()
        .map(|_| s.to_owned())
);

/// How a listen address was written: its scheme, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `ADDR`: plain HTTP, or HTTPS when a certificate is given and no listener says
    /// `https://` (see [`Listen::https`]).
    Bare,
    /// `http://ADDR`: plain HTTP, always.
    Http,
    /// `https://ADDR`: HTTPS, always.
    Https,
}

/// One listen address: `ADDR`, `http://ADDR` or `https://ADDR`, where ADDR is
/// `IP:PORT` or `NAME:PORT` (a host name, resolved when the settings are read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Listen {
    /// The socket addresses: one for an IP, each one a name resolves to (that this
    /// host can bind) for a name.
    pub addrs: Vec<SocketAddr>,
    /// The scheme it was written with.
    pub scheme: Scheme,
    /// `NAME:PORT` as given, when it was a name.
    pub name: Option<String>,
}

impl Listen {
    /// One IP address.
    pub fn ip(addr: SocketAddr, scheme: Scheme) -> Listen {
        Listen {
            addrs: vec![addr],
            scheme,
            name: None,
        }
    }

    /// Whether this listener serves HTTPS among `all` (which holds it), when a
    /// certificate is given (`tls`) or not. `https://` always does and `http://`
    /// never; a bare `ADDR` does when there is a certificate and no listener says
    /// `https://`, so `--listen 0.0.0.0:8443 --tls-cert C --tls-key K` serves HTTPS
    /// as miniserve and static-web-server do, while a set that mixes `ADDR` and
    /// `https://ADDR` keeps its bare ones plain.
    pub fn https(&self, all: &[Listen], tls: bool) -> bool {
        match self.scheme {
            Scheme::Https => true,
            Scheme::Http => false,
            Scheme::Bare => tls && !all.iter().any(|l| l.scheme == Scheme::Https),
        }
    }
}

/// The addresses `host:port` resolves to, in resolver order, without repeats. When
/// there are several, those this host can't bind (`::1` where IPv6 is off) are left
/// out, so `localhost` works on either kind of host.
fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in (host, port).to_socket_addrs()? {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    if addrs.len() > 1 {
        let bindable: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| std::net::TcpListener::bind(SocketAddr::new(a.ip(), 0)).is_ok())
            .collect();
        if !bindable.is_empty() {
            addrs = bindable;
        }
    }
    Ok(addrs)
}

impl TryFrom<String> for Listen {
    type Error = String;
    fn try_from(s: String) -> Result<Listen, String> {
        s.parse()
    }
}

impl From<Listen> for String {
    fn from(l: Listen) -> String {
        let addr = match &l.name {
            Some(name) => name.clone(),
            None => l.addrs.first().map(ToString::to_string).unwrap_or_default(),
        };
        match l.scheme {
            Scheme::Bare => addr,
            Scheme::Http => format!("http://{addr}"),
            Scheme::Https => format!("https://{addr}"),
        }
    }
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Listen, String> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            (Scheme::Bare, s)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let want = "want ADDR:PORT, http://ADDR:PORT or https://ADDR:PORT; ADDR an IP or a \
                    host name";
        if let Ok(addr) = rest.parse::<SocketAddr>() {
            return Ok(Listen::ip(addr, scheme));
        }
        if let Some(e) = port_alone(s, rest) {
            return Err(e);
        }
        // NAME:PORT: a host name (letters, digits, '-', '.'), resolved now.
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(format!("'{s}': no port ({want})"));
        };
        let port: u16 = port
            .parse()
            .map_err(|e| format!("'{s}': port {port}: {e} ({want})"))?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(format!("'{s}': invalid address ({want})"));
        }
        let addrs =
            resolve(host, port).map_err(|e| format!("'{s}': cannot resolve {host}: {e}"))?;
        if addrs.is_empty() {
            return Err(format!("'{s}': {host} has no address"));
        }
        Ok(Listen {
            addrs,
            scheme,
            name: Some(rest.to_owned()),
        })
    }
}

/// The error for a port given alone (`8080`, `:8080`) where an address is wanted:
/// that means this machine to some servers and every interface to others (nginx, Go),
/// so it asks which.
fn port_alone(given: &str, rest: &str) -> Option<String> {
    let port: u16 = rest.strip_prefix(':').unwrap_or(rest).parse().ok()?;
    Some(format!(
        "'{given}': a port needs its address: 127.0.0.1:{port} (this machine only), \
         0.0.0.0:{port} (every IPv4 interface) or [::]:{port} (every interface)"
    ))
}

/// `IP:PORT`, as `--redirect-http` and `--metrics` take it.
fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| {
        port_alone(s, s).unwrap_or_else(|| format!("'{s}': {e} (want IP:PORT, as 127.0.0.1:8080)"))
    })
}

/// A non-negative, finite number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Secs(pub f64);

impl TryFrom<f64> for Secs {
    type Error = String;
    fn try_from(v: f64) -> Result<Secs, String> {
        if v.is_finite() && v >= 0.0 && std::time::Duration::try_from_secs_f64(v).is_ok() {
            Ok(Secs(v))
        } else {
            Err(format!("{v} is not a number of seconds (0 or more)"))
        }
    }
}

impl From<Secs> for f64 {
    fn from(s: Secs) -> f64 {
        s.0
    }
}

impl std::str::FromStr for Secs {
    type Err = String;
    fn from_str(s: &str) -> Result<Secs, String> {
        let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
        Secs::try_from(v)
    }
}

impl Secs {
    /// As a duration (always representable: checked at parse).
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.0)
    }
}

/// A whole number, 0 or more (a count or a size in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Count(pub usize);

impl TryFrom<i64> for Count {
    type Error = String;
    fn try_from(v: i64) -> Result<Count, String> {
        usize::try_from(v)
            .map(Count)
            .map_err(|_| format!("{v} is negative: want a whole number, 0 or more"))
    }
}

impl From<Count> for i64 {
    fn from(c: Count) -> i64 {
        i64::try_from(c.0).unwrap_or(i64::MAX)
    }
}

impl std::str::FromStr for Count {
    type Err = String;
    fn from_str(s: &str) -> Result<Count, String> {
        let v: i64 = s
            .parse()
            .map_err(|_| format!("'{s}' is not a whole number"))?;
        Count::try_from(v)
    }
}

/// A key kept for a later version: any value is refused with this message.
#[derive(Clone, Debug)]
pub struct Reserved;

impl<'de> Deserialize<'de> for Reserved {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Reserved, D::Error> {
        Err(serde::de::Error::custom(
            "rate-limit is reserved for a later version and not enforced yet; remove it",
        ))
    }
}

/// Every `serve` setting. `None` (or an empty list) means "not given here": the
/// layers (defaults, file, flags) are merged key by key, the later one winning.
#[derive(Clone, Debug, Default, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Directory to serve [default: .].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Address to listen on (repeatable; IPv6 as `[::1]:8080`; port 0: any free port):
    /// `http://ADDR` for HTTP, `https://ADDR` for HTTPS (with --tls-cert and --tls-key),
    /// `ADDR` alone for HTTP, or for HTTPS when --tls-cert and --tls-key are given and
    /// no listener says https:// (`--listen 0.0.0.0:8443 --tls-cert C --tls-key K`
    /// serves HTTPS); plain and HTTPS listeners mix [default: 127.0.0.1:8080]. ADDR may
    /// be `NAME:PORT` (`localhost:8080`): every address the name resolves to that this
    /// host can bind is listened on (resolved at start and on reload). Replaced by
    /// sockets passed by systemd, if any.
    #[arg(long, value_name = "[https://]ADDR")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<Listen>,
    /// PEM certificate chain (leaf first) of the HTTPS listeners: the https:// ones,
    /// or, when no listener says https://, every one given without a scheme (the
    /// default 127.0.0.1:8080 too).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the HTTPS listeners: RSA, ECDSA or Ed25519, as PKCS#8,
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Send `Strict-Transport-Security: max-age=SECS` with every HTTPS response.
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Count>,
    /// Also listen on ADDR with plain HTTP that answers every request with a 308
    /// redirect to the same path on the first HTTPS listener (repeatable).
    #[arg(long, value_name = "ADDR", value_parser = socket_addr)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_http: Vec<SocketAddr>,
    /// Kernel TLS: auto (after the handshake, hand the keys to the kernel where it has
    /// the tls ULP, so bodies leave by sendfile) or off (encrypt in user space)
    /// [default: auto].
    #[arg(long, value_name = "auto|off")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ktls: Option<KtlsName>,
    /// Seconds a client has to finish its TLS handshake [default: 10].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_timeout: Option<Secs>,
    /// Most TLS handshakes each worker runs at once (a new client beyond that closes the
    /// oldest unfinished handshake) [default: 256].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_max_handshakes: Option<Count>,
    /// TLS sessions remembered for resumption without a ticket (0: none) [default: 4096].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_session_cache: Option<Count>,
    /// Issue TLS session tickets (stateless resumption; keys rotate every 6 hours)
    /// [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_tickets: Option<bool>,
    /// Engine that sends file bodies: auto, sendfile, splice, mmap, read-write, direct,
    /// uring (others fall back behind it). auto: sendfile (or the calibrated choice) to
    /// clients on other hosts; mmap, which copies at send time, to clients on this
    /// machine, whose receive queues would otherwise share our page-cache pages
    /// [default: auto].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineName>,
    /// Event loop: auto (uring where `zcopy bench --calibrate` measured it >= 1.05x
    /// epoll's requests per CPU-second, else epoll), epoll, uring (epoll runs where
    /// io_uring is refused; HTTPS on uring is userspace TLS, kTLS is epoll's)
    /// [default: auto].
    #[arg(long, value_name = "auto|epoll|uring")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<IoName>,
    /// Speak HTTP/2: h2c with prior knowledge on plain listeners, ALPN `h2` (then
    /// `http/1.1`) on HTTPS ones, on either event loop (--io epoll or uring);
    /// --limit-rate paces each stream. Uploads and WebDAV bodies are received
    /// over HTTP/2 as over HTTP/1.1 (copied from the DATA frames, never spliced).
    /// `--http2=false` turns it off
    /// [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    /// Worker threads, each with its own event loop [default: one per core].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<Count>,
    /// List directories that have no index file [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing: Option<bool>,
    /// Serve NAME.br / NAME.zst / NAME.gz in place of NAME when the client accepts that
    /// encoding and the sidecar is a regular file inside ROOT not older than NAME
    /// (preference order, or `off`) [default: br,zstd,gzip].
    #[arg(long, value_name = "LIST|off")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precompressed: Option<Encodings>,
    /// Compress text, HTML, CSS, JS, JSON, SVG, XML and wasm files of 1 KiB to 32 MiB
    /// that have no sidecar: br, zstd and gzip variants are made once by a background
    /// thread, kept in the snapshot store (sealed memory, dropped when the file
    /// changes) and served with their own ETags and `Vary: Accept-Encoding`; until one
    /// is ready the file goes uncompressed [default: true]. Per-rule `compress`
    /// overrides.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// Memory the snapshot store (compressed variants) may hold, all workers together
    /// (suffixes k, M, G: powers of 1024; 0: none). Read at start, not on reload
    /// [default: 1/16 of RAM, at most 1 GiB].
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_memory: Option<Rate>,
    /// Serve files whose size is in MIN-MAX (e.g. `16k-1M`) from a sealed snapshot
    /// of themselves, made in the background on a file's second request, counted in
    /// --snapshot-memory and dropped when the file changes: sent by reference to
    /// every peer, loopback and containers too [default: 32k-16M to a loopback
    /// peer (where lending measured cheaper than a copy from memory from 32 KiB
    /// on), 65k-16M to other peers (above what a worker holds in memory); a band
    /// given applies to every peer; off: none].
    #[arg(long, value_name = "MIN-MAX|off")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_band: Option<Band>,
    /// Add a response header, `Name: value` (repeatable; `Cache-Control: V` is
    /// --cache-control V).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<HeaderLine>,
    /// Cache-Control sent with files and listings (listings default to `no-cache`).
    #[arg(long, value_name = "VALUE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// Allow cross-origin reads: `*` (what a bare `--cors` means) or a comma-separated
    /// list of origins; answers CORS preflight OPTIONS requests with 204.
    #[arg(long, value_name = "*|ORIGINS", num_args = 0..=1, default_missing_value = "*",
          value_parser = cors_flag)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
    /// Single-page-app fallback: a GET/HEAD for a missing path without a file
    /// extension whose Accept includes text/html gets this file (a path relative to
    /// ROOT, like --error-page's; it must exist at start).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackPath>,
    /// Require HTTP Basic auth for users in this htpasswd file (bcrypt or argon2 hashes).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_file: Option<PathBuf>,
    /// Require HTTP Basic auth for USER with a bcrypt or argon2 HASH (repeatable).
    #[arg(long, value_name = "USER:HASH")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth: Vec<String>,
    /// Realm named in the Basic auth challenge [default: zcopy].
    #[arg(long, value_name = "TEXT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_realm: Option<String>,
    /// Send FILE as the body of error responses with STATUS, e.g. `404=404.html`
    /// (repeatable). FILE is a path relative to ROOT, like --fallback's (keep pages
    /// that should not be served as files in a dot directory: `404=.errors/404.html`);
    /// it is read at start and on reload, at most 1 MiB.
    #[arg(long, value_name = "STATUS=FILE")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_page: Vec<ErrorPageSpec>,
    /// Serve dotfiles (hidden by default).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,
    /// Symbolic links: follow, within-root (only if they stay inside ROOT) or never
    /// [default: within-root].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlinks: Option<Symlinks>,
    /// Index file served for a directory (empty: none) [default: index.html].
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Seconds a client has to send a request head (→ 408) [default: 10].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<Secs>,
    /// Seconds an idle keep-alive connection stays open [default: 60].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Secs>,
    /// Seconds a response may make no progress before the connection is dropped
    /// [default: 60].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_timeout: Option<Secs>,
    /// Let directories be downloaded as tar streams (`DIR/?download=tar`, linked from
    /// listings): headers written by zcopy, file contents sent by the engines, one file
    /// open at a time; symbolic links and dotfiles (unless --hidden) are left out.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archives: Option<bool>,
    /// Accept PUT uploads (off by default; a `[[rule]]` can turn them on or off per
    /// path with `upload = true`). The body is received with splice (socket → pipe →
    /// file) into an unnamed file beside the target, fsync'd, then renamed into place:
    /// readers see the old file or the new one, never a part. 201 for a new file, 204
    /// for a replaced one; `If-Match` / `If-None-Match: *` give 412 instead of a lost
    /// update; a full disk gives 507. Symbolic links are never followed for a write;
    /// dotfiles and a sidecar beside its original (x.gz where x is) are refused unless --hidden. On a listener that is
    /// not loopback a PUT needs an auth rule covering its path, or
    /// --allow-anonymous-writes. A chunked body is received by copy. Resumable:
    /// `curl -C OFFSET -T file URL` sends `Content-Range: bytes OFFSET-(N-1)/N`; the
    /// parts go to an unnamed partial the server holds (never visible, gone on
    /// restart), a part not starting where it ends gets 416; `curl -I URL` shows
    /// the bytes held in `Upload-Offset`; parts before the last get 202, the last
    /// publishes (201/204/412). WebDAV: --webdav.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<bool>,
    /// Answer WebDAV (RFC 4918, class 1 and 2; off by default; implies --upload; a
    /// `[[rule]]` can turn it on or off per path with `webdav = true`): OPTIONS,
    /// PROPFIND (Depth 0 and 1; infinity gets 403), PROPPATCH (dead properties in
    /// user xattrs), MKCOL, DELETE, COPY (copy_file_range: a reflink where the file
    /// system can), MOVE (rename), LOCK/UNLOCK (in memory, per server process).
    /// Writes keep the upload rules: confined beneath the root, no symbolic link
    /// followed, dotfiles and sidecars refused unless --hidden, auth or
    /// --allow-anonymous-writes off loopback. PROPFIND Depth 1 lists a directory
    /// only where a listing would be served.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webdav: Option<bool>,
    /// Largest PUT body accepted (suffixes k, M, G: powers of 1024); a larger
    /// Content-Length gets 413 before any of the body is read [default: 1G].
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_upload_size: Option<Rate>,
    /// Seconds a partial resumable upload is kept without a part arriving (at most
    /// 64 are held at once) [default: 3600].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_resume_timeout: Option<Secs>,
    /// Let anyone upload on listeners that are not loopback, without an auth rule
    /// (a warning is printed at start).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous_writes: Option<bool>,
    /// At most this many file-body bytes per second to each response (each HTTP/2
    /// stream), paced by the event loop's timers (suffixes k, M, G: powers of 1024;
    /// like nginx's limit_rate). The first 64 KiB go at once.
    #[arg(long, value_name = "RATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_rate: Option<Rate>,
    /// Most open connections (all workers together) [default: 16384, or fewer if the
    /// open-file limit can't hold that many].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<Count>,
    /// Longest request line in bytes (→ 414) [default: 8192].
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_line: Option<Count>,
    /// Largest request head in bytes (→ 431) [default: 16384].
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<Count>,
    /// Most request header fields (→ 431) [default: 100].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<Count>,
    /// Write an access log to FILE, or to stdout with `-` (the default when the flag
    /// is given without a value). SIGUSR1 reopens the file (for logrotate).
    #[arg(long, value_name = "FILE|-", num_args = 0..=1, default_missing_value = "-")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<String>,
    /// Access log line format: common (CLF), combined (CLF + referer and user agent)
    /// or json (one object per line) [default: common].
    #[arg(long, value_name = "FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log_format: Option<LogFormat>,
    /// Seconds in-flight responses get to finish after SIGINT/SIGTERM [default: 5].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<Secs>,
    /// Seconds a small file (up to 64 KiB) stays open in a worker's cache before its
    /// path is resolved again; every hit is still revalidated with fstat, so sizes and
    /// ETags are current. 0 turns the cache off [default: 1].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_cache_ttl: Option<Secs>,
    /// Serve Prometheus metrics on ADDR at /metrics (a separate listener; off by
    /// default; kept until a restart).
    #[arg(long, value_name = "ADDR", value_parser = socket_addr)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// Per-path rules (config file only: `[[rule]]` tables).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule: Vec<RuleSpec>,
}

/// One `[[rule]]` table: settings for the request paths its glob matches. Later
/// rules override earlier ones key by key; headers add up.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleSpec {
    /// Glob on the request path without its leading `/`.
    pub glob: Glob,
    /// Response headers added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<HeaderLine>,
    /// Cache-Control.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// CORS origins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
    /// htpasswd file of the users allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_file: Option<PathBuf>,
    /// `USER:HASH` entries allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth: Vec<String>,
    /// Realm of the Basic auth challenge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_realm: Option<String>,
    /// Directory listings on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing: Option<bool>,
    /// Compression (gzip variants made once) on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// PUT uploads on or off (overrides --upload for these paths).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<bool>,
    /// WebDAV on or off (overrides --webdav for these paths; implies upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webdav: Option<bool>,
    /// `true`: the operator's word that files here are replaced by rename, never
    /// changed in place, so their bodies may leave by reference to local peers too
    /// (the read lease stays as a tripwire: a break is logged as an error and the
    /// connection closes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// SPA fallback file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackPath>,
    /// `STATUS=FILE` error pages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_page: Vec<ErrorPageSpec>,
    /// Reserved for per-path rate limits (refused for now).
    #[serde(default, skip_serializing)]
    #[expect(dead_code, reason = "any value is refused while parsing")]
    pub rate_limit: Option<Reserved>,
}

impl Settings {
    /// The built-in defaults, as a layer (what `--check-config` shows for keys given
    /// nowhere). `workers` and `max-connections` stay unset: they depend on the machine.
    pub fn defaults() -> Settings {
        let limits = zcopy_http::request::Limits::default();
        Settings {
            root: Some(PathBuf::from(".")),
            listen: vec![Listen::ip(
                SocketAddr::from(([127, 0, 0, 1], 8080)),
                Scheme::Bare,
            )],
            ktls: Some(KtlsName("auto".into())),
            tls_handshake_timeout: Some(Secs(10.0)),
            tls_max_handshakes: Some(Count(zcopy_tls::Limits::default().max_handshakes)),
            tls_session_cache: Some(Count(zcopy_tls::TlsOptions::default().session_cache)),
            tls_tickets: Some(true),
            engine: Some(EngineName("auto".into())),
            io: Some(IoName("auto".into())),
            http2: Some(true),
            listing: Some(true),
            compress: Some(true),
            precompressed: Some(Encodings("br,zstd,gzip".into())),
            auth_realm: Some("zcopy".into()),
            hidden: Some(false),
            symlinks: Some(Symlinks("within-root".into())),
            index: Some("index.html".into()),
            header_timeout: Some(Secs(10.0)),
            idle_timeout: Some(Secs(60.0)),
            send_timeout: Some(Secs(60.0)),
            max_request_line: Some(Count(limits.max_request_line)),
            max_header_bytes: Some(Count(limits.max_header_bytes)),
            max_headers: Some(Count(limits.max_headers)),
            access_log_format: Some(LogFormat("common".into())),
            shutdown_grace: Some(Secs(5.0)),
            file_cache_ttl: Some(Secs(1.0)),
            archives: Some(false),
            upload: Some(false),
            webdav: Some(false),
            max_upload_size: Some(Rate("1G".into())),
            upload_resume_timeout: Some(Secs(3600.0)),
            allow_anonymous_writes: Some(false),
            ..Settings::default()
        }
    }

    /// This layer with `over` on top: each key `over` gives replaces this one's.
    pub fn overlay(&self, over: &Settings) -> Result<Settings, String> {
        let mut base = to_table(self)?;
        base.extend(to_table(over)?);
        base.try_into()
            .map_err(|e: toml::de::Error| e.message().to_owned())
    }
}

/// Moves a `Cache-Control` header of one layer into its `cache-control` key, so that
/// `--header 'Cache-Control: V'` is `--cache-control V`: one header (files and
/// listings get one of their own), overridden key by key like the key. A layer that
/// gives both is refused.
fn fold_cache_control(
    header: &mut Vec<HeaderLine>,
    cache_control: &mut Option<CacheControl>,
) -> Result<(), String> {
    let is_cc = |h: &HeaderLine| {
        h.0.split_once(':')
            .is_some_and(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
    };
    let Some(i) = header.iter().position(is_cc) else {
        return Ok(());
    };
    let line = header.remove(i);
    if cache_control.is_some() || header.iter().any(is_cc) {
        return Err(
            "Cache-Control is given twice (cache-control, and a header 'Cache-Control: \
             ...', set the same header): give it once"
                .into(),
        );
    }
    let value = line.0.split_once(':').map_or("", |(_, v)| v.trim());
    *cache_control = Some(CacheControl::try_from(value.to_owned())?);
    Ok(())
}

impl Settings {
    /// This layer with each `Cache-Control` header moved to its `cache-control` key
    /// (and each rule's), see [`fold_cache_control`].
    pub fn fold_headers(mut self) -> Result<Settings, String> {
        fold_cache_control(&mut self.header, &mut self.cache_control)?;
        for (i, r) in self.rule.iter_mut().enumerate() {
            fold_cache_control(&mut r.header, &mut r.cache_control)
                .map_err(|e| format!("rule {} ({}): {e}", i + 1, r.glob.0))?;
        }
        Ok(self)
    }
}

fn to_table(s: &Settings) -> Result<toml::Table, String> {
    toml::Table::try_from(s).map_err(|e| e.to_string())
}
