//! Per-path rules: headers, caching, CORS, auth, listing, SPA fallback and error pages
//! chosen by a glob on the decoded request path. Command-line flags make one rule for
//! `**`; a config file can add more. Later rules override earlier ones field by field
//! (headers add up).
//!
//! Globs match names: the request path, and where a symlink inside the root led
//! (see [`crate::access`]), so a rule that guards `private/**` also guards `link/**`
//! when `link` points at `private`.

use std::sync::Arc;

use crate::auth::Users;

/// Which origins may read responses cross-origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cors {
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// Only these origins (echoed back, with `Vary: Origin`).
    List(Vec<String>),
}

impl Cors {
    /// Parses `*` or a comma-separated list of origins (`https://a.example`).
    pub fn parse(s: &str) -> Result<Cors, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(Cors::Any);
        }
        let list: Vec<String> = s
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        if list.is_empty() {
            return Err("--cors wants * or a list of origins".into());
        }
        for o in &list {
            if !(o.starts_with("http://") || o.starts_with("https://"))
                || o.bytes().any(|b| b <= b' ' || b == 0x7f || b == b',')
            {
                return Err(format!("not an origin: '{o}' (like https://example.com)"));
            }
        }
        Ok(Cors::List(list))
    }

    /// The Access-Control-Allow-Origin value for a request from `origin`, if allowed.
    pub fn allow<'a>(&'a self, origin: Option<&'a str>) -> Option<&'a str> {
        match self {
            Cors::Any => Some("*"),
            Cors::List(list) => {
                let o = origin?;
                list.iter().any(|l| l == o).then_some(o)
            }
        }
    }
}

/// A custom error page: the body sent instead of the short text one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPage {
    /// The status it replaces the body of.
    pub status: u16,
    /// Content-Type (from the file name).
    pub content_type: String,
    /// The page, read once at start.
    pub body: Arc<[u8]>,
}

/// One response header added verbatim, checked when it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Field name (an RFC 9110 token).
    pub name: String,
    /// Field value (visible ASCII, spaces and tabs; no CR, LF or NUL).
    pub value: String,
}

impl Header {
    /// Parses `Name: value`.
    pub fn parse(s: &str) -> Result<Header, String> {
        let (name, value) = s
            .split_once(':')
            .ok_or_else(|| format!("'{s}': want 'Name: value'"))?;
        let value = value.trim_matches([' ', '\t']);
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("'{name}' is not a header name"));
        }
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(format!("the value of {name} holds a control character"));
        }
        const OURS: [&str; 6] = [
            "content-length",
            "transfer-encoding",
            "connection",
            "content-range",
            "content-encoding",
            "date",
        ];
        if OURS.iter().any(|o| name.eq_ignore_ascii_case(o)) {
            return Err(format!(
                "{name} is set by the server and can't be overridden"
            ));
        }
        Ok(Header {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// Settings for the paths a glob matches.
#[derive(Clone, Debug, Default)]
pub struct Rule {
    /// Glob on the decoded path without its leading `/` (`*` within a segment,
    /// `**` across segments, `?` one character).
    pub glob: String,
    /// Headers added to every response.
    pub headers: Vec<Header>,
    /// Cache-Control for files and listings (listings default to `no-cache`).
    pub cache_control: Option<String>,
    /// Cross-origin access.
    pub cors: Option<Cors>,
    /// Basic auth users; a request without valid credentials gets 401.
    pub auth: Option<Arc<Users>>,
    /// Override of the server-wide listing setting (`SiteConfig::listing`).
    pub listing: Option<bool>,
    /// File (path from the root) served for missing extensionless paths that accept HTML.
    pub fallback: Option<String>,
    /// Bodies for error statuses.
    pub error_pages: Vec<ErrorPage>,
    /// Override of the server-wide `compress` setting.
    pub compress: Option<bool>,
    /// Override of the server-wide upload setting (`SiteConfig::upload`).
    pub upload: Option<bool>,
    /// Override of the server-wide WebDAV setting (`SiteConfig::webdav`).
    pub webdav: Option<bool>,
    /// The operator's word that files here are replaced by rename, never changed in
    /// place: their bodies may leave by reference to local peers too (under a read
    /// lease kept as a tripwire). A later rule's `false` undoes an earlier `true`.
    pub immutable: Option<bool>,
}

/// The settings that apply to one request: every matching rule merged.
#[derive(Debug, Default)]
pub struct Effective<'a> {
    /// Headers from every matching rule, in order.
    pub headers: Vec<&'a Header>,
    /// Cache-Control.
    pub cache_control: Option<&'a str>,
    /// CORS.
    pub cors: Option<&'a Cors>,
    /// Auth.
    pub auth: Option<&'a Users>,
    /// Listing on/off override.
    pub listing: Option<bool>,
    /// SPA fallback.
    pub fallback: Option<&'a str>,
    /// Compression on/off override.
    pub compress: Option<bool>,
    /// Error pages (later rules first).
    pub error_pages: Vec<&'a ErrorPage>,
    /// Upload on/off override.
    pub upload: Option<bool>,
    /// WebDAV on/off override.
    pub webdav: Option<bool>,
    /// Files here are trusted never to change in place.
    pub immutable: Option<bool>,
}

/// The settings of a request no rule matches (none at all: no work, no copy).
pub static NO_RULES: Effective<'static> = Effective {
    headers: Vec::new(),
    cache_control: None,
    cors: None,
    auth: None,
    listing: None,
    fallback: None,
    compress: None,
    error_pages: Vec::new(),
    upload: None,
    webdav: None,
    immutable: None,
};

