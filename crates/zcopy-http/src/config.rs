//! Everything `zcopy serve` can be told: a plain struct the CLI fills in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use zcopy::Preference;

pub use crate::access_log::AccessLog;
use crate::encoding::Encoding;
use crate::path::SymlinkPolicy;
use crate::request::Limits;
pub use crate::request::ListenKind;
use crate::rules::Rule;

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The directory served.
    pub root: PathBuf,
    /// Addresses to listen on (port 0: any free port).
    pub listen: Vec<SocketAddr>,
    /// Which engine sends file bodies (with fallback).
    pub engine: Preference,
    /// Which event loop runs the workers.
    pub io: IoDriver,
    /// Speak HTTP/2: h2c with prior knowledge on plain listeners, ALPN `h2` on
    /// HTTPS ones (either driver; not with `limit_rate`).
    pub http2: bool,
    /// Worker threads, each with its own event loop (0: one per core).
    pub workers: usize,
    /// Answer directories without an index file with a listing.
    pub listing: bool,
    /// Serve dotfiles.
    pub hidden: bool,
    /// What to do with symbolic links.
    pub symlinks: SymlinkPolicy,
    /// Index file name tried in directories (empty: none).
    pub index: String,
    /// A request head must arrive within this time (→ 408).
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this time.
    pub idle_timeout: Duration,
    /// A response that makes no progress for this long is dropped.
    pub send_timeout: Duration,
    /// Most open connections, all workers together.
    pub max_connections: usize,
    /// Request head limits.
    pub limits: Limits,
    /// Largest request body read and thrown away (→ 413 beyond).
    pub max_body_discard: u64,
    /// Accept PUT uploads (off by default).
    pub upload: bool,
    /// Answer WebDAV methods (off by default; implies `upload`).
    pub webdav: bool,
    /// Largest upload accepted (→ 413 before its body is read).
    pub max_upload_size: u64,
    /// A partial resumable upload is dropped after this long without a part.
    pub upload_resume_ttl: Duration,
    /// Uploads on a listener that is not loopback need no auth rule (a warning says so).
    pub allow_anonymous_writes: bool,
    /// Access log destination, if any.
    pub access_log: Option<AccessLog>,
    /// Access log line format.
    pub access_log_format: crate::access_log::LogFormat,
    /// How long in-flight responses may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// How long a small file stays open in a worker's cache before its path is
    /// resolved again (0: no cache). Every hit is revalidated with fstat.
    pub file_cache_ttl: Duration,
    /// Most small files each worker's cache keeps open (see [`crate::budget`]).
    pub cache_files: usize,
    /// Most body bytes per second to each connection (none: as fast as it goes).
    pub limit_rate: Option<u64>,
    /// Directories can be downloaded as tar streams (`?download=tar`).
    pub archives: bool,
    /// Precompressed sidecars tried, in preference order (empty: off).
    pub precompressed: Vec<Encoding>,
    /// Compress compressible files without a sidecar once, in the background, and
    /// serve the gzip variant from the snapshot store (per-rule `compress` overrides).
    pub compress: bool,
    /// Serve files of this size band (bytes, inclusive) from sealed snapshots of
    /// themselves, lent to every peer (off by default).
    pub snapshot_band: Option<(u64, u64)>,
    /// The band for peers on this host's loopback path (a loopback address or one
    /// of this host's own addresses); `None`: `snapshot_band`'s.
    pub snapshot_band_loopback: Option<(u64, u64)>,
    /// Bytes the snapshot store may hold, all workers together (read at start).
    pub snapshot_memory: u64,
    /// Per-path rules (headers, CORS, auth, fallback, error pages), in order.
    pub rules: Vec<Rule>,
    /// Addresses that speak HTTPS (`--listen https://ADDR`); needs [`Config::tls`].
    pub tls_listen: Vec<SocketAddr>,
    /// Plain listeners that answer every request with a 308 to the https URL.
    pub redirect_listen: Vec<SocketAddr>,
    /// Certificate and TLS settings of the HTTPS listeners.
    pub tls: Option<TlsConfig>,
    /// Strict-Transport-Security value sent on responses over TLS (e.g.
    /// `max-age=31536000`).
    pub hsts: Option<String>,
    /// Port the redirect listeners send clients to (the first HTTPS listener's,
    /// filled in by [`crate::server::Server::bind`]).
    pub https_port: u16,
}

