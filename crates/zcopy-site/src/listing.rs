//! Directory listings: HTML (every name escaped) and JSON, sorted.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::conditional::Validators;
use rustix::fs::{AtFlags, FileType};

/// One directory entry to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// File name (not escaped).
    pub name: String,
    /// Is a directory.
    pub is_dir: bool,
    /// Size in bytes (files).
    pub size: u64,
    /// Modification time.
    pub modified: SystemTime,
}

/// Most entries a directory may hold to be listed (or counted for a HEAD): beyond
/// it the listing is refused (403), so one request costs bounded time and memory.
pub const MAX_LISTING: usize = 10_000;

/// Why a directory can't be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// More than [`MAX_LISTING`] entries.
    #[error("more than {MAX_LISTING} entries")]
    TooLarge,
    /// Reading the directory failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What one directory entry is, before the caller decides whether it is listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (its target not looked at).
    Link,
}

/// Reads the entries of an open directory, skipping dotfiles unless `hidden`, sorted
/// (directories first, then by name); at most `limit` entries are read.
///
/// Each entry is stat'ed *without* following a symlink; `keep` is told its name, that
/// stat and what it is, and answers with the stat to show (a link's target, opened as
/// a request for it would be) or `None` to leave it out. Only regular files and
/// directories are listed (FIFOs, sockets and devices are never served), and names
/// that aren't UTF-8 are left out (request paths must decode to UTF-8). `dir` must be
/// opened for reading (not O_PATH); its file offset is not touched.
pub fn read_entries_with(
    dir: &std::fs::File,
    hidden: bool,
    limit: usize,
    keep: &mut dyn FnMut(&str, Kind, rustix::fs::Stat) -> Option<rustix::fs::Stat>,
) -> Result<Vec<Entry>, ListError> {
    // Names first (no stat): a directory over the limit costs only its reading.
    let mut names = Vec::new();
    let mut seen = 0usize;
    for item in rustix::fs::Dir::read_from(dir).map_err(std::io::Error::from)? {
        let item = item.map_err(std::io::Error::from)?;
        let raw = item.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        seen += 1;
        if seen > limit {
            return Err(ListError::TooLarge);
        }
        let Ok(name) = item.file_name().to_str() else {
            continue;
        };
        if !hidden && name.starts_with('.') {
            continue;
        }
        names.push(name.to_owned());
    }
    let mut out = Vec::with_capacity(names.len());
    for name in &names {
        let name = name.as_str();
        let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Link,
            _ => continue,
        };
        let Some(st) = keep(name, kind, st) else {
            continue;
        };
        let is_dir = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => true,
            FileType::RegularFile => false,
            _ => continue,
        };
        #[allow(clippy::unnecessary_cast)] // field types differ between architectures
        let (size, secs, nsec) = (
            st.st_size as u64,
            st.st_mtime as i64,
            st.st_mtime_nsec as u32,
        );
        let modified = if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nsec.min(999_999_999))
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        };
        out.push(Entry {
            name: name.to_owned(),
            is_dir,
            size: if is_dir { 0 } else { size },
            modified,
        });
    }
    sort(&mut out, Order::default());
    Ok(out)
}

/// Counts the entries of `dir` (for a HEAD), up to `limit`: `Err(TooLarge)` beyond.
pub fn count_entries(dir: &std::fs::File, limit: usize) -> Result<usize, ListError> {
    let mut seen = 0usize;
    for item in rustix::fs::Dir::read_from(dir).map_err(std::io::Error::from)? {
        let item = item.map_err(std::io::Error::from)?;
        let raw = item.file_name().to_bytes();
        if raw != b"." && raw != b".." {
            seen += 1;
            if seen > limit {
                return Err(ListError::TooLarge);
            }
        }
    }
    Ok(seen)
}

/// The column a listing is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Key {
    /// Natural name order (`file2` before `file10`).
    #[default]
    Name,
    /// Size in bytes.
    Size,
    /// Modification time.
    Modified,
}

/// How a listing is sorted: `?sort=name|size|modified&order=asc|desc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Order {
    /// The column.
    pub key: Key,
    /// Largest / newest / last name first.
    pub desc: bool,
}

