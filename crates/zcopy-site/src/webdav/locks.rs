//! LOCK and UNLOCK (RFC 4918 §6, §9.10, §9.11), and the `If` header (§10.4).
//!
//! Write locks, exclusive or shared, depth 0 or infinity, kept in memory by this
//! server process (at most [`MAX_LOCKS`]; beyond, 503) with a timeout each (at most
//! [`MAX_TIMEOUT`]). A write to a locked resource, to a member of a locked
//! collection or, for DELETE, MOVE and an overwriting COPY, to anything locked
//! beneath it, needs the lock's token in its `If` header (else 423); an `If`
//! header that does not hold is 412.

use crate::head::Out;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::xml::{self, LockInfo};
use super::{Ctx, esc, status, xml_response};
use crate::path::CleanPath;
use crate::plan::Response;
use crate::request::Request;

/// Most locks held at once (all clients).
pub const MAX_LOCKS: usize = 4096;
/// Longest lock timeout granted (`Infinite` gets this).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Timeout when the client names none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug)]
struct Lock {
    /// The root it was taken under ([`Ctx::root_id`]).
    site: (u64, u64),
    token: String,
    /// The locked resource (decoded, from the root, no leading `/`).
    root: String,
    infinite: bool,
    exclusive: bool,
    owner: Option<xml::Value>,
    expires: Instant,
}

impl Lock {
    /// The lock applies to `rel`.
    fn covers(&self, rel: &str) -> bool {
        self.root == rel || (self.infinite && is_below(rel, &self.root))
    }
}

static LOCKS: Mutex<Vec<Lock>> = Mutex::new(Vec::new());

/// The locks of every site in this process (expired ones dropped).
fn all_locks() -> std::sync::MutexGuard<'static, Vec<Lock>> {
    let mut l = crate::lock(&LOCKS);
    let now = Instant::now();
    l.retain(|k| k.expires > now);
    l
}

/// The locks of `ctx`'s site, and the guard they live under.
struct SiteLocks {
    guard: std::sync::MutexGuard<'static, Vec<Lock>>,
    site: (u64, u64),
}

impl SiteLocks {
    fn iter(&self) -> impl Iterator<Item = &Lock> {
        self.guard.iter().filter(move |k| k.site == self.site)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Lock> {
        let site = self.site;
        self.guard.iter_mut().filter(move |k| k.site == site)
    }

    fn retain(&mut self, mut keep: impl FnMut(&Lock) -> bool) {
        let site = self.site;
        self.guard.retain(|k| k.site != site || keep(k));
    }
}

fn locks(ctx: &Ctx) -> SiteLocks {
    SiteLocks {
        guard: all_locks(),
        site: ctx.root_id,
    }
}

/// `rel` is strictly beneath `dir`.
pub(crate) fn is_below(rel: &str, dir: &str) -> bool {
    if dir.is_empty() {
        return !rel.is_empty();
    }
    rel.len() > dir.len() && rel.starts_with(dir) && rel.as_bytes()[dir.len()] == b'/'
}

/// The collection `rel` is a member of (`""` for the root's members and the root).
pub(crate) fn parent_rel(rel: &str) -> String {
    rel.rsplit_once('/')
        .map_or(String::new(), |(p, _)| p.to_owned())
}

/// Which locks a write must hold the tokens of.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope {
    /// Locks that apply to the path.
    Exact,
    /// Those, and every lock beneath it.
    Tree,
}

