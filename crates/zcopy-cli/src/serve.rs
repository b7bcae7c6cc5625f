//! `zcopy serve`: a static HTTP/1.1 file server that sends from page cache to socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use zcopy::Preference;
use zcopy_http::auth::Users;
use zcopy_http::budget::FdBudget;
use zcopy_http::config::{AccessLog, Config, ListenKind, TlsConfig};
use zcopy_http::encoding::Encoding;
use zcopy_http::path::SymlinkPolicy;
use zcopy_http::request::Limits;
use zcopy_http::rules::{Cors, ErrorPage, Header, Rule};
use zcopy_http::server::{Server, ServerError};
use zcopy_tls::{CertFiles, KtlsMode, TlsOptions};

/// Arguments of `zcopy serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory to serve.
    #[arg(default_value = ".")]
    root: PathBuf,
    /// Address to listen on (repeatable; IPv6 as `[::1]:8080`; port 0: any free port):
    /// `ADDR` or `http://ADDR` for HTTP, `https://ADDR` for HTTPS (with --tls-cert and
    /// --tls-key); plain and HTTPS listeners mix.
    #[arg(long, value_name = "[https://]ADDR", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: Vec<Listen>,
    /// PEM certificate chain (leaf first) of the https:// listeners.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC) of the https:// listeners.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Send `Strict-Transport-Security: max-age=SECS` with every HTTPS response.
    #[arg(long, value_name = "SECS")]
    hsts: Option<u64>,
    /// Also listen on ADDR with plain HTTP that answers every request with a 308
    /// redirect to the same path on the first https:// listener (repeatable).
    #[arg(long, value_name = "ADDR")]
    redirect_http: Vec<SocketAddr>,
    /// Kernel TLS: auto (after the handshake, hand the keys to the kernel where it has
    /// the tls ULP, so bodies leave by sendfile) or off (encrypt in user space).
    #[arg(long, value_name = "auto|off", default_value = "auto", value_parser = parse_ktls)]
    ktls: KtlsMode,
    /// Seconds a client has to finish its TLS handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    tls_handshake_timeout: f64,
    /// Most TLS handshakes each worker runs at once (more clients wait in the backlog).
    #[arg(long, value_name = "N", default_value_t = zcopy_tls::Limits::default().max_handshakes)]
    tls_max_handshakes: usize,
    /// TLS sessions remembered for resumption without a ticket (0: none).
    #[arg(long, value_name = "N", default_value_t = TlsOptions::default().session_cache)]
    tls_session_cache: usize,
    /// Issue TLS session tickets (stateless resumption; keys rotate every 6 hours).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off)]
    tls_tickets: bool,
    /// Engine that sends file bodies: auto, sendfile, splice, mmap, read-write, direct,
    /// uring (others fall back behind it). auto: sendfile (or the calibrated choice) to
    /// clients on other hosts; mmap, which copies at send time, to clients on this
    /// machine, whose receive queues would otherwise share our page-cache pages.
    #[arg(long, default_value = "auto", value_parser = parse_engine)]
    engine: Preference,
    /// Worker threads, each with its own event loop (default: one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// List directories that have no index file (the default).
    #[arg(long, overrides_with = "no_listing")]
    listing: bool,
    /// Answer directories without an index file with 404 instead of a listing.
    #[arg(long)]
    no_listing: bool,
    /// Serve NAME.br / NAME.zst / NAME.gz in place of NAME when the client accepts that
    /// encoding and the sidecar is a regular file inside ROOT not older than NAME
    /// (preference order, or `off`).
    #[arg(long, value_name = "LIST|off", default_value = "br,zstd,gzip", value_parser = parse_encodings)]
    precompressed: Encodings,
    /// Add a response header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = Header::parse)]
    headers: Vec<Header>,
    /// Cache-Control sent with files and listings (listings default to `no-cache`).
    #[arg(long, value_name = "VALUE", value_parser = parse_cache_control)]
    cache_control: Option<String>,
    /// Allow cross-origin reads: `*` or a comma-separated list of origins; answers
    /// CORS preflight OPTIONS requests with 204.
    #[arg(long, value_name = "*|ORIGINS", value_parser = Cors::parse)]
    cors: Option<Cors>,
    /// Single-page-app fallback: a GET/HEAD for a missing path without a file
    /// extension whose Accept includes text/html gets this file (path inside ROOT).
    #[arg(long, value_name = "FILE", value_parser = parse_fallback)]
    fallback: Option<String>,
    /// Require HTTP Basic auth for users in this htpasswd file (bcrypt or argon2 hashes).
    #[arg(long, value_name = "FILE")]
    auth_file: Option<PathBuf>,
    /// Require HTTP Basic auth for USER with a bcrypt or argon2 HASH (repeatable).
    #[arg(long, value_name = "USER:HASH")]
    auth: Vec<String>,
    /// Realm named in the Basic auth challenge.
    #[arg(long, value_name = "TEXT", default_value = "zcopy")]
    auth_realm: String,
    /// Send FILE as the body of error responses with STATUS, e.g. `404=404.html`
    /// (repeatable).
    #[arg(long, value_name = "STATUS=FILE")]
    error_page: Vec<String>,
    /// Serve dotfiles (hidden by default).
    #[arg(long)]
    hidden: bool,
    /// Symbolic links: follow, within-root (only if they stay inside ROOT) or never.
    #[arg(long, default_value = "within-root", value_parser = parse_symlinks)]
    symlinks: SymlinkPolicy,
    /// Index file served for a directory (empty: none).
    #[arg(long, value_name = "NAME", default_value = "index.html")]
    index: String,
    /// Seconds a client has to send a request head (→ 408).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    idle_timeout: f64,
    /// Seconds a response may make no progress before the connection is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    send_timeout: f64,
    /// Most open connections (all workers together) [default: 16384, or fewer if the
    /// open-file limit can't hold that many].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Longest request line in bytes (→ 414).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_request_line)]
    max_request_line: usize,
    /// Largest request head in bytes (→ 431).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_header_bytes)]
    max_header_bytes: usize,
    /// Most request header fields (→ 431).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_headers)]
    max_headers: usize,
    /// Write a Common Log Format access log to FILE, or to stdout with `-` (the default
    /// when the flag is given without a value).
    #[arg(long, value_name = "FILE|-", num_args = 0..=1, default_missing_value = "-")]
    access_log: Option<String>,
    /// Seconds in-flight responses get to finish after SIGINT/SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    shutdown_grace: f64,
    /// Seconds a small file (up to 64 KiB) stays open in a worker's cache before its
    /// path is resolved again; every hit is still revalidated with fstat, so sizes and
    /// ETags are current. 0 turns the cache off.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    file_cache_ttl: f64,
}

