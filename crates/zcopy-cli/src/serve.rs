//! `zcopy serve`: a static HTTP/1.1 file server that sends from page cache to socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use zcopy_http::auth::Users;
use zcopy_http::budget::FdBudget;
use zcopy_http::config::{AccessLog, Config, ListenKind, TlsConfig};
use zcopy_http::encoding::Encoding;
use zcopy_http::path::SymlinkPolicy;
use zcopy_http::request::Limits;
use zcopy_http::rules::{Cors, ErrorPage, Header, Rule};
use zcopy_http::server::{Server, ServerError};
use zcopy_tls::{CertFiles, KtlsMode, TlsOptions};

mod file;
mod settings;
mod systemd;

use settings::Settings;

/// Arguments of `zcopy serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file (every flag is a key of the same name, plus
    /// `[[rule]]` tables); flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration as start does, short of binding the listen addresses
    /// (files named are read, the certificate must match its key, the access log must
    /// be writable), print it (TOML, defaults filled in) and exit: 0 when it is
    /// valid, 2 when not.
    #[arg(long)]
    check_config: bool,
    /// Answer directories without an index file with 404 instead of a listing (same
    /// as `--listing=false`).
    #[arg(long, conflicts_with = "listing")]
    no_listing: bool,
    #[command(flatten)]
    settings: Settings,
}

/// Most bytes of an error page (they are sent from memory).
const ERROR_PAGE_MAX: u64 = 1024 * 1024;

/// The served tree, open, for the files the settings name inside it.
struct Root<'a> {
    path: &'a std::path::Path,
    dir: std::fs::File,
    symlinks: SymlinkPolicy,
}

impl Root<'_> {
    /// Opens `rel` (a [`settings::FallbackPath`]-checked path) beneath ROOT as a
    /// request for it would be (under `--symlinks`); `what` names it in the error.
    fn file(&self, rel: &str, what: &str) -> anyhow::Result<(std::fs::File, u64)> {
        use std::os::fd::AsFd;
        match zcopy_http::path::open_at(self.dir.as_fd(), rel, self.symlinks) {
            Ok(zcopy_http::path::Resolved::File(f, st)) => Ok((f, st.st_size as u64)),
            Ok(zcopy_http::path::Resolved::Dir(..)) => {
                anyhow::bail!("{what}: {rel} in {} is a directory", self.path.display())
            }
            Err(zcopy_http::path::OpenError::NotFound) => anyhow::bail!(
                "{what}: no file {rel} in {} (paths are relative to ROOT; symlinks per \
                 --symlinks)",
                self.path.display()
            ),
            Err(e) => anyhow::bail!("{what}: {rel} in {}: {e:?}", self.path.display()),
        }
    }
}

fn error_page(spec: &str, root: &Root<'_>) -> anyhow::Result<ErrorPage> {
    use std::io::Read;
    let (status, file) = spec
        .split_once('=')
        .with_context(|| format!("error page {spec}: want STATUS=FILE"))?;
    let status: u16 = status
        .parse()
        .ok()
        .filter(|s| (400..600).contains(s))
        .with_context(|| format!("error page {spec}: status must be 400-599"))?;
    let rel = settings::inside_root(file).map_err(anyhow::Error::msg)?;
    let (f, len) = root.file(&rel, &format!("error page {spec}"))?;
    anyhow::ensure!(
        len <= ERROR_PAGE_MAX,
        "error page {file}: larger than 1 MiB"
    );
    let mut body = Vec::with_capacity(len as usize);
    f.take(ERROR_PAGE_MAX + 1)
        .read_to_end(&mut body)
        .with_context(|| format!("error page {file}"))?;
    Ok(ErrorPage {
        status,
        content_type: zcopy_http::head::content_type(file),
        body: body.into(),
    })
}

/// The users of an htpasswd file and `USER:HASH` entries, if any.
fn users(realm: &str, file: Option<&PathBuf>, entries: &[String]) -> anyhow::Result<Option<Users>> {
    let mut users: Option<Users> = None;
    let mut add = |u: Users| match &mut users {
        Some(all) => all.merge(u),
        None => users = Some(u),
    };
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("auth file {}", file.display()))?;
        let u = Users::parse(realm, &text)
            .map_err(|e| anyhow::anyhow!("auth file {}: {e}", file.display()))?;
        add(u);
    }
    for spec in entries {
        let user = spec.split(':').next().unwrap_or("");
        let u = Users::parse(realm, spec).map_err(|e| anyhow::anyhow!("auth {user}:…: {e}"))?;
        add(u);
    }
    Ok(users)
}

