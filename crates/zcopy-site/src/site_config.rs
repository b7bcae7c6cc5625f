//! What the site is told: the part of the server's settings that decides how a
//! request is answered.

use crate::encoding::Encoding;
use crate::path::SymlinkPolicy;
use crate::rules::Rule;

/// What the site is told (the server fills it in from its configuration).
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// The directory served.
    pub root: std::path::PathBuf,
    /// Answer directories without an index file with a listing.
    pub listing: bool,
    /// Serve dotfiles.
    pub hidden: bool,
    /// What to do with symbolic links.
    pub symlinks: SymlinkPolicy,
    /// Index file name tried in directories (empty: none).
    pub index: String,
    /// How long a small file stays open in a worker's cache (0: no cache).
    pub file_cache_ttl: std::time::Duration,
    /// Most body bytes per second (held files are not sent from memory when set).
    pub limit_rate: Option<u64>,
    /// Directories can be downloaded as tar streams.
    pub archives: bool,
    /// Precompressed sidecars tried, in preference order.
    pub precompressed: Vec<Encoding>,
    /// Compress compressible files without a sidecar (gzip, made once, see
    /// [`crate::snapshot`]); rules may override it.
    pub compress: bool,
    /// Files whose size is in this band (bytes, inclusive) are served from a sealed
    /// snapshot of themselves once one is made (off: `None`).
    pub snapshot_band: Option<(u64, u64)>,
    /// The band for a peer on this host's loopback path
    /// ([`Request::loopback_peer`](crate::request::Request::loopback_peer)), where
    /// lending a snapshot measured cheaper than a copy from memory from a lower size
    /// on; `None`: [`SiteConfig::snapshot_band`]'s.
    pub snapshot_band_loopback: Option<(u64, u64)>,
    /// Per-path rules.
    pub rules: Vec<Rule>,
    /// Strict-Transport-Security value sent on responses over TLS.
    pub hsts: Option<String>,
    /// Port the redirect listeners send clients to.
    pub https_port: u16,
    /// Accept PUT uploads.
    pub upload: bool,
    /// Answer WebDAV methods (PROPFIND, MKCOL, COPY, MOVE, LOCK, ...); implies
    /// `upload`.
    pub webdav: bool,
    /// Largest upload accepted (→ 413 before its body is read).
    pub max_upload_size: u64,
    /// A partial resumable upload is dropped after this long without a part.
    pub upload_resume_ttl: std::time::Duration,
    /// A write needs an auth rule covering its path (a listener is not loopback and
    /// anonymous writes were not allowed).
    pub upload_needs_auth: bool,
}