/// The HTTPS listeners' certificate and handshake settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain and private key.
    pub files: zcopy_tls::CertFiles,
    /// Session cache and tickets.
    pub options: zcopy_tls::TlsOptions,
    /// Handshake timeout and per-worker cap.
    pub limits: zcopy_tls::Limits,
    /// Whether sessions may be handed to kernel TLS.
    pub ktls: zcopy_tls::KtlsMode,
    /// Testing: try the kernel hand-off even where the probe failed, so the
    /// fallback runs.
    #[doc(hidden)]
    pub force_ktls_attempt: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            root: PathBuf::from("."),
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            engine: Preference::Auto,
            io: IoDriver::Auto,
            workers: 0,
            http2: true,
            listing: true,
            hidden: false,
            symlinks: SymlinkPolicy::WithinRoot,
            index: String::from("index.html"),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_connections: 16_384,
            limits: Limits::default(),
            max_body_discard: 1024 * 1024,
            upload: false,
            webdav: false,
            max_upload_size: 1 << 30,
            upload_resume_ttl: zcopy_site::upload::RESUME_TTL,
            allow_anonymous_writes: false,
            access_log: None,
            access_log_format: crate::access_log::LogFormat::Common,
            shutdown_grace: Duration::from_secs(5),
            file_cache_ttl: Duration::from_secs(1),
            cache_files: crate::cache::CACHE_FILES,
            limit_rate: None,
            archives: false,
            precompressed: vec![Encoding::Br, Encoding::Zstd, Encoding::Gzip],
            compress: true,
            snapshot_band: None,
            snapshot_band_loopback: None,
            snapshot_memory: zcopy_site::snapshot::default_budget(),
            rules: Vec::new(),
            tls_listen: Vec::new(),
            redirect_listen: Vec::new(),
            tls: None,
            hsts: None,
            https_port: 443,
        }
    }
}

impl Config {
    /// The site's part of the settings.
    pub fn site(&self) -> crate::site_config::SiteConfig {
        crate::site_config::SiteConfig {
            root: self.root.clone(),
            listing: self.listing,
            hidden: self.hidden,
            symlinks: self.symlinks,
            index: self.index.clone(),
            file_cache_ttl: self.file_cache_ttl,
            limit_rate: self.limit_rate,
            archives: self.archives,
            precompressed: self.precompressed.clone(),
            compress: self.compress,
            snapshot_band: self.snapshot_band,
            snapshot_band_loopback: self.snapshot_band_loopback,
            rules: self.rules.clone(),
            hsts: self.hsts.clone(),
            https_port: self.https_port,
            upload: self.upload || self.webdav,
            webdav: self.webdav,
            max_upload_size: self.max_upload_size,
            upload_resume_ttl: self.upload_resume_ttl,
            // Whatever `upload` says: a rule may turn uploads on for some paths.
            upload_needs_auth: !self.allow_anonymous_writes
                && self
                    .listen
                    .iter()
                    .chain(&self.tls_listen)
                    .chain(&self.redirect_listen)
                    .any(|a| !a.ip().is_loopback()),
        }
    }

    /// The settings of the connection core.
    pub fn conn(&self) -> crate::proto::ConnConfig {
        crate::proto::ConnConfig {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            send_timeout: self.send_timeout,
            limits: self.limits,
            max_body_discard: self.max_body_discard,
            body_timeout: self.send_timeout,
            limit_rate: self.limit_rate,
        }
    }

    /// The number of worker threads to start (`workers`, or one per core).
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Which event loop runs the workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoDriver {
    /// The one the calibration measured faster here (see [`crate::driver::choose`]).
    #[default]
    Auto,
    /// The mio (epoll) loop.
    Epoll,
    /// The io_uring loop (falls back to epoll, with a warning, where refused). HTTPS
    /// runs on it with TLS in user space; the kTLS hand-off is the epoll driver's.
    Uring,
}

impl IoDriver {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            IoDriver::Auto => "auto",
            IoDriver::Epoll => "epoll",
            IoDriver::Uring => "uring",
        }
    }
}

impl std::fmt::Display for IoDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for IoDriver {
    type Err = String;

    fn from_str(s: &str) -> Result<IoDriver, String> {
        match s {
            "auto" => Ok(IoDriver::Auto),
            "epoll" => Ok(IoDriver::Epoll),
            "uring" | "io_uring" | "io-uring" => Ok(IoDriver::Uring),
            _ => Err(format!(
                "unknown I/O driver '{s}' (known: auto, epoll, uring)"
            )),
        }
    }
}
