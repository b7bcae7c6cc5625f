//! The calibration profile: which engines were measured fastest on this machine, per
//! (source kind, sink kind, size class), as written by `zcopy bench --calibrate`.
//!
//! # Location
//!
//! [`Profile::path`]: `$ZCOPY_PROFILE` if set (an empty value means "no profile"),
//! else `$XDG_CONFIG_HOME/zcopy/profile`, else `~/.config/zcopy/profile`.
//!
//! # Format
//!
//! A line-based text file. Blank lines and lines starting with `#` are ignored. Every
//! other line is
//!
//! ```text
//! <source> <sink> <max-len> <engine> [<engine> ...]
//! ```
//!
//! - `<source>`: `file`, `pipe`, `tcp`, `unix` (an [`FdKind::name`]) or `mem` (user
//!   memory, no source fd);
//! - `<sink>`: an [`FdKind::name`];
//! - `<max-len>`: the line applies to transfers of at most this many bytes, or `max`
//!   for any length;
//! - the engines by [`EngineKind::name`], best first.
//!
//! For a transfer of `len` bytes the line with the smallest `<max-len>` ≥ `len` wins;
//! with no length known, the `max` line (or the largest class) does. For example
//!
//! ```text
//! file tcp 65536 sendfile splice read-write
//! file tcp max splice sendfile read-write
//! ```
//!
//! means: from a file to a TCP socket, up to 64 KiB sendfile first, above that splice.
//!
//! A TCP sink may name the path to the peer as `tcp@lo` (loopback, this host's own
//! addresses), `tcp@veth` (a peer behind a virtual device: another network
//! namespace) or `tcp@nic` ([`PeerClass::path`](crate::peer::PeerClass::path)):
//! such lines apply only to peers on that path ([`Profile::order_on`]), and plain
//! `tcp` lines to every peer without a line of its own. Older readers, which know
//! no `@`, simply find no pair for these lines and keep using the plain ones.
//! Unknown engine names are skipped (with a warning) so that old zcopy versions can
//! read newer profiles; malformed lines are skipped likewise.
//!
//! Lines starting with the word `io` record how the server's event loops measured
//! ([`IoFigure`]):
//!
//! ```text
//! io <driver> <file-size> <requests per server CPU-second>
//! ```
//!
//! e.g. `io epoll 1024 170413` and `io uring 1024 166037`: `zcopy serve --io auto`
//! picks its driver from them. Older readers skip these lines as malformed (with a
//! warning) and keep every other line.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::engine::EngineKind;
use crate::fdkind::FdKind;

/// One line of a profile: the engines for one (source, sink, size class), best first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Source kind name: an [`FdKind::name`] or `mem`.
    pub src: String,
    /// Sink kind name: an [`FdKind::name`].
    pub sink: String,
    /// Largest transfer length this line applies to; `None` for any length.
    pub max_len: Option<u64>,
    /// Engines, best first.
    pub engines: Vec<EngineKind>,
}

/// One `io` line of a profile: how one event loop of the server measured serving
/// one file size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoFigure {
    /// The driver's name (`epoll`, `uring`).
    pub driver: String,
    /// Size of the file served, in bytes.
    pub size: u64,
    /// Requests answered per CPU-second of the server's threads.
    pub per_cpu_s: u64,
}

/// A calibration profile: measured engine orders per fd pair and size class, and
/// the server's event loops' figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    entries: Vec<Entry>,
    io: Vec<IoFigure>,
}

/// The name a source kind has in a profile: its [`FdKind::name`], or `mem` for `None`.
pub fn src_name(src: Option<FdKind>) -> &'static str {
    src.map_or("mem", FdKind::name)
}

impl Profile {
    /// An empty profile.
    pub fn new() -> Profile {
        Profile::default()
    }

