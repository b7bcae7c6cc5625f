//! Precompressed sidecars: `NAME.br`, `NAME.zst`, `NAME.gz` served in place of `NAME`
//! when the client's Accept-Encoding allows it.
//!
//! Cost: which sidecars a path has (a bitmask) is learnt with one `openat2` (+ `fstat`
//! when it exists) per configured coding, and remembered in the worker's
//! [`crate::cache::FileCache`] for its TTL. Afterwards a request costs a map lookup,
//! plus one `openat2` + `fstat` of the chosen sidecar when the client accepts one that
//! exists: a hot file without sidecars costs no extra syscall. With `--precompressed
//! off` nothing here runs.

use std::fs::File;
use std::os::fd::BorrowedFd;

use crate::path::{self, Resolved, SymlinkPolicy};

/// A content coding we serve from a sidecar file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Brotli, `NAME.br`.
    Br,
    /// Zstandard, `NAME.zst`.
    Zstd,
    /// Gzip, `NAME.gz`.
    Gzip,
}

impl Encoding {
    /// The Content-Encoding token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// The sidecar file suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Br => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }

    /// This coding's bit in a sidecar bitmask.
    pub fn bit(self) -> u8 {
        match self {
            Encoding::Br => 1,
            Encoding::Zstd => 2,
            Encoding::Gzip => 4,
        }
    }

    /// Parses `br,zstd,gzip` (in preference order) or `off` (empty list).
    pub fn parse_list(s: &str) -> Result<Vec<Encoding>, String> {
        if s.trim() == "off" {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for t in s.split(',').map(str::trim) {
            let e = match t {
                "br" => Encoding::Br,
                "zstd" => Encoding::Zstd,
                "gzip" => Encoding::Gzip,
                _ => {
                    return Err(format!(
                        "unknown encoding '{t}' (known: br, zstd, gzip, off)"
                    ));
                }
            };
            if !out.contains(&e) {
                out.push(e);
            }
        }
        Ok(out)
    }
}

/// The quality (0–1000) `accept_encoding` gives to `coding`: the coding's own entry,
/// else `*`'s, else 0 (identity: 1000 unless refused). `None` if the field is malformed
/// (then only identity is sent).
fn quality(accept_encoding: &str, coding: &str) -> Option<u16> {
    let mut own = None;
    let mut star = None;
    for item in accept_encoding.split(',') {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() {
            continue;
        }
        let mut parts = item.split(';');
        let name = parts.next()?.trim_matches([' ', '\t']);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return None;
        }
        let mut q = 1000;
        for p in parts {
            let (k, v) = p.trim_matches([' ', '\t']).split_once('=')?;
            if k.trim().is_empty() {
                return None;
            }
            if k.trim().eq_ignore_ascii_case("q") {
                q = parse_q(v.trim())?;
            }
        }
        let is = |c: &str| {
            name.eq_ignore_ascii_case(c) || (c == "gzip" && name.eq_ignore_ascii_case("x-gzip"))
        };
        if is(coding) {
            own = Some(q);
        } else if name == "*" {
            star = Some(q);
        }
    }
    Some(
        own.or(star)
            .unwrap_or(if coding == "identity" { 1000 } else { 0 }),
    )
}

/// `0`, `0.5`, `1.000` → thousandths; anything else `None` (RFC 9110 §12.4.2).
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

/// The configured codings the client accepts, best first (by its q-value, then by
/// `configured` order). Empty when the field is absent or malformed.
pub fn acceptable(configured: &[Encoding], accept_encoding: Option<&str>) -> Vec<Encoding> {
    let Some(field) = accept_encoding else {
        return Vec::new();
    };
    let mut with_q: Vec<(u16, usize, Encoding)> = Vec::new();
    for (i, &e) in configured.iter().enumerate() {
        match quality(field, e.token()) {
            None => return Vec::new(),
            Some(0) => {}
            Some(q) => with_q.push((q, i, e)),
        }
    }
    with_q.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    with_q.into_iter().map(|(_, _, e)| e).collect()
}