fn parse_engine(s: &str) -> Result<Preference, String> {
    const SERVER_ENGINES: [&str; 7] = [
        "auto",
        "sendfile",
        "splice",
        "mmap",
        "read-write",
        "direct",
        "uring",
    ];
    if !SERVER_ENGINES.contains(&s) {
        return Err(format!(
            "unknown engine '{s}' (known: {})",
            SERVER_ENGINES.join(", ")
        ));
    }
    s.parse()
}

/// One `--listen` value.
#[derive(Clone, Copy, Debug)]
struct Listen {
    addr: SocketAddr,
    https: bool,
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else {
        (false, s.strip_prefix("http://").unwrap_or(s))
    };
    let addr = rest
        .strip_suffix('/')
        .unwrap_or(rest)
        .parse()
        .map_err(|e| {
            format!("'{s}': {e} (want ADDR:PORT, http://ADDR:PORT or https://ADDR:PORT)")
        })?;
    Ok(Listen { addr, https })
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{s}': want on or off")),
    }
}

fn parse_ktls(s: &str) -> Result<KtlsMode, String> {
    match s {
        "auto" => Ok(KtlsMode::Auto),
        "off" => Ok(KtlsMode::Off),
        _ => Err(format!("unknown kTLS mode '{s}' (known: auto, off)")),
    }
}

fn parse_symlinks(s: &str) -> Result<SymlinkPolicy, String> {
    match s {
        "follow" => Ok(SymlinkPolicy::Follow),
        "within-root" => Ok(SymlinkPolicy::WithinRoot),
        "never" => Ok(SymlinkPolicy::Never),
        _ => Err(format!(
            "unknown policy '{s}' (known: follow, within-root, never)"
        )),
    }
}

/// `--precompressed` as parsed (a newtype, so clap takes it as one value).
#[derive(Clone, Debug)]
struct Encodings(Vec<Encoding>);

fn parse_encodings(s: &str) -> Result<Encodings, String> {
    Encoding::parse_list(s).map(Encodings)
}

fn parse_cache_control(s: &str) -> Result<String, String> {
    Header::parse(&format!("Cache-Control: {s}")).map(|h| h.value)
}

fn parse_fallback(s: &str) -> Result<String, String> {
    let rel = s.trim_start_matches('/');
    if rel.is_empty()
        || rel.contains('\0')
        || rel
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!("'{s}' is not a file path inside ROOT"));
    }
    Ok(rel.to_owned())
}

/// Most bytes of an error page (they are sent from memory).
const ERROR_PAGE_MAX: u64 = 1024 * 1024;