    /// Where the profile lives, if anywhere (see the module docs).
    pub fn path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("ZCOPY_PROFILE") {
            return (!p.is_empty()).then(|| PathBuf::from(p));
        }
        if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
            return Some(PathBuf::from(x).join("zcopy").join("profile"));
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
        Some(
            PathBuf::from(home)
                .join(".config")
                .join("zcopy")
                .join("profile"),
        )
    }

    /// Reads the profile at [`Profile::path`]: `Ok(None)` when no path applies or
    /// no file is there. An explicit read, each time it is called; nothing in the
    /// library calls it ([`Plan`](crate::Plan) takes a profile as an argument).
    pub fn load_default() -> io::Result<Option<Profile>> {
        let Some(path) = Profile::path() else {
            return Ok(None);
        };
        match Profile::read(&path) {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("profile {}: {e}", path.display()),
            )),
        }
    }

    /// [`Profile::load_default`] once per process, on the first call, for programs
    /// (the `zcopy` command line and server) that plan many transfers: later calls
    /// return the same profile. A profile that can't be read is logged and treated
    /// as none.
    pub fn cached_default() -> Option<&'static Profile> {
        static CACHE: OnceLock<Option<Profile>> = OnceLock::new();
        CACHE
            .get_or_init(|| {
                Profile::load_default()
                    .inspect_err(|e| tracing::warn!("{e}"))
                    .ok()
                    .flatten()
            })
            .as_ref()
    }

    /// Reads and parses the profile at `path` (not cached).
    pub fn read(path: &Path) -> io::Result<Profile> {
        Ok(Profile::parse(&std::fs::read_to_string(path)?))
    }

    /// Parses profile text; malformed lines and unknown engines are skipped with a
    /// warning.
    pub fn parse(text: &str) -> Profile {
        let mut p = Profile::new();
        for (no, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = match line.strip_prefix("io ") {
                Some(rest) => parse_io_line(rest).map(|f| p.insert_io(f)),
                None => parse_line(line).map(|entry| p.insert(entry)),
            };
            if let Err(e) = parsed {
                tracing::warn!("profile line {}: {e}", no + 1);
            }
        }
        p
    }

    /// The profile as text, in the format [`Profile::parse`] reads.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# zcopy calibration profile (written by `zcopy bench --calibrate`).\n\
             # <source> <sink> <max-len|max> <engines best first...>\n",
        );
        for e in &self.entries {
            let max = e.max_len.map_or("max".to_string(), |n| n.to_string());
            let engines: Vec<&str> = e.engines.iter().map(|k| k.name()).collect();
            out.push_str(&format!(
                "{} {} {} {}\n",
                e.src,
                e.sink,
                max,
                engines.join(" ")
            ));
        }
        if !self.io.is_empty() {
            out.push_str("# io <driver> <file-size> <requests per server CPU-second>\n");
        }
        for f in &self.io {
            out.push_str(&format!("io {} {} {}\n", f.driver, f.size, f.per_cpu_s));
        }
        out
    }

    /// Writes the profile to `path` atomically (temporary file, then rename),
    /// creating the parent directory.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, self.to_text())?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// Adds a line, replacing any line for the same (source, sink, size class).
    pub fn insert(&mut self, entry: Entry) {
        self.entries.retain(|e| {
            !(e.src == entry.src && e.sink == entry.sink && e.max_len == entry.max_len)
        });
        self.entries.push(entry);
        self.entries.sort_by(|a, b| {
            (&a.src, &a.sink, a.max_len.unwrap_or(u64::MAX)).cmp(&(
                &b.src,
                &b.sink,
                b.max_len.unwrap_or(u64::MAX),
            ))
        });
    }

    /// All lines, sorted by source, sink and size class.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Adds an `io` line, replacing any for the same driver and size.
    pub fn insert_io(&mut self, figure: IoFigure) {
        self.io
            .retain(|f| !(f.driver == figure.driver && f.size == figure.size));
        self.io.push(figure);
        self.io
            .sort_by(|a, b| (a.size, &a.driver).cmp(&(b.size, &b.driver)));
    }

    /// All `io` lines, sorted by size, then driver.
    pub fn io_figures(&self) -> &[IoFigure] {
        &self.io
    }

    /// Requests per server CPU-second measured for `driver` serving files of `size`
    /// bytes, if the profile has that line.
    pub fn io_figure(&self, driver: &str, size: u64) -> Option<u64> {
        self.io
            .iter()
            .find(|f| f.driver == driver && f.size == size)
            .map(|f| f.per_cpu_s)
    }

    /// The measured engine order for moving `len` bytes (`None`: unknown; a file
    /// source's own length is used then) from `src` (`None`: user memory) to `sink`,
    /// best first; `None` when the profile has nothing for this pair.
    pub fn order(
        &self,
        src: Option<FdKind>,
        sink: FdKind,
        len: Option<u64>,
    ) -> Option<Vec<EngineKind>> {
        self.order_for(src_name(src), sink.name(), src, len)
    }

    /// Like [`Profile::order`] for a peer reached over `path` (`lo`, `veth`, `nic`):
    /// the `<sink>@<path>` lines when the profile has any, else the plain ones.
    pub fn order_on(
        &self,
        src: Option<FdKind>,
        sink: FdKind,
        path: &str,
        len: Option<u64>,
    ) -> Option<Vec<EngineKind>> {
        let on_path = format!("{}@{path}", sink.name());
        self.order_for(src_name(src), &on_path, src, len)
            .or_else(|| self.order(src, sink, len))
    }

    fn order_for(
        &self,
        s: &str,
        k: &str,
        src: Option<FdKind>,
        len: Option<u64>,
    ) -> Option<Vec<EngineKind>> {
        let len = len.or_else(|| src.and_then(FdKind::file_len));
        let class = |e: &&Entry| e.max_len.unwrap_or(u64::MAX);
        let lines = self.entries.iter().filter(|e| e.src == s && e.sink == k);
        let best = match len {
            Some(len) => lines
                .clone()
                .filter(|e| e.max_len.is_none_or(|m| len <= m))
                .min_by_key(class)
                .or_else(|| lines.max_by_key(class)),
            None => lines.max_by_key(class),
        }?;
        (!best.engines.is_empty()).then(|| best.engines.clone())
    }
}