/// Builds one rule; `None` when it sets nothing.
fn rule(glob: &str, s: &settings::RuleSpec, root: &Root<'_>) -> anyhow::Result<Option<Rule>> {
    if let Some(f) = &s.fallback {
        root.file(&f.0, "fallback")?;
    }
    let realm = s.auth_realm.as_deref().unwrap_or("zcopy");
    let rule = Rule {
        glob: glob.to_owned(),
        headers: s
            .header
            .iter()
            .map(|h| Header::parse(&h.0).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?,
        cache_control: s.cache_control.as_ref().map(|c| c.0.clone()),
        cors: s
            .cors
            .as_ref()
            .map(|c| Cors::parse(&c.0).map_err(anyhow::Error::msg))
            .transpose()?,
        auth: users(realm, s.auth_file.as_ref(), &s.auth)?.map(std::sync::Arc::new),
        listing: s.listing,
        compress: s.compress,
        upload: s.upload,
        webdav: s.webdav,
        immutable: s.immutable,
        fallback: s.fallback.as_ref().map(|f| f.0.clone()),
        error_pages: s
            .error_page
            .iter()
            .map(|p| error_page(&p.0, root))
            .collect::<anyhow::Result<_>>()?,
    };
    let empty = rule.headers.is_empty()
        && rule.cache_control.is_none()
        && rule.cors.is_none()
        && rule.auth.is_none()
        && rule.listing.is_none()
        && rule.compress.is_none()
        && rule.upload.is_none()
        && rule.webdav.is_none()
        && rule.immutable.is_none()
        && rule.fallback.is_none()
        && rule.error_pages.is_empty();
    Ok((!empty).then_some(rule))
}

/// The flags that apply per path, as one rule for every path, then the file's rules.
fn rules(
    s: &Settings,
    file: Option<&std::path::Path>,
    root: &Root<'_>,
) -> anyhow::Result<Vec<Rule>> {
    let global = settings::RuleSpec {
        glob: settings::Glob("**".into()),
        header: s.header.clone(),
        cache_control: s.cache_control.clone(),
        cors: s.cors.clone(),
        auth_file: s.auth_file.clone(),
        auth: s.auth.clone(),
        auth_realm: s.auth_realm.clone(),
        listing: None,
        compress: None,
        upload: None,
        webdav: None,
        immutable: None,
        fallback: s.fallback.clone(),
        error_page: s.error_page.clone(),
        rate_limit: None,
    };
    let mut out: Vec<Rule> = rule("**", &global, root)?.into_iter().collect();
    for (i, r) in s.rule.iter().enumerate() {
        let mut spec = r.clone();
        if spec.auth_realm.is_none() {
            spec.auth_realm = s.auth_realm.clone();
        }
        if let Some(made) = rule(&r.glob.0, &spec, root).with_context(|| {
            let at = file.map_or(String::new(), |f| format!("{}: ", f.display()));
            format!("{at}rule {} ({})", i + 1, r.glob.0)
        })? {
            out.push(made);
        }
    }
    Ok(out)
}

/// What the start-up line says about how files are served.
fn summary(config: &Config) -> String {
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
    let every = config.rules.iter().find(|r| r.glob == "**");
    if config.rules.iter().any(|r| r.auth.is_some()) {
        parts.push("Basic auth".into());
    }
    if let Some(c) = every.and_then(|r| r.cors.as_ref()) {
        parts.push(match c {
            Cors::Any => "CORS *".into(),
            Cors::List(l) => format!("CORS {}", l.join(",")),
        });
    }
    if let Some(f) = every.and_then(|r| r.fallback.as_ref()) {
        parts.push(format!("fallback /{f}"));
    }
    let more = config.rules.iter().filter(|r| r.glob != "**").count();
    if more > 0 {
        parts.push(format!("{more} path rules"));
    }
    parts.join(", ")
}

/// The TLS settings, checked against the listeners asked for.
fn tls(s: &Settings) -> anyhow::Result<Option<TlsConfig>> {
    fn get<T: Clone>(v: &Option<T>) -> T {
        v.clone().expect("filled in by Settings::defaults")
    }
    let https = s
        .listen
        .iter()
        .any(|l| l.https(&s.listen, s.tls_cert.is_some()));
    let files = match (&s.tls_cert, &s.tls_key) {
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
            s.hsts.is_none(),
            "--hsts: there is no HTTPS listener (give --tls-cert and --tls-key)"
        );
        anyhow::ensure!(
            s.redirect_http.is_empty(),
            "--redirect-http: there is no HTTPS listener to redirect to (give --tls-cert \
             and --tls-key)"
        );
        return Ok(None);
    };
    anyhow::ensure!(
        https,
        "--tls-cert/--tls-key: every listener says http://, so none serves HTTPS (write \
         one as https://ADDR, or as ADDR without a scheme)"
    );
    let max_handshakes = get(&s.tls_max_handshakes).0;
    anyhow::ensure!(
        max_handshakes > 0,
        "--tls-max-handshakes: must be at least 1"
    );
    Ok(Some(TlsConfig {
        files,
        options: TlsOptions {
            session_cache: get(&s.tls_session_cache).0,
            tickets: get(&s.tls_tickets),
            // The server decides, from --ktls and the kernel's probe.
            ktls: false,
            // The server decides, from --http2.
            h2: false,
        },
        limits: zcopy_tls::Limits {
            handshake_timeout: get(&s.tls_handshake_timeout).duration(),
            max_handshakes,
        },
        ktls: if get(&s.ktls).0 == "off" {
            KtlsMode::Off
        } else {
            KtlsMode::Auto
        },
        force_ktls_attempt: false,
    }))
}