fn error_page(spec: &str) -> anyhow::Result<ErrorPage> {
    let (status, file) = spec
        .split_once('=')
        .with_context(|| format!("--error-page {spec}: want STATUS=FILE"))?;
    let status: u16 = status
        .parse()
        .ok()
        .filter(|s| (400..600).contains(s))
        .with_context(|| format!("--error-page {spec}: status must be 400-599"))?;
    let len = std::fs::metadata(file)
        .with_context(|| format!("--error-page {file}"))?
        .len();
    anyhow::ensure!(
        len <= ERROR_PAGE_MAX,
        "--error-page {file}: larger than 1 MiB"
    );
    let body = std::fs::read(file).with_context(|| format!("--error-page {file}"))?;
    Ok(ErrorPage {
        status,
        content_type: zcopy_http::head::content_type(file),
        body: body.into(),
    })
}

fn secs(what: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v).with_context(|| format!("--{what}: not a duration: {v}"))
}

impl ServeArgs {
    /// The users of `--auth-file` and `--auth`, if any.
    fn users(&self) -> anyhow::Result<Option<Users>> {
        let mut users: Option<Users> = None;
        let mut add = |u: Users| match &mut users {
            Some(all) => all.merge(u),
            None => users = Some(u),
        };
        if let Some(file) = &self.auth_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--auth-file {}", file.display()))?;
            let u = Users::parse(&self.auth_realm, &text)
                .map_err(|e| anyhow::anyhow!("--auth-file {}: {e}", file.display()))?;
            add(u);
        }
        for spec in &self.auth {
            let user = spec.split(':').next().unwrap_or("");
            let u = Users::parse(&self.auth_realm, spec)
                .map_err(|e| anyhow::anyhow!("--auth {user}:…: {e}"))?;
            add(u);
        }
        Ok(users)
    }

    /// The flags that apply per path, as one rule for every path.
    fn rules(&self) -> anyhow::Result<Vec<Rule>> {
        let rule = Rule {
            glob: String::from("**"),
            headers: self.headers.clone(),
            cache_control: self.cache_control.clone(),
            cors: self.cors.clone(),
            auth: self.users()?.map(std::sync::Arc::new),
            listing: None,
            fallback: self.fallback.clone(),
            error_pages: self
                .error_page
                .iter()
                .map(|s| error_page(s))
                .collect::<anyhow::Result<_>>()?,
        };
        let empty = rule.headers.is_empty()
            && rule.cache_control.is_none()
            && rule.cors.is_none()
            && rule.auth.is_none()
            && rule.fallback.is_none()
            && rule.error_pages.is_empty();
        Ok(if empty { Vec::new() } else { vec![rule] })
    }

    /// What the start-up line says about how files are served.
    fn summary(&self, config: &Config) -> String {
        let mut parts = vec![
            format!("listing {}", if config.listing { "on" } else { "off" }),
            format!(
                "dotfiles {}",
                if config.hidden { "served" } else { "hidden" }
            ),
        ];
        if config.precompressed.is_empty() {
            parts.push("precompressed off".into());
        } else {
            let list: Vec<&str> = config.precompressed.iter().map(|e| e.token()).collect();
            parts.push(format!("precompressed {}", list.join(",")));
        }
        if self.auth_file.is_some() || !self.auth.is_empty() {
            parts.push("Basic auth".into());
        }
        if let Some(c) = &self.cors {
            parts.push(match c {
                Cors::Any => "CORS *".into(),
                Cors::List(l) => format!("CORS {}", l.join(",")),
            });
        }
        if let Some(f) = &self.fallback {
            parts.push(format!("fallback /{f}"));
        }
        parts.join(", ")
    }

    /// The TLS settings, checked against the listeners asked for.
    fn tls(&self) -> anyhow::Result<Option<TlsConfig>> {
        let https = self.listen.iter().any(|l| l.https);
        let files = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let Some(files) = files else {
            anyhow::ensure!(
                !https,
                "--listen https://…: needs --tls-cert FILE and --tls-key FILE"
            );
            anyhow::ensure!(
                self.hsts.is_none(),
                "--hsts: there is no https:// listener (--listen https://ADDR)"
            );
            anyhow::ensure!(
                self.redirect_http.is_empty(),
                "--redirect-http: there is no https:// listener to redirect to (--listen https://ADDR)"
            );
            return Ok(None);
        };
        anyhow::ensure!(
            https,
            "--tls-cert/--tls-key: there is no https:// listener (--listen https://ADDR)"
        );
        anyhow::ensure!(
            self.tls_max_handshakes > 0,
            "--tls-max-handshakes: must be at least 1"
        );
        Ok(Some(TlsConfig {
            files,
            options: TlsOptions {
                session_cache: self.tls_session_cache,
                tickets: self.tls_tickets,
                // The server decides, from --ktls and the kernel's probe.
                ktls: false,
            },
            limits: zcopy_tls::Limits {
                handshake_timeout: secs("tls-handshake-timeout", self.tls_handshake_timeout)?,
                max_handshakes: self.tls_max_handshakes,
            },
            ktls: self.ktls,
            force_ktls_attempt: false,
        }))
    }

    fn config(&self) -> anyhow::Result<Config> {
        let pick = |https: bool| -> Vec<SocketAddr> {
            self.listen
                .iter()
                .filter(|l| l.https == https)
                .map(|l| l.addr)
                .collect()
        };
        Ok(Config {
            root: self.root.clone(),
            listen: pick(false),
            tls_listen: pick(true),
            redirect_listen: self.redirect_http.clone(),
            tls: self.tls()?,
            hsts: self.hsts.map(|s| format!("max-age={s}")),
            engine: self.engine,
            workers: self.workers.unwrap_or(0),
            listing: !self.no_listing,
            hidden: self.hidden,
            symlinks: self.symlinks,
            index: self.index.clone(),
            header_timeout: secs("header-timeout", self.header_timeout)?,
            idle_timeout: secs("idle-timeout", self.idle_timeout)?,
            send_timeout: secs("send-timeout", self.send_timeout)?,
            max_connections: self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            limits: Limits {
                max_request_line: self.max_request_line,
                max_header_bytes: self.max_header_bytes,
                max_headers: self.max_headers,
            },
            access_log: self.access_log.as_deref().map(|a| match a {
                "-" => AccessLog::Stdout,
                f => AccessLog::File(PathBuf::from(f)),
            }),
            shutdown_grace: secs("shutdown-grace", self.shutdown_grace)?,
            file_cache_ttl: secs("file-cache-ttl", self.file_cache_ttl)?,
            precompressed: self.precompressed.0.clone(),
            rules: self.rules()?,
            ..Config::default()
        })
    }
}