/// `<driver> <file-size> <requests per CPU-second>` (after the leading `io`).
fn parse_io_line(rest: &str) -> Result<IoFigure, String> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let [driver, size, per_cpu_s] = words[..] else {
        return Err(format!(
            "expected 'io <driver> <file-size> <requests per CPU-second>': io {rest}"
        ));
    };
    let number = |w: &str| {
        w.parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("bad number '{w}' in: io {rest}"))
    };
    Ok(IoFigure {
        driver: driver.to_string(),
        size: number(size)?,
        per_cpu_s: number(per_cpu_s)?,
    })
}

fn parse_line(line: &str) -> Result<Entry, String> {
    let mut words = line.split_whitespace();
    let (Some(src), Some(sink), Some(max)) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "expected '<source> <sink> <max-len> <engines...>': {line}"
        ));
    };
    let max_len = match max {
        "max" => None,
        n => Some(n.parse::<u64>().map_err(|_| format!("bad max-len '{n}'"))?),
    };
    let mut engines = Vec::new();
    for w in words {
        match w.parse::<EngineKind>() {
            Ok(k) if !engines.contains(&k) => engines.push(k),
            Ok(_) => {}
            Err(e) => tracing::warn!("profile: {e}"),
        }
    }
    if engines.is_empty() {
        return Err(format!("no known engine: {line}"));
    }
    Ok(Entry {
        src: src.to_string(),
        sink: sink.to_string(),
        max_len,
        engines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use EngineKind::*;

    const TEXT: &str = "# comment\n\
        file tcp 65536 sendfile splice read-write\n\
        file tcp max splice sendfile bogus read-write\n\
        \n\
        tcp file 1048576 splice read-write\n\
        garbage\n";

    #[test]
    fn picks_the_smallest_class_that_fits() {
        let p = Profile::parse(TEXT);
        let file = Some(FdKind::File { len: 10 });
        assert_eq!(
            p.order(file, FdKind::TcpSocket, Some(4096)),
            Some(vec![Sendfile, Splice, ReadWrite])
        );
        assert_eq!(
            p.order(file, FdKind::TcpSocket, Some(65536)),
            Some(vec![Sendfile, Splice, ReadWrite])
        );
        assert_eq!(
            p.order(file, FdKind::TcpSocket, Some(65537)),
            Some(vec![Splice, Sendfile, ReadWrite])
        );
        // Unknown length: the file's own length decides.
        assert_eq!(
            p.order(file, FdKind::TcpSocket, None),
            Some(vec![Sendfile, Splice, ReadWrite])
        );
        assert_eq!(
            p.order(None, FdKind::TcpSocket, None),
            None,
            "no line for mem → tcp"
        );
    }

    #[test]
    fn larger_than_every_class_uses_the_largest() {
        let p = Profile::parse(TEXT);
        assert_eq!(
            p.order(
                Some(FdKind::TcpSocket),
                FdKind::File { len: 0 },
                Some(1 << 30)
            ),
            Some(vec![Splice, ReadWrite])
        );
    }

    #[test]
    fn round_trips_through_text_and_disk() {
        let p = Profile::parse(TEXT);
        assert_eq!(p.entries().len(), 3);
        assert_eq!(Profile::parse(&p.to_text()), p);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/profile");
        p.save(&path).unwrap();
        assert_eq!(Profile::read(&path).unwrap(), p);
    }

    #[test]
    fn path_lines_apply_to_their_path_and_plain_lines_to_the_rest() {
        let p = Profile::parse(
            "file tcp max sendfile read-write\n\
             file tcp@lo max mmap read-write\n\
             file tcp@veth 65536 read-write\n",
        );
        let file = Some(FdKind::File { len: 1 << 20 });
        let on = |path| p.order_on(file, FdKind::TcpSocket, path, None).unwrap()[0];
        assert_eq!(on("lo"), Mmap);
        assert_eq!(on("veth"), ReadWrite, "largest veth class for any length");
        assert_eq!(on("nic"), Sendfile, "no nic lines: the plain ones");
        assert_eq!(p.order(file, FdKind::TcpSocket, None).unwrap()[0], Sendfile);
        assert_eq!(Profile::parse(&p.to_text()), p);
    }

    #[test]
    fn io_lines_round_trip_beside_the_engine_lines() {
        let text = format!(
            "{TEXT}io epoll 1024 170413\n\
             io uring 1024 166037\n\
             io epoll 65536 53146\n\
             io uring 65536 50070\n\
             io uring 65536 50071\n\
             io epoll x 1\n\
             io epoll 1024\n"
        );
        let p = Profile::parse(&text);
        assert_eq!(p.entries().len(), 3, "engine lines untouched");
        assert_eq!(p.io_figures().len(), 4, "the later line of a pair wins");
        assert_eq!(p.io_figure("epoll", 1024), Some(170413));
        assert_eq!(p.io_figure("uring", 65536), Some(50071));
        assert_eq!(p.io_figure("uring", 4096), None);
        assert_eq!(Profile::parse(&p.to_text()), p);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile");
        p.save(&path).unwrap();
        assert_eq!(Profile::read(&path).unwrap(), p);
    }

    #[test]
    fn a_profile_without_io_lines_still_loads() {
        // As written before `io` lines existed.
        let p = Profile::parse(TEXT);
        assert_eq!(p.entries().len(), 3);
        assert!(p.io_figures().is_empty());
        assert!(!p.to_text().contains("\nio "));
        // And a reader that knows no `io` lines finds one malformed and skips it.
        assert!(parse_line("io epoll 1024 170413").is_err());
    }

    #[test]
    fn insert_replaces_the_same_class() {
        let mut p = Profile::parse(TEXT);
        p.insert(Entry {
            src: "file".into(),
            sink: "tcp".into(),
            max_len: Some(65536),
            engines: vec![Uring],
        });
        assert_eq!(p.entries().len(), 3);
        assert_eq!(
            p.order(Some(FdKind::Pipe), FdKind::TcpSocket, Some(1)),
            None
        );
        assert_eq!(
            p.order(Some(FdKind::File { len: 1 }), FdKind::TcpSocket, Some(1)),
            Some(vec![Uring])
        );
    }
}
