//! Directory listings: HTML (every name escaped) and JSON, sorted.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
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

/// Reads the entries of an open directory, skipping dotfiles unless `hidden`, sorted
/// (directories first, then by name).
///
/// Entries are stat'ed following symlinks; only regular files and directories are
/// listed (dangling links, FIFOs, sockets and devices are left out, as they are never
/// served), and so are names that aren't UTF-8 (request paths must decode to UTF-8,
/// so such files can't be requested). `dir` must be opened for reading (not O_PATH);
/// its file offset is not touched.
pub fn read_entries(dir: &std::fs::File, hidden: bool) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for item in rustix::fs::Dir::read_from(dir)? {
        let item = item?;
        let Ok(name) = item.file_name().to_str() else {
            continue;
        };
        if name == "." || name == ".." || (!hidden && name.starts_with('.')) {
            continue;
        }
        let Ok(st) = rustix::fs::statat(dir, item.file_name(), AtFlags::empty()) else {
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
    sort(&mut out);
    Ok(out)
}

/// Directories first, then by name (bytewise).
fn sort(entries: &mut [Entry]) {
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
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
fn iso_utc(t: SystemTime) -> String {
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

/// An HTML page listing `entries` for the URL path `url_path` (decoded; escaped here).
///
/// Links are relative (`name` or `name/`), each segment percent-encoded, so the page
/// must be served at a URL ending in `/`. A `../` link is added unless `url_path` is
/// `/`. Sizes are human-readable with the exact byte count in a `title`; dates are UTC.
pub fn html(url_path: &str, entries: &[Entry]) -> String {
    let mut out = String::with_capacity(1024 + entries.len() * 160);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>Index of ");
    push_html(&mut out, url_path);
    out.push_str("</title>\n<style>\n");
    out.push_str(
        "body{font-family:system-ui,sans-serif;margin:2em}\
         table{border-collapse:collapse}\
         th,td{padding:.2em 1em;text-align:left}\
         td.size{text-align:right;font-variant-numeric:tabular-nums}\
         tr:nth-child(even){background:#f4f4f4}\n",
    );
    out.push_str("</style>\n</head>\n<body>\n<h1>Index of ");
    push_html(&mut out, url_path);
    out.push_str("</h1>\n<table>\n<thead><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr></thead>\n<tbody>\n");
    if url_path != "/" && !url_path.is_empty() {
        out.push_str(
            "<tr><td><a href=\"../\">../</a></td><td class=\"size\">-</td><td></td></tr>\n",
        );
    }
    for e in entries {
        let slash = if e.is_dir { "/" } else { "" };
        let _ = write!(
            out,
            "<tr><td><a href=\"{}{slash}\">",
            utf8_percent_encode(&e.name, SEGMENT)
        );
        push_html(&mut out, &e.name);
        out.push_str(slash);
        out.push_str("</a></td>");
        if e.is_dir {
            out.push_str("<td class=\"size\">-</td>");
        } else {
            let _ = write!(
                out,
                "<td class=\"size\" title=\"{} bytes\" data-bytes=\"{}\">{}</td>",
                e.size,
                e.size,
                human_size(e.size)
            );
        }
        let _ = writeln!(out, "<td>{}</td></tr>", iso_utc(e.modified));
    }
    out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    out
}

/// Appends `s` as a JSON string literal (quotes, `\\`, and control characters as
/// `\u00XX`).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
        push_json_str(&mut out, &e.name);
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

        let entries = read_entries(&dir, false).unwrap();
        assert_eq!(
            names(&entries),
            ["adir", "zdir", XSS, "A.txt", "b.txt", "link"]
        );
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
        let page = html("/a <b>&\"'/", &entries);
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
        assert!(page.contains("<td>2023-11-14 22:13:20</td>"));
        assert!(page.contains("<td>1971-01-01 00:00:00</td>"));
        assert!(page.contains("<a href=\"../\">../</a>"));
        // Every attribute value is quoted and every tag balanced enough: count rows.
        assert_eq!(page.matches("<tr>").count(), 1 + 1 + entries.len());
    }

    #[test]
    fn html_root_has_no_parent_link() {
        let page = html("/", &[entry("a", false, 0, 0)]);
        assert!(!page.contains("../"));
        assert!(page.contains("<title>Index of /</title>"));
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
        sort(&mut v);
        let names: Vec<&str> = v.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["c", "z", "a", "b"]);
    }
}