impl<'a> Effective<'a> {
    /// Merges the rules whose glob matches `path` (decoded, no leading `/`).
    /// No rules: no work and no allocation.
    pub fn of(rules: &'a [Rule], path: &str) -> Effective<'a> {
        let mut e = Effective::default();
        for r in rules.iter().filter(|r| glob_match(&r.glob, path)) {
            e.headers.extend(r.headers.iter());
            if let Some(c) = &r.cache_control {
                e.cache_control = Some(c);
            }
            if let Some(c) = &r.cors {
                e.cors = Some(c);
            }
            if let Some(a) = &r.auth {
                e.auth = Some(a);
            }
            if r.listing.is_some() {
                e.listing = r.listing;
            }
            if r.compress.is_some() {
                e.compress = r.compress;
            }
            if r.upload.is_some() {
                e.upload = r.upload;
            }
            if r.webdav.is_some() {
                e.webdav = r.webdav;
            }
            if r.immutable.is_some() {
                e.immutable = r.immutable;
            }
            if let Some(f) = &r.fallback {
                e.fallback = Some(f);
            }
            for p in &r.error_pages {
                e.error_pages.insert(0, p);
            }
        }
        e
    }

    /// The error page for `status`, if one is configured.
    pub fn error_page(&self, status: u16) -> Option<&'a ErrorPage> {
        self.error_pages
            .iter()
            .copied()
            .find(|p| p.status == status)
    }
}

/// Whether `path` matches `glob`: `**` matches any run of characters (also `/`),
/// `*` any run without `/`, `?` one character other than `/`. An empty glob or `**`
/// matches everything; `dir/**` also matches `dir` itself.
pub fn glob_match(glob: &str, path: &str) -> bool {
    if glob.is_empty() || glob == "**" {
        return true;
    }
    if let Some(prefix) = glob.strip_suffix("/**")
        && prefix == path
    {
        return true;
    }
    let (g, p): (Vec<char>, Vec<char>) = (glob.chars().collect(), path.chars().collect());
    matches_from(&g, &p)
}

fn matches_from(g: &[char], p: &[char]) -> bool {
    match g.first() {
        None => p.is_empty(),
        Some('*') if g.get(1) == Some(&'*') => {
            let rest = &g[2..];
            // `**/` may also match nothing at all (`a/**/b` matches `a/b`).
            if rest.first() == Some(&'/') && matches_from(&rest[1..], p) {
                return true;
            }
            (0..=p.len()).any(|i| matches_from(rest, &p[i..]))
        }
        Some('*') => {
            let rest = &g[1..];
            for i in 0..=p.len() {
                if matches_from(rest, &p[i..]) {
                    return true;
                }
                if p.get(i) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some('?') => p.first().is_some_and(|&c| c != '/') && matches_from(&g[1..], &p[1..]),
        Some(&c) => p.first() == Some(&c) && matches_from(&g[1..], &p[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let yes = [
            ("**", "a/b/c"),
            ("", "x"),
            ("*.js", "app.js"),
            ("assets/**", "assets/a/b.css"),
            ("assets/**", "assets"),
            ("**/*.html", "a/b/index.html"),
            ("**/*.html", "index.html"),
            ("a/**/b", "a/b"),
            ("a/**/b", "a/x/y/b"),
            ("file?.txt", "file1.txt"),
        ];
        for (g, p) in yes {
            assert!(glob_match(g, p), "{g} should match {p}");
        }
        let no = [
            ("*.js", "dir/app.js"),
            ("assets/**", "assetsx/a"),
            ("file?.txt", "file/.txt"),
            ("a/*", "a/b/c"),
            ("*.js", "app.json"),
        ];
        for (g, p) in no {
            assert!(!glob_match(g, p), "{g} should not match {p}");
        }
    }

    #[test]
    fn merging_later_rules_win_and_headers_add_up() {
        let h = |s: &str| Header::parse(s).unwrap();
        let rules = vec![
            Rule {
                glob: "**".into(),
                headers: vec![h("X-A: 1")],
                cache_control: Some("no-cache".into()),
                ..Rule::default()
            },
            Rule {
                glob: "static/**".into(),
                headers: vec![h("X-B: 2")],
                cache_control: Some("max-age=3600".into()),
                listing: Some(false),
                ..Rule::default()
            },
        ];
        let e = Effective::of(&rules, "static/app.js");
        assert_eq!(e.headers.len(), 2);
        assert_eq!(e.cache_control, Some("max-age=3600"));
        assert_eq!(e.listing, Some(false));
        let e = Effective::of(&rules, "index.html");
        assert_eq!(e.headers.len(), 1);
        assert_eq!(e.cache_control, Some("no-cache"));
        assert_eq!(e.listing, None);
    }

    #[test]
    fn header_and_cors_parsing() {
        assert_eq!(
            Header::parse("X-Frame-Options: DENY").unwrap().value,
            "DENY"
        );
        assert!(Header::parse("X-A:").is_ok());
        for bad in [
            "NoColon",
            ": v",
            "Bad Name: v",
            "X-A: a\r\nSet-Cookie: x",
            "X-A: a\nb",
            "X-A: \0",
            "Content-Length: 5",
        ] {
            assert!(Header::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Cors::parse("*").unwrap(), Cors::Any);
        let list = Cors::parse("https://a.example, http://b.example:8080/").unwrap();
        assert_eq!(
            list.allow(Some("http://b.example:8080")),
            Some("http://b.example:8080")
        );
        assert_eq!(list.allow(Some("https://evil.example")), None);
        assert_eq!(list.allow(None), None);
        assert!(Cors::parse("").is_err());
        assert!(Cors::parse("a.example").is_err());
    }
}