/// The server configuration of fully layered settings (see [`Settings::defaults`]).
fn config(s: &Settings, file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    fn get<T: Clone>(v: &Option<T>) -> T {
        v.clone().expect("filled in by Settings::defaults")
    }
    let symlinks = match get(&s.symlinks).0.as_str() {
        "follow" => SymlinkPolicy::Follow,
        "never" => SymlinkPolicy::Never,
        _ => SymlinkPolicy::WithinRoot,
    };
    let root_path = get(&s.root);
    let root = Root {
        dir: open_root(&root_path)?,
        path: &root_path,
        symlinks,
    };
    let pick = |https: bool| -> Vec<SocketAddr> {
        s.listen
            .iter()
            .filter(|l| l.https(&s.listen, s.tls_cert.is_some()) == https)
            .flat_map(|l| l.addrs.iter().copied())
            .collect()
    };
    Ok(Config {
        root: get(&s.root),
        listen: pick(false),
        tls_listen: pick(true),
        redirect_listen: s.redirect_http.clone(),
        tls: tls(s)?,
        hsts: s.hsts.map(|c| format!("max-age={}", c.0)),
        engine: get(&s.engine).0.parse().map_err(anyhow::Error::msg)?,
        io: get(&s.io).0.parse().map_err(anyhow::Error::msg)?,
        workers: s.workers.map_or(0, |c| c.0),
        listing: get(&s.listing),
        hidden: get(&s.hidden),
        symlinks,
        index: get(&s.index),
        header_timeout: get(&s.header_timeout).duration(),
        idle_timeout: get(&s.idle_timeout).duration(),
        send_timeout: get(&s.send_timeout).duration(),
        max_connections: s.max_connections.map_or(DEFAULT_MAX_CONNECTIONS, |c| c.0),
        limit_rate: s.limit_rate.as_ref().map(settings::Rate::bytes_per_sec),
        archives: get(&s.archives),
        upload: get(&s.upload),
        webdav: get(&s.webdav),
        max_upload_size: get(&s.max_upload_size).bytes_per_sec(),
        upload_resume_ttl: get(&s.upload_resume_timeout).duration(),
        allow_anonymous_writes: get(&s.allow_anonymous_writes),
        limits: Limits {
            max_request_line: get(&s.max_request_line).0,
            max_header_bytes: get(&s.max_header_bytes).0,
            max_headers: get(&s.max_headers).0,
        },
        access_log: s.access_log.as_deref().map(|a| match a {
            "-" => AccessLog::Stdout,
            f => AccessLog::File(PathBuf::from(f)),
        }),
        access_log_format: get(&s.access_log_format)
            .0
            .parse()
            .map_err(anyhow::Error::msg)?,
        shutdown_grace: get(&s.shutdown_grace).duration(),
        file_cache_ttl: get(&s.file_cache_ttl).duration(),
        precompressed: Encoding::parse_list(&get(&s.precompressed).0)
            .map_err(anyhow::Error::msg)?,
        compress: get(&s.compress),
        http2: get(&s.http2),
        snapshot_band: s.snapshot_band.as_ref().map_or(
            Some(zcopy_http::snapshot::DEFAULT_BAND),
            settings::Band::bytes,
        ),
        // A band given applies to every peer; the default has its own for loopback.
        snapshot_band_loopback: match s.snapshot_band {
            None => Some(zcopy_http::snapshot::DEFAULT_BAND_LOOPBACK),
            Some(_) => None,
        },
        snapshot_memory: s.snapshot_memory.as_ref().map_or_else(
            zcopy_http::snapshot::default_budget,
            settings::Rate::bytes_per_sec,
        ),
        rules: rules(s, file, &root)?,
        ..Config::default()
    })
}