/// Evaluates the request's `If` header (412 when it does not hold) and checks that
/// it holds the token of every lock `scopes` name (423 when not). `rel` is the
/// request's resource.
pub(crate) fn check(
    ctx: &Ctx,
    if_header: Option<&str>,
    rel: &str,
    scopes: &[(&str, Scope)],
) -> Result<(), u16> {
    let l = locks(ctx);
    let lists = match if_header {
        Some(h) => Some(parse_if(h).ok_or(400u16)?),
        None => None,
    };
    if let Some(lists) = &lists {
        let holds = lists.iter().any(|(tag, conds)| {
            let res = match tag {
                None => Some(rel.to_owned()),
                Some(url) => super::url_path(ctx, url).ok().map(|c| c.segments.join("/")),
            };
            let Some(res) = res else {
                return false;
            };
            conds.iter().all(|c| {
                let v = match &c.what {
                    What::Token(t) => l.iter().any(|k| &k.token == t && k.covers(&res)),
                    What::Etag(e) => etag_of(ctx, &res).is_some_and(|cur| same_etag(&cur, e)),
                };
                v != c.not
            })
        });
        if !holds {
            return Err(412);
        }
    }
    let submitted = |t: &str| {
        lists.as_ref().is_some_and(|ls| {
            ls.iter()
                .flat_map(|(_, c)| c)
                .any(|c| matches!(&c.what, What::Token(x) if x == t))
        })
    };
    for (path, scope) in scopes {
        for k in l.iter() {
            let applies =
                k.covers(path) || (matches!(scope, Scope::Tree) && is_below(&k.root, path));
            if applies && !submitted(&k.token) {
                return Err(423);
            }
        }
    }
    Ok(())
}

/// Drops the locks on `rel` and beneath it (it was deleted or moved away).
pub(crate) fn forget(ctx: &Ctx, rel: &str) {
    locks(ctx).retain(|k| k.root != rel && !is_below(&k.root, rel));
}

fn same_etag(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.trim().trim_start_matches("W/").to_owned();
    strip(a) == strip(b)
}