/// A sidecar found for a file.
#[derive(Debug)]
pub struct Sidecar {
    /// Its coding.
    pub encoding: Encoding,
    /// The open sidecar file.
    pub file: File,
    /// Its fstat.
    pub stat: rustix::fs::Stat,
}

/// What the lookup found.
#[derive(Debug, Default)]
pub struct Found {
    /// The sidecar to serve, if an acceptable one exists.
    pub chosen: Option<Sidecar>,
    /// Some sidecar exists (acceptable or not): the response varies on Accept-Encoding.
    pub any: bool,
}

/// Opens the `e` sidecar of `rel` (a path beneath `dir`, no `..`, itself reached
/// without a symlink) for the file with fstat `original`. It counts when it is a
/// regular file reached without following any symlink (a sidecar that is a link is
/// never followed, whatever `--symlinks` says: it could lead to a hidden or guarded
/// file) and not older than the original.
pub fn open(
    dir: BorrowedFd<'_>,
    rel: &str,
    original: &rustix::fs::Stat,
    e: Encoding,
) -> Option<Sidecar> {
    let name = format!("{rel}{}", e.suffix());
    match path::open_at(dir, &name, SymlinkPolicy::Never) {
        Ok(Resolved::File(file, stat)) if !older(&stat, original) => Some(Sidecar {
            encoding: e,
            file,
            stat,
        }),
        _ => None,
    }
}

/// Which of `configured` have a sidecar of `rel` that counts (see [`open`]), as a
/// bitmask of [`Encoding::bit`].
pub fn present(
    dir: BorrowedFd<'_>,
    rel: &str,
    original: &rustix::fs::Stat,
    configured: &[Encoding],
) -> u8 {
    configured
        .iter()
        .filter(|&&e| open(dir, rel, original, e).is_some())
        .fold(0, |mask, e| mask | e.bit())
}

/// `a` was modified before `b`.
#[allow(clippy::unnecessary_cast)] // field types differ between architectures
fn older(a: &rustix::fs::Stat, b: &rustix::fs::Stat) -> bool {
    (a.st_mtime as i64, a.st_mtime_nsec as i64) < (b.st_mtime as i64, b.st_mtime_nsec as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    const ALL: [Encoding; 3] = [Br, Zstd, Gzip];

    #[test]
    fn accept_encoding_q_values() {
        let cases: [(Option<&str>, &[Encoding]); 14] = [
            (None, &[]),
            (Some(""), &[]),
            (Some("gzip"), &[Gzip]),
            (Some("gzip, deflate, br, zstd"), &[Br, Zstd, Gzip]),
            (Some("gzip;q=1.0, br;q=0.5"), &[Gzip, Br]),
            (Some("br;q=0, *"), &[Zstd, Gzip]),
            (Some("*"), &[Br, Zstd, Gzip]),
            (Some("*;q=0"), &[]),
            (Some("identity;q=0"), &[]),
            (Some("identity;q=0, gzip;q=0.001"), &[Gzip]),
            (Some("X-GZIP"), &[Gzip]),
            (Some("gzip;q=2"), &[]),
            (Some("gzip;q=abc, br"), &[]),
            (Some("gzip;q=0.1234"), &[]),
        ];
        for (field, want) in cases {
            assert_eq!(acceptable(&ALL, field), want, "{field:?}");
        }
        assert_eq!(acceptable(&[Gzip], Some("br, gzip")), [Gzip]);
        assert_eq!(acceptable(&[], Some("br")), []);
        for junk in [
            ";;;", "br;q", "br;=", "\u{7f}", "br;q=.5", "br;q=1.5", "a b",
        ] {
            assert_eq!(acceptable(&ALL, Some(junk)), [], "{junk:?}");
        }
    }

    #[test]
    fn parse_lists() {
        assert_eq!(Encoding::parse_list("br,zstd,gzip").unwrap(), ALL);
        assert_eq!(Encoding::parse_list("gzip, br, gzip").unwrap(), [Gzip, Br]);
        assert_eq!(Encoding::parse_list("off").unwrap(), []);
        assert!(Encoding::parse_list("deflate").is_err());
        assert!(Encoding::parse_list("").is_err());
    }
}