/// The root directory, open (it must be one).
fn open_root(root: &std::path::Path) -> anyhow::Result<std::fs::File> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => anyhow::bail!("{}: not a directory", root.display()),
        // `--listing false` reads `false` as ROOT: say how a BOOL flag takes its value.
        Err(e) if matches!(root.to_str(), Some("true" | "false")) => anyhow::bail!(
            "{}: {e} (read as ROOT: a BOOL flag takes its value after '=', as in \
             --listing=false)",
            root.display()
        ),
        Err(e) => anyhow::bail!("{}: {e}", root.display()),
    }
    std::fs::File::open(root).with_context(|| root.display().to_string())
}

/// What start would find wrong beyond the settings themselves, found without
/// binding or creating anything: the certificate and key (read, and matched), and
/// the access log's file or directory.
fn check_files(config: &Config) -> anyhow::Result<()> {
    if let Some(tls) = &config.tls {
        zcopy_tls::load::load(&tls.files, &zcopy_tls::config::provider())?;
    }
    if let Some(AccessLog::File(path)) = &config.access_log {
        let what = || format!("access log {}", path.display());
        // `zcopy serve --access-log dist/` reads dist/ as the log file: say so.
        anyhow::ensure!(
            !path.is_dir(),
            "{}: is a directory (a bare --access-log, which logs to stdout, takes the next \
             word as its FILE: give ROOT before it or write `--access-log -`)",
            what()
        );
        if path.exists() {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .with_context(what)?;
        } else {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            let m = std::fs::metadata(dir)
                .with_context(|| format!("{}: directory {}", what(), dir.display()))?;
            anyhow::ensure!(
                m.is_dir(),
                "{}: {} is not a directory",
                what(),
                dir.display()
            );
            rustix::fs::access(
                dir,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            )
            .map_err(std::io::Error::from)
            .with_context(|| format!("{}: cannot create a file in {}", what(), dir.display()))?;
        }
    }
    Ok(())
}

impl ServeArgs {
    /// The settings in effect: defaults, then the config file, then the flags.
    fn effective(&self) -> anyhow::Result<Settings> {
        let mut flags = self.settings.clone();
        if self.no_listing {
            flags.listing = Some(false);
        }
        let file = match &self.config {
            Some(path) => file::load(path)
                .map_err(anyhow::Error::msg)?
                .fold_headers()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            None => Settings::default(),
        };
        let flags = flags.fold_headers().map_err(anyhow::Error::msg)?;
        let layered = Settings::defaults()
            .overlay(&file)
            .and_then(|s| s.overlay(&flags))
            .map_err(anyhow::Error::msg)?;
        Ok(layered)
    }
}

/// Why the configuration can't be used (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
struct BadConfig(anyhow::Error);