/// The current strong ETag of `rel` (as GET sends it), if it exists.
pub(crate) fn etag_of(ctx: &Ctx, rel: &str) -> Option<String> {
    let st = if rel.is_empty() {
        rustix::fs::fstat(&ctx.root).ok()?
    } else {
        rustix::fs::statat(&ctx.root, rel, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?
    };
    Some(crate::cache::validators(&st).etag)
}

#[derive(Debug)]
enum What {
    Token(String),
    Etag(String),
}

#[derive(Debug)]
struct Cond {
    not: bool,
    what: What,
}

type Lists = Vec<(Option<String>, Vec<Cond>)>;

/// Parses an `If` header: `[<tag>] (cond...) ...`; `None` when malformed.
fn parse_if(h: &str) -> Option<Lists> {
    let mut out = Vec::new();
    let mut tag: Option<String> = None;
    let mut s = h.trim_start();
    while !s.is_empty() {
        if let Some(rest) = s.strip_prefix('<') {
            let end = rest.find('>')?;
            tag = Some(rest[..end].to_owned());
            s = rest[end + 1..].trim_start();
            continue;
        }
        let rest = s.strip_prefix('(')?;
        let end = rest.find(')')?;
        let mut inner = rest[..end].trim();
        let mut conds = Vec::new();
        while !inner.is_empty() {
            let mut not = false;
            if inner.len() >= 3 && inner[..3].eq_ignore_ascii_case("not") {
                not = true;
                inner = inner[3..].trim_start();
            }
            if let Some(r) = inner.strip_prefix('<') {
                let e = r.find('>')?;
                conds.push(Cond {
                    not,
                    what: What::Token(r[..e].trim().to_owned()),
                });
                inner = r[e + 1..].trim_start();
            } else if let Some(r) = inner.strip_prefix('[') {
                let e = r.find(']')?;
                conds.push(Cond {
                    not,
                    what: What::Etag(r[..e].trim().to_owned()),
                });
                inner = r[e + 1..].trim_start();
            } else {
                return None;
            }
        }
        if conds.is_empty() {
            return None;
        }
        out.push((tag.clone(), conds));
        s = rest[end + 1..].trim_start();
    }
    if out.is_empty() {
        return None;
    }
    Some(out)
}

/// A new lock token (`opaquelocktoken:` and a random UUID).
fn new_token() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !filled {
        // Unique within the process at least.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        b[..8].copy_from_slice(&t.to_le_bytes());
        b[8..].copy_from_slice(&(n ^ u64::from(std::process::id())).to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "opaquelocktoken:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The `Timeout` a client asks for (RFC 4918 §10.7), capped.
fn timeout(h: Option<&str>) -> Duration {
    let Some(h) = h else {
        return DEFAULT_TIMEOUT;
    };
    for t in h.split(',').map(str::trim) {
        if t.eq_ignore_ascii_case("infinite") {
            return MAX_TIMEOUT;
        }
        if let Some(n) = t
            .strip_prefix("Second-")
            .or_else(|| t.strip_prefix("second-"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            return Duration::from_secs(n.clamp(1, MAX_TIMEOUT.as_secs()));
        }
    }
    DEFAULT_TIMEOUT
}

/// The `<D:activelock>` of `k`.
fn activelock(k: &Lock, now: Instant) -> String {
    let left = k.expires.saturating_duration_since(now).as_secs().max(1);
    let owner = match &k.owner {
        Some(v) => format!("<D:owner{}>{}</D:owner>", v.decls, v.inner),
        None => String::new(),
    };
    format!(
        "<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope><D:{}/></D:lockscope>\
         <D:depth>{}</D:depth>{owner}<D:timeout>Second-{left}</D:timeout>\
         <D:locktoken><D:href>{}</D:href></D:locktoken>\
         <D:lockroot><D:href>{}</D:href></D:lockroot></D:activelock>",
        if k.exclusive { "exclusive" } else { "shared" },
        if k.infinite { "infinity" } else { "0" },
        esc(&k.token),
        esc(&super::href(
            &k.root
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            false
        )),
    )
}

/// The `<D:lockdiscovery>` content for `rel`: the locks that apply to it.
pub(crate) fn discovery(ctx: &Ctx, rel: &str) -> String {
    let now = Instant::now();
    locks(ctx)
        .iter()
        .filter(|k| k.covers(rel))
        .map(|k| activelock(k, now))
        .collect()
}

/// A LOCK, until its body is in.
#[derive(Debug)]
pub(crate) struct LockRequest {
    clean: CleanPath,
    rel: String,
    depth: Option<String>,
    if_: Option<String>,
    timeout: Duration,
}

impl LockRequest {
    pub(crate) fn of(req: &Request<'_>, clean: &CleanPath) -> LockRequest {
        LockRequest {
            clean: clean.clone(),
            rel: clean.segments.join("/"),
            depth: req.dav.depth.map(str::to_owned),
            if_: req.dav.if_.map(str::to_owned),
            timeout: timeout(req.dav.timeout),
        }
    }

    /// Creates the lock (body: a lockinfo) or refreshes one (no body).
    pub(crate) fn answer(self, ctx: &Ctx, body: &[u8], out: &mut Out, close: bool) -> Response {
        let now = Instant::now();
        if body.iter().all(u8::is_ascii_whitespace) {
            return self.refresh(ctx, out, close, now);
        }
        let info: LockInfo = match xml::lockinfo(body) {
            Ok(i) => i,
            Err(s) => return status(out, s, close),
        };
        let infinite = match self.depth.as_deref().map(str::trim) {
            None => true,
            Some(d) if d.eq_ignore_ascii_case("infinity") => true,
            Some("0") => false,
            Some(_) => return status(out, 400, close),
        };
        let rel = &self.rel;
        // Creating the resource (a lock on an unmapped URL makes an empty file)
        // changes its collection: that collection's locks apply too.
        let parent = parent_rel(rel);
        let scopes: &[(&str, Scope)] = &[(rel, Scope::Exact), (&parent, Scope::Exact)];
        // Conflicts with locks held by others are 423 whatever the If header says.
        {
            let l = locks(ctx);
            let conflict = l.iter().any(|k| {
                let overlaps = k.covers(rel) || (infinite && is_below(&k.root, rel));
                overlaps && (k.exclusive || info.exclusive)
            });
            if conflict {
                drop(l);
                return super::Answer::Error(423, "no-conflicting-lock").answer(out, close);
            }
            if l.guard.len() >= MAX_LOCKS {
                drop(l);
                return status_with_retry(out, close);
            }
        }
        let exists = super::ops::exists(ctx, &self.clean);
        let created = match exists {
            Ok(true) => false,
            Ok(false) => {
                if let Err(s) = check(ctx, self.if_.as_deref(), rel, &scopes[1..]) {
                    return status(out, s, close);
                }
                match super::ops::create_empty(ctx, &self.clean) {
                    Ok(()) => true,
                    Err(s) => return status(out, s, close),
                }
            }
            Err(s) => return status(out, s, close),
        };
        let lock = Lock {
            site: ctx.root_id,
            token: new_token(),
            root: rel.clone(),
            infinite,
            exclusive: info.exclusive,
            owner: info.owner,
            expires: now + self.timeout,
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:prop xmlns:D=\"DAV:\"><D:lockdiscovery>{}</D:lockdiscovery></D:prop>\n",
            activelock(&lock, now)
        );
        let token = format!("<{}>", lock.token);
        all_locks().push(lock);
        let code = if created { 201 } else { 200 };
        xml_response(out, code, &body, close, &[("Lock-Token", &token)])
    }

    /// A LOCK without a body: refreshes the lock the If header names.
    fn refresh(self, ctx: &Ctx, out: &mut Out, close: bool, now: Instant) -> Response {
        let Some(h) = self.if_.as_deref() else {
            return status(out, 400, close);
        };
        let Some(lists) = parse_if(h) else {
            return status(out, 400, close);
        };
        let mut l = locks(ctx);
        let tokens: Vec<&str> = lists
            .iter()
            .flat_map(|(_, c)| c)
            .filter_map(|c| match &c.what {
                What::Token(t) if !c.not => Some(t.as_str()),
                _ => None,
            })
            .collect();
        let Some(k) = l
            .iter_mut()
            .find(|k| tokens.contains(&k.token.as_str()) && k.covers(&self.rel))
        else {
            drop(l);
            return status(out, 412, close);
        };
        k.expires = now + self.timeout;
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:prop xmlns:D=\"DAV:\"><D:lockdiscovery>{}</D:lockdiscovery></D:prop>\n",
            activelock(k, now)
        );
        drop(l);
        xml_response(out, 200, &body, close, &[])
    }
}

fn status_with_retry(out: &mut Out, close: bool) -> Response {
    super::status_with(out, 503, close, &[("Retry-After", "60")])
}

/// UNLOCK: removes the lock whose token the `Lock-Token` header names, if it
/// applies to the request's resource (204), else 409.
pub(crate) fn unlock(
    ctx: &Ctx,
    req: &Request<'_>,
    rel: &str,
    out: &mut Out,
    close: bool,
) -> Response {
    let Some(token) = req
        .dav
        .lock_token
        .map(str::trim)
        .and_then(|t| t.strip_prefix('<'))
        .and_then(|t| t.strip_suffix('>'))
    else {
        return status(out, 400, close);
    };
    let mut l = locks(ctx);
    let before = l.guard.len();
    l.retain(|k| !(k.token == token && k.covers(rel)));
    let removed = l.guard.len() < before;
    drop(l);
    if removed {
        status(out, 204, close)
    } else {
        super::Answer::Error(409, "lock-token-matches-request-uri").answer(out, close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_headers_parse() {
        let l = parse_if("(<opaquelocktoken:a-b> [\"e1\"]) (Not <DAV:no-lock>)").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].1.len(), 2);
        assert!(l[1].1[0].not);
        let l = parse_if("<http://h/x> (<urn:uuid:1>)").unwrap();
        assert_eq!(l[0].0.as_deref(), Some("http://h/x"));
        assert!(parse_if("garbage").is_none());
        assert!(parse_if("()").is_none());
    }

    #[test]
    fn timeouts_are_capped() {
        assert_eq!(timeout(Some("Second-10")), Duration::from_secs(10));
        assert_eq!(timeout(Some("Infinite, Second-4100000000")), MAX_TIMEOUT);
        assert_eq!(timeout(Some("Second-99999999999")), MAX_TIMEOUT);
        assert_eq!(timeout(None), DEFAULT_TIMEOUT);
    }

    #[test]
    fn below() {
        assert!(is_below("a/b", "a"));
        assert!(!is_below("ab", "a"));
        assert!(is_below("a", ""));
        assert!(!is_below("", ""));
        assert_eq!(parent_rel("a/b/c"), "a/b");
        assert_eq!(parent_rel("a"), "");
    }

    #[test]
    fn tokens_look_like_uuids() {
        let t = new_token();
        assert!(t.starts_with("opaquelocktoken:"));
        assert_eq!(t.len(), "opaquelocktoken:".len() + 36);
        assert_ne!(t, new_token());
    }
}