impl Order {
    /// Reads `sort` and `order` from a raw query string; unknown values keep the
    /// default (name, ascending).
    pub fn from_query(query: &str) -> Order {
        let mut o = Order::default();
        for kv in query.split('&') {
            match kv {
                "sort=name" => o.key = Key::Name,
                "sort=size" => o.key = Key::Size,
                "sort=modified" => o.key = Key::Modified,
                "order=asc" => o.desc = false,
                "order=desc" => o.desc = true,
                _ => {}
            }
        }
        o
    }

    fn key_name(key: Key) -> &'static str {
        match key {
            Key::Name => "name",
            Key::Size => "size",
            Key::Modified => "modified",
        }
    }
}

/// Sorts directories first, then by `order` (ties broken by natural name order).
pub fn sort(entries: &mut [Entry], order: Order) {
    entries.sort_by(|a, b| {
        let by = match order.key {
            Key::Name => natural_cmp(&a.name, &b.name),
            Key::Size => a
                .size
                .cmp(&b.size)
                .then_with(|| natural_cmp(&a.name, &b.name)),
            Key::Modified => a
                .modified
                .cmp(&b.modified)
                .then_with(|| natural_cmp(&a.name, &b.name)),
        };
        let by = if order.desc { by.reverse() } else { by };
        b.is_dir.cmp(&a.is_dir).then(by)
    });
}