/// The settings in effect and the server configuration they make, checked as far as
/// can be without binding (the root is a directory; the fallback, error pages and
/// auth files exist beneath it or are read; the certificate matches its key; the
/// access log can be opened) and fitted to `fds` open files. `--check-config`, start
/// and reload all go through here.
fn load(args: &ServeArgs, fds: usize) -> Result<(Settings, Config), BadConfig> {
    let settings = args.effective().map_err(BadConfig)?;
    let mut config = config(&settings, args.config.as_deref()).map_err(BadConfig)?;
    check_files(&config).map_err(BadConfig)?;
    let budget = FdBudget::fit(
        fds,
        config.worker_count(),
        settings.max_connections.map(|c| c.0),
        DEFAULT_MAX_CONNECTIONS,
        zcopy_http::cache::CACHE_FILES,
    )
    .map_err(|e| BadConfig(anyhow::anyhow!("{e}")))?;
    tracing::debug!(fds, ?budget, "open-file limit shared out");
    config.max_connections = budget.max_connections;
    config.cache_files = budget.cache_files;
    Ok((settings, config))
}

/// Runs `zcopy serve`.
///
/// `quiet` (`-q`, errors only): the start-up lines are cut to each listener's bare
/// URL (`http://127.0.0.1:8080/`, what a script needs to learn a port 0 address),
/// with no warnings and no metrics line.
pub fn run(args: ServeArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let fds = raise_fd_limit();
    let (settings, config) = match load(&args, fds) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zcopy: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if args.check_config {
        print!(
            "{}",
            toml::to_string(&settings).context("printing the configuration")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let inherited = match systemd::listeners() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("zcopy: socket activation: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let root = config.root.clone();
    let summary = summary(&config);
    let has_auth = has_auth(&config);
    if (config.upload
        || config.webdav
        || config
            .rules
            .iter()
            .any(|r| r.upload == Some(true) || r.webdav == Some(true)))
        && config.allow_anonymous_writes
        && config
            .listen
            .iter()
            .chain(&config.tls_listen)
            .any(|a| !a.ip().is_loopback())
    {
        tracing::warn!("--allow-anonymous-writes: anyone who reaches a listener may upload");
        eprintln!(
            "zcopy: warning: --allow-anonymous-writes: anyone who reaches a listener that is \
             not loopback may upload files (PUT) without a password"
        );
    }
    let server = match Server::bind_with(config, inherited) {
        Ok(s) => s,
        Err(
            e @ (ServerError::Root { .. }
            | ServerError::Tls(_)
            | ServerError::NoCertificate
            | ServerError::AccessLog { .. }),
        ) => {
            eprintln!("zcopy: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("zcopy: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut metrics_at = None;
    if let Some(addr) = settings.metrics {
        let started = std::net::TcpListener::bind(addr).and_then(|l| {
            metrics_at = Some(l.local_addr()?);
            zcopy_http::metrics::spawn(l, server.stats())
        });
        if let Err(e) = started {
            eprintln!("zcopy: cannot serve metrics on {addr}: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    let handle = server.shutdown_handle();
    let reloader = server.reload_handle();
    let tls_reloader = server.tls_reloader();
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGUSR1,
    ])
    .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("zcopy-signals".into())
        .spawn(move || {
            on_signals(
                signals,
                &args,
                fds,
                quiet,
                &handle,
                &reloader,
                &tls_reloader,
            )
        })
        .context("starting the signal thread")?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let https_port = server
            .local_addrs()
            .iter()
            .zip(server.listen_kinds())
            .find(|(_, k)| **k == ListenKind::Https)
            .map_or(443, |(a, _)| a.port());
        let addrs: Vec<_> = server
            .local_addrs()
            .iter()
            .copied()
            .zip(server.listen_kinds().iter().copied())
            .collect();
        let listeners = Listeners {
            root: &root,
            summary: &summary,
            tls_path: server.tls_path().map(|p| p.to_string()).unwrap_or_default(),
            https_port,
            has_auth,
            quiet,
        };
        listeners.announce(&mut out, &addrs)?;
        if let Some(addr) = metrics_at.filter(|_| !quiet) {
            writeln!(out, "zcopy: metrics on http://{addr}/metrics")?;
        }
        out.flush()?;
    }
    systemd::notify("READY=1");
    server.run().context("server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Whether some rule asks for Basic auth.
fn has_auth(config: &zcopy_http::config::Config) -> bool {
    config.rules.iter().any(|r| r.auth.is_some())
}

/// What the start-up line of a listener says.
struct Listeners<'a> {
    root: &'a std::path::Path,
    summary: &'a str,
    tls_path: String,
    https_port: u16,
    has_auth: bool,
    /// `-q`: only each listener's URL is printed (warnings go to the log, at its level).
    quiet: bool,
}

impl Listeners<'_> {
    /// Prints one line per address ("zcopy: serving ROOT on http://ADDR/ (...)"), at
    /// start and for each address a reload adds, so a script learns a port 0 address.
    fn announce(
        &self,
        out: &mut impl std::io::Write,
        addrs: &[(std::net::SocketAddr, ListenKind)],
    ) -> std::io::Result<()> {
        if self.quiet {
            // Only what a script needs (the port, when 0 was asked for): one URL per
            // listener.
            for (addr, kind) in addrs {
                match kind {
                    ListenKind::Https => writeln!(out, "https://{addr}/")?,
                    ListenKind::Http | ListenKind::Redirect => writeln!(out, "http://{addr}/")?,
                }
                if self.has_auth && *kind == ListenKind::Http && !addr.ip().is_loopback() {
                    tracing::warn!(
                        "Basic auth on {addr} without TLS: passwords cross the network readable"
                    );
                }
            }
            return out.flush();
        }
        let (root, summary) = (self.root.display(), self.summary);
        for (addr, kind) in addrs {
            match kind {
                ListenKind::Http => {
                    writeln!(out, "zcopy: serving {root} on http://{addr}/ ({summary})")?
                }
                ListenKind::Https => writeln!(
                    out,
                    "zcopy: serving {root} on https://{addr}/ ({summary}; {})",
                    self.tls_path
                )?,
                ListenKind::Redirect => writeln!(
                    out,
                    "zcopy: redirecting http://{addr}/ to https (port {})",
                    self.https_port
                )?,
            }
            if self.has_auth && *kind == ListenKind::Http && !addr.ip().is_loopback() {
                tracing::warn!(
                    "Basic auth on {addr} without TLS: passwords cross the network readable"
                );
                eprintln!(
                    "zcopy: warning: Basic auth on {addr}, which is not loopback, without TLS: \
                     passwords cross the network readable"
                );
            }
        }
        out.flush()
    }
}

/// The signal thread: SIGHUP reloads the configuration and the HTTPS certificate and
/// key (the old ones stay if the new ones fail to load), SIGUSR1 reopens the access log file, SIGINT/SIGTERM shut down
/// gracefully, a second one at once.
fn on_signals(
    mut signals: signal_hook::iterator::Signals,
    args: &ServeArgs,
    fds: usize,
    quiet: bool,
    shutdown: &zcopy_http::server::ShutdownHandle,
    reloader: &zcopy_http::server::ReloadHandle,
    tls: &zcopy_http::server::TlsReloader,
) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    for sig in signals.forever() {
        match sig {
            SIGHUP if !shutdown.is_shutdown() => {
                let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
                let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
                systemd::notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
                match load(args, fds) {
                    Ok((_, config)) => {
                        let (root, summary) = (config.root.clone(), summary(&config));
                        let has_auth = has_auth(&config);
                        match reloader.reload(config) {
                            Ok(done) => {
                                let listeners = Listeners {
                                    root: &root,
                                    summary: &summary,
                                    tls_path: done.tls_path.unwrap_or_default(),
                                    https_port: done.https_port,
                                    has_auth,
                                    quiet,
                                };
                                let mut out = std::io::stdout().lock();
                                if let Err(e) = listeners.announce(&mut out, &done.added) {
                                    tracing::warn!("stdout: {e}");
                                }
                                drop(out);
                                tracing::info!(workers = done.workers, "configuration reloaded");
                            }
                            Err(e) => {
                                tracing::error!("reload failed, old configuration kept: {e}")
                            }
                        }
                    }
                    Err(e) => tracing::error!("reload failed, old configuration kept: {e}"),
                }
                match tls.reload() {
                    Ok(true) => tracing::info!("TLS certificate and key reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::error!("TLS reload failed, old certificate kept: {e}"),
                }
                systemd::notify("READY=1");
            }
            SIGUSR1 => match reloader.reopen_log() {
                Ok(()) => tracing::info!("access log reopened"),
                Err(e) => tracing::error!("reopening the access log failed: {e}"),
            },
            SIGINT | SIGTERM if !shutdown.is_shutdown() => {
                tracing::info!(signal = sig, "shutting down (again to stop at once)");
                systemd::notify("STOPPING=1");
                shutdown.shutdown();
            }
            SIGINT | SIGTERM => std::process::exit(130),
            _ => {}
        }
    }
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