/// Runs `zcopy serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zcopy: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    match std::fs::metadata(&config.root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            eprintln!("zcopy: {}: not a directory", config.root.display());
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("zcopy: {}: {e}", config.root.display());
            return Ok(ExitCode::from(2));
        }
    }
    let fds = raise_fd_limit();
    match FdBudget::fit(
        fds,
        config.worker_count(),
        args.max_connections,
        DEFAULT_MAX_CONNECTIONS,
        zcopy_http::cache::CACHE_FILES,
    ) {
        Ok(budget) => {
            tracing::debug!(fds, ?budget, "open-file limit shared out");
            config.max_connections = budget.max_connections;
            config.cache_files = budget.cache_files;
        }
        Err(e) => {
            eprintln!("zcopy: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    let root = config.root.clone();
    let summary = args.summary(&config);
    let has_auth = config.rules.iter().any(|r| r.auth.is_some());
    let server = match Server::bind(config) {
        Ok(s) => s,
        Err(e @ (ServerError::Root { .. } | ServerError::Tls(_) | ServerError::NoCertificate)) => {
            eprintln!("zcopy: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("zcopy: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let handle = server.shutdown_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("zcopy-signals".into())
        .spawn(move || {
            let mut signals = signals.forever();
            if let Some(sig) = signals.next() {
                tracing::info!(signal = sig, "shutting down (again to stop at once)");
                handle.shutdown();
            }
            if signals.next().is_some() {
                std::process::exit(130);
            }
        })
        .context("starting the signal thread")?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let tls_path = server.tls_path().map(|p| p.to_string()).unwrap_or_default();
        let https_port = server
            .local_addrs()
            .iter()
            .zip(server.listen_kinds())
            .find(|(_, k)| **k == ListenKind::Https)
            .map_or(443, |(a, _)| a.port());
        for (addr, kind) in server.local_addrs().iter().zip(server.listen_kinds()) {
            match kind {
                ListenKind::Http => writeln!(
                    out,
                    "zcopy: serving {} on http://{addr}/ ({summary})",
                    root.display()
                )?,
                ListenKind::Https => writeln!(
                    out,
                    "zcopy: serving {} on https://{addr}/ ({summary}; {tls_path})",
                    root.display()
                )?,
                ListenKind::Redirect => writeln!(
                    out,
                    "zcopy: redirecting http://{addr}/ to https (port {https_port})"
                )?,
            }
            if has_auth && *kind == ListenKind::Http && !addr.ip().is_loopback() {
                tracing::warn!(
                    "Basic auth on {addr} without TLS: passwords cross the network readable"
                );
                eprintln!(
                    "zcopy: warning: Basic auth on {addr}, which is not loopback, without TLS: \
                     passwords cross the network readable"
                );
            }
        }
        out.flush()?;
    }
    server.run().context("server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Connections served at once unless `--max-connections` says otherwise.
const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// Raises the open-file limit to its hard maximum (each connection is an fd, and so is
/// each file being sent or cached), and returns it.
fn raise_fd_limit() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!("could not raise the open-file limit: {e}");
        }
    }
    getrlimit(Resource::Nofile)
        .current
        .map_or(usize::MAX, |n| n.min(usize::MAX as u64) as usize)
}