/// Natural order: digit runs compare as numbers, other text case-insensitively;
/// fully equal-looking names fall back to bytewise order.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let n = x.iter().take_while(|b| b.is_ascii_digit()).count();
                let m = y.iter().take_while(|b| b.is_ascii_digit()).count();
                let (dx, dy) = (&x[..n], &y[..m]);
                let tx = &dx[dx.iter().position(|&b| b != b'0').unwrap_or(n)..];
                let ty = &dy[dy.iter().position(|&b| b != b'0').unwrap_or(m)..];
                let ord = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[n..];
                y = &y[m..];
            }
            (Some(c), Some(d)) => {
                let ord = c.to_ascii_lowercase().cmp(&d.to_ascii_lowercase());
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

/// Validators for a listing: a strong ETag from the body's bytes (every variant,
/// sort order and format has its own) and the newest mtime of the directory and its
/// entries.
pub fn validators(body: &[u8], dir: &rustix::fs::Stat, entries: &[Entry]) -> Validators {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    let from_dir = crate::cache::validators(dir).modified;
    let newest = entries
        .iter()
        .map(|e| e.modified)
        .fold(from_dir, std::cmp::max)
        .min(SystemTime::now());
    Validators {
        etag: format!("\"l-{:016x}-{:x}\"", h.finish(), body.len()),
        modified: newest,
    }
}

/// Characters kept as they are in an href path segment: RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Appends `s` with `&<>"'` replaced by character references.
fn push_html(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `1536` → `1.5 KiB`; below 1 KiB, exact bytes.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// Seconds since the epoch (negative before 1970).
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (days-to-civil after Howard Hinnant).
pub fn iso_utc(t: SystemTime) -> String {
    let secs = unix_secs(t);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The page's style: light and dark by `prefers-color-scheme`, one column on phones.
const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1b1b1b;--bg:#fff;--muted:#666;--line:#e3e3e3;--stripe:#f6f6f6;--link:#0b57d0}\
@media (prefers-color-scheme:dark){:root{--fg:#e6e6e6;--bg:#151515;--muted:#9a9a9a;--line:#333;--stripe:#1d1d1d;--link:#8ab4f8}}\
body{font-family:system-ui,sans-serif;margin:0 auto;padding:1em;max-width:60em;color:var(--fg);background:var(--bg)}\
h1{font-size:1.25em;font-weight:600;word-break:break-all}\
h1 a{color:var(--link);text-decoration:none}\
a{color:var(--link)}\
table{border-collapse:collapse;width:100%}\
th,td{padding:.35em .6em;text-align:left;border-bottom:1px solid var(--line)}\
th a{color:inherit}\
td.name{word-break:break-all}\
td.size,th.size{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
td.date{white-space:nowrap;color:var(--muted);font-variant-numeric:tabular-nums}\
tbody tr:nth-child(even){background:var(--stripe)}\
footer{margin-top:1em;color:var(--muted);font-size:.9em}\
@media (max-width:600px){body{padding:.5em}th.date,td.date{display:none}th,td{padding:.5em .3em}}\
";

/// A column head that links to sorting by `key` (clicking the current key flips
/// the order), with an arrow on the current one.
fn column_head(out: &mut String, label: &str, key: Key, class: &str, current: Order) {
    let desc = if current.key == key {
        !current.desc
    } else {
        key != Key::Name
    };
    let arrow = match (current.key == key, current.desc) {
        (false, _) => "",
        (true, false) => " \u{2191}",
        (true, true) => " \u{2193}",
    };
    let _ = write!(
        out,
        "<th class=\"{class}\"><a href=\"?sort={}&amp;order={}\">{label}{arrow}</a></th>",
        Order::key_name(key),
        if desc { "desc" } else { "asc" }
    );
}

/// An HTML page listing `entries` (already sorted by `order`) for the directory
/// whose decoded path segments are `segments`.
///
/// Breadcrumbs link every ancestor; entry links are relative (`name` or `name/`),
/// each segment percent-encoded, so the page must be served at a URL ending in `/`.
/// A `../` row is added below the root. Sizes are human-readable with the exact byte
/// count in a `title`; dates are UTC. Column heads are sort links (no JavaScript);
/// the footer counts entries and adds up file sizes.
pub fn html(segments: &[String], entries: &[Entry], order: Order, archive: bool) -> String {
    html_with(segments, entries, order, archive, UploadUi::Off)
}

/// Upload controls on a listing page (only where the directory takes uploads and the
/// request passed its auth).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UploadUi {
    /// None.
    #[default]
    Off,
    /// A file picker and drop zone: each file a raw PUT, with a progress bar.
    Files,
    /// Also folders (MKCOL), a new-folder button and delete buttons (WebDAV is on).
    Dav,
}

/// The script behind [`UploadUi`], served by the server itself at
/// `DIR/?asset=upload.js` (no inline script: a `script-src 'self'` CSP holds).
pub const UPLOAD_JS: &str = include_str!("assets/upload.js");

/// The upload controls' style.
const UPLOAD_STYLE: &str = "\
#zu{margin-top:1em}\
#zu-drop{border:2px dashed var(--line);border-radius:.5em;padding:1em;text-align:center;color:var(--muted)}\
#zu-drop.over{border-color:var(--link);color:var(--fg)}\
#zu-bar{width:100%}\
.zu-del{margin-left:.6em;font-size:.8em}\
";

/// [`html`] with upload controls.
pub fn html_with(
    segments: &[String],
    entries: &[Entry],
    order: Order,
    archive: bool,
    upload: UploadUi,
) -> String {
    let mut url_path = String::from("/");
    for s in segments {
        url_path.push_str(s);
        url_path.push('/');
    }
    let mut out = String::with_capacity(2048 + entries.len() * 200);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=\"color-scheme\" content=\"light dark\">\n");
    out.push_str("<title>Index of ");
    push_html(&mut out, &url_path);
    out.push_str("</title>\n<style>");
    out.push_str(STYLE);
    if upload != UploadUi::Off {
        out.push_str(UPLOAD_STYLE);
    }
    out.push_str("</style>\n</head>\n<body>\n<h1>Index of <nav style=\"display:inline\" aria-label=\"breadcrumbs\">");
    // Breadcrumbs: "/" then each ancestor, as relative links up the tree.
    let depth = segments.len();
    let up = |n: usize| {
        if n == 0 {
            String::from("./")
        } else {
            "../".repeat(n)
        }
    };
    let _ = write!(out, "<a href=\"{}\">/</a>", up(depth));
    for (i, seg) in segments.iter().enumerate() {
        let _ = write!(out, "<a href=\"{}\">", up(depth - i - 1));
        push_html(&mut out, seg);
        out.push_str("</a>/");
    }
    out.push_str("</nav></h1>\n<table>\n<thead><tr>");
    column_head(&mut out, "Name", Key::Name, "name", order);
    column_head(&mut out, "Size", Key::Size, "size", order);
    column_head(&mut out, "Modified (UTC)", Key::Modified, "date", order);
    out.push_str("</tr></thead>\n<tbody>\n");
    if depth > 0 {
        out.push_str(
            "<tr><td class=\"name\"><a href=\"../\">../</a></td><td class=\"size\"></td><td class=\"date\"></td></tr>\n",
        );
    }
    let (mut dirs, mut files, mut total) = (0u64, 0u64, 0u64);
    for e in entries {
        let slash = if e.is_dir { "/" } else { "" };
        let _ = write!(
            out,
            "<tr><td class=\"name\"><a href=\"{}{slash}\">",
            utf8_percent_encode(&e.name, SEGMENT)
        );
        push_html(&mut out, &e.name);
        out.push_str(slash);
        out.push_str("</a></td>");
        if e.is_dir {
            dirs += 1;
            out.push_str("<td class=\"size\">-</td>");
        } else {
            files += 1;
            total = total.saturating_add(e.size);
            let _ = write!(
                out,
                "<td class=\"size\" title=\"{} bytes\" data-bytes=\"{}\">{}</td>",
                e.size,
                e.size,
                human_size(e.size)
            );
        }
        let _ = writeln!(out, "<td class=\"date\">{}</td></tr>", iso_utc(e.modified));
    }
    out.push_str("</tbody>\n</table>\n");
    if upload != UploadUi::Off {
        let dav = u8::from(upload == UploadUi::Dav);
        let _ = write!(
            out,
            "<section id=\"zu\" data-webdav=\"{dav}\" aria-label=\"upload\">\n\
             <p><label>Upload files: <input type=\"file\" id=\"zu-files\" multiple></label> \
             <button type=\"button\" id=\"zu-mkdir\" hidden>New folder</button></p>\n\
             <div id=\"zu-drop\">or drop {} here</div>\n\
             <progress id=\"zu-bar\" max=\"1\" value=\"0\" hidden></progress>\n\
             <p id=\"zu-status\" role=\"status\"></p>\n</section>\n\
             <script src=\"?asset=upload.js\" defer></script>\n",
            if dav == 1 {
                "files and folders"
            } else {
                "files"
            }
        );
    }
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let _ = write!(
        out,
        "<footer>{}, {} — <span title=\"{total} bytes\">{}</span>          · <a href=\"?format=json\">JSON</a>{}</footer>\n</body>\n</html>\n",
        plural(dirs, "directory", "directories"),
        plural(files, "file", "files"),
        human_size(total),
        if archive {
            " · <a href=\"?download=tar\" download>Download as .tar</a>"
        } else {
            ""
        }
    );
    out
}

/// A JSON array listing `entries`.
///
/// Each element is `{"name":…,"type":"file"|"dir","size":bytes,"modified":unix
/// seconds}` (size 0 for directories).
pub fn json(entries: &[Entry]) -> String {
    let mut out = String::with_capacity(2 + entries.len() * 80);
    out.push('[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        zcopy_http1::json::push_str(&mut out, &e.name);
        let kind = if e.is_dir { "dir" } else { "file" };
        let _ = write!(
            out,
            ",\"type\":\"{kind}\",\"size\":{},\"modified\":{}}}",
            e.size,
            unix_secs(e.modified)
        );
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const XSS: &str = "<img src=x onerror=alert(1)>.txt";

    fn entry(name: &str, is_dir: bool, size: u64, secs: u64) -> Entry {
        Entry {
            name: name.into(),
            is_dir,
            size,
            modified: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn reads_a_real_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("b.txt"), b"12345").unwrap();
        std::fs::write(d.join("A.txt"), b"").unwrap();
        std::fs::write(d.join(XSS), b"x").unwrap();
        std::fs::write(d.join(".hidden"), b"h").unwrap();
        std::fs::create_dir(d.join("zdir")).unwrap();
        std::fs::create_dir(d.join("adir")).unwrap();
        std::fs::create_dir(d.join(".git")).unwrap();
        symlink("b.txt", d.join("link")).unwrap();
        symlink("nowhere", d.join("dangling")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            d.join("fifo"),
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        let dir = std::fs::File::open(d).unwrap();
        let names = |v: &[Entry]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();

        // Links are shown as `keep` says: here, followed within the directory.
        let mut keep = |name: &str, kind: Kind, st: rustix::fs::Stat| match kind {
            Kind::Link => rustix::fs::statat(&dir, name, AtFlags::empty()).ok(),
            _ => Some(st),
        };
        let read_entries = |dir: &std::fs::File, hidden: bool| {
            let mut keep = |name: &str, kind: Kind, st: rustix::fs::Stat| match kind {
                Kind::Link => rustix::fs::statat(dir, name, AtFlags::empty()).ok(),
                _ => Some(st),
            };
            read_entries_with(dir, hidden, MAX_LISTING, &mut keep)
        };
        let entries = read_entries_with(&dir, false, MAX_LISTING, &mut keep).unwrap();
        assert_eq!(
            names(&entries),
            ["adir", "zdir", XSS, "A.txt", "b.txt", "link"]
        );
        // Links left out by `keep` are not listed; the limit counts every entry.
        let no_links = read_entries_with(&dir, false, MAX_LISTING, &mut |_, k, st| {
            (k != Kind::Link).then_some(st)
        })
        .unwrap();
        assert_eq!(names(&no_links), ["adir", "zdir", XSS, "A.txt", "b.txt"]);
        assert!(matches!(
            read_entries_with(&dir, false, 5, &mut |_, _, st| Some(st)),
            Err(ListError::TooLarge)
        ));
        assert_eq!(count_entries(&dir, 100).unwrap(), 10);
        assert!(matches!(count_entries(&dir, 9), Err(ListError::TooLarge)));
        let b = entries.iter().find(|e| e.name == "b.txt").unwrap();
        assert_eq!((b.is_dir, b.size), (false, 5));
        let link = entries.iter().find(|e| e.name == "link").unwrap();
        assert_eq!(link.size, 5);
        assert!(entries[0].is_dir && entries[1].is_dir && !entries[2].is_dir);
        let age = SystemTime::now().duration_since(b.modified).unwrap();
        assert!(age < Duration::from_secs(3600));

        // Reading twice works (the fd's offset isn't consumed).
        assert_eq!(read_entries(&dir, false).unwrap(), entries);

        let all = read_entries(&dir, true).unwrap();
        assert_eq!(
            names(&all),
            [
                ".git", "adir", "zdir", ".hidden", XSS, "A.txt", "b.txt", "link"
            ]
        );
    }

    #[test]
    fn html_escapes_everything() {
        let entries = [
            entry("sub dir", true, 0, 0),
            entry(XSS, false, 1, 0),
            entry("q?#%&\"'.txt", false, 1536, 86_400 * 365),
            entry("café.txt", false, 5 * 1024 * 1024 * 1024, 1_700_000_000),
        ];
        let page = html(
            &["a <b>&\"'".to_string()],
            &entries,
            Order::default(),
            false,
        );
        assert!(page.starts_with("<!DOCTYPE html>\n<html"));
        assert!(page.trim_end().ends_with("</html>"));
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>"));
        assert!(page.contains("<title>Index of /a &lt;b&gt;&amp;&quot;&#39;/</title>"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;.txt</a>"));
        assert!(page.contains("href=\"%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt\""));
        assert!(page.contains("href=\"sub%20dir/\">sub dir/</a>"));
        assert!(page.contains("href=\"q%3F%23%25%26%22%27.txt\">q?#%&amp;&quot;&#39;.txt</a>"));
        assert!(page.contains("href=\"caf%C3%A9.txt\">café.txt</a>"));
        assert!(page.contains("title=\"1536 bytes\" data-bytes=\"1536\">1.5 KiB</td>"));
        assert!(page.contains(">5.0 GiB</td>"));
        assert!(page.contains(">1 B</td>"));
        assert!(page.contains("<td class=\"date\">2023-11-14 22:13:20</td>"));
        assert!(page.contains("<td class=\"date\">1971-01-01 00:00:00</td>"));
        assert!(page.contains("<a href=\"../\">../</a>"));
        // Breadcrumbs: the root, then the directory (escaped).
        assert!(
            page.contains("<a href=\"../\">/</a><a href=\"./\">a &lt;b&gt;&amp;&quot;&#39;</a>/")
        );
        // Footer: counts and the exact total.
        assert!(page.contains("1 directory, 3 files"), "{page}");
        assert!(page.contains(&format!(
            "title=\"{} bytes\"",
            1 + 1536 + 5 * 1024 * 1024 * 1024u64
        )));
        // Sort links; name is current (ascending), so its link flips to descending.
        assert!(page.contains("href=\"?sort=name&amp;order=desc\">Name \u{2191}</a>"));
        assert!(page.contains("href=\"?sort=size&amp;order=desc\">Size</a>"));
        // Every attribute value is quoted and every tag balanced enough: count rows.
        assert_eq!(page.matches("<tr>").count(), 1 + 1 + entries.len());
    }

    #[test]
    fn html_root_has_no_parent_link() {
        let page = html(&[], &[entry("a", false, 0, 0)], Order::default(), true);
        assert!(!page.contains("../"));
        assert!(page.contains("<title>Index of /</title>"));
    }

    #[test]
    fn upload_controls_only_when_asked_and_dav_ones_only_with_webdav() {
        let e = [entry("a", false, 0, 0)];
        let off = html(&[], &e, Order::default(), false);
        assert!(!off.contains("id=\"zu\"") && !off.contains("<script"));
        let files = html_with(&[], &e, Order::default(), false, UploadUi::Files);
        assert!(files.contains("data-webdav=\"0\""));
        assert!(files.contains("<script src=\"?asset=upload.js\" defer></script>"));
        // The table is whole before the controls, and the footer after them.
        let (table, rest) = files.split_once("</table>").unwrap();
        assert!(table.contains("<tbody>") && rest.contains("<section id=\"zu\""));
        assert!(rest.find("<footer>") > rest.find("</section>"));
        let dav = html_with(&[], &e, Order::default(), false, UploadUi::Dav);
        assert!(dav.contains("data-webdav=\"1\"") && dav.contains("files and folders"));
        // The script shows the WebDAV controls only when the page says so.
        assert!(UPLOAD_JS.contains("if (!dav) return;"));
        assert!(UPLOAD_JS.contains("'MKCOL'") && UPLOAD_JS.contains("'DELETE'"));
    }

    #[test]
    fn json_escaping() {
        let entries = [
            entry("d", true, 0, 5),
            entry("a\"b\\c\n\u{1}\u{1f}é<", false, 42, 1_700_000_000),
        ];
        assert_eq!(
            json(&entries),
            "[{\"name\":\"d\",\"type\":\"dir\",\"size\":0,\"modified\":5},\
             {\"name\":\"a\\\"b\\\\c\\u000a\\u0001\\u001fé<\",\"type\":\"file\",\"size\":42,\"modified\":1700000000}]"
        );
        assert_eq!(json(&[]), "[]");
        let pre = Entry {
            modified: UNIX_EPOCH - Duration::from_secs(10),
            ..entry("p", false, 0, 0)
        };
        assert!(json(&[pre]).contains("\"modified\":-10"));
    }

    /// The listing escaped C0 and DEL only, the access log every control character:
    /// now one escaper. A C1 character (U+0085, which some terminals obey) in a name
    /// is written as `\u0085`, not raw.
    #[test]
    fn json_names_escape_c1_controls_like_the_access_log() {
        let out = json(&[entry("a\u{85}b\u{9b}", false, 1, 1)]);
        assert!(out.contains("\"a\\u0085b\\u009b\""), "{out}");
    }

    #[test]
    fn sizes_and_dates() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(10 * 1024), "10 KiB");
        assert_eq!(human_size(u64::MAX), "16 EiB");
        assert_eq!(iso_utc(UNIX_EPOCH), "1970-01-01 00:00:00");
        assert_eq!(
            iso_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00:00"
        );
        assert_eq!(
            iso_utc(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31 23:59:59"
        );
    }

    #[test]
    fn sorting() {
        let mut v = vec![
            entry("b", false, 0, 0),
            entry("z", true, 0, 0),
            entry("a", false, 0, 0),
            entry("c", true, 0, 0),
        ];
        sort(&mut v, Order::default());
        let names: Vec<&str> = v.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["c", "z", "a", "b"]);
    }

    #[test]
    fn natural_order_and_sort_keys() {
        let mut v = vec![
            entry("file10.txt", false, 5, 3),
            entry("File2.txt", false, 50, 1),
            entry("file1.txt", false, 500, 2),
            entry("dir", true, 0, 0),
            entry("file02.txt", false, 1, 4),
        ];
        let names = |v: &[Entry]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        sort(&mut v, Order::from_query("sort=name"));
        assert_eq!(
            names(&v),
            ["dir", "file1.txt", "File2.txt", "file02.txt", "file10.txt"]
        );
        sort(&mut v, Order::from_query("sort=size&order=desc"));
        assert_eq!(
            names(&v),
            ["dir", "file1.txt", "File2.txt", "file10.txt", "file02.txt"]
        );
        sort(&mut v, Order::from_query("order=asc&sort=modified&x=1"));
        assert_eq!(
            names(&v),
            ["dir", "File2.txt", "file1.txt", "file10.txt", "file02.txt"]
        );
        assert_eq!(Order::from_query("sort=bogus&order=up"), Order::default());
        use std::cmp::Ordering::*;
        assert_eq!(natural_cmp("a2", "a10"), Less);
        assert_eq!(natural_cmp("a10", "a10"), Equal);
        assert_eq!(natural_cmp("a", "a1"), Less);
        assert_eq!(
            natural_cmp("x99999999999999999999999", "x100000000000000000000000"),
            Less
        );
    }
}
