//! PROPFIND and PROPPATCH (RFC 4918 §9.1, §9.2).
//!
//! Live properties come from the fstat (the same strong ETag and Last-Modified as
//! GET); dead properties are kept in user xattrs (`user.dav:<local>:<namespace>`,
//! value: the namespace bindings in scope where it was set, NUL, the XML as sent),
//! where the file system has them (ext4, xfs, btrfs, tmpfs): elsewhere PROPPATCH
//! answers 507 for each.

use crate::head::Out;
use std::fs::File;
use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType};

use super::locks::{self, Scope};
use super::xml::{self, Name, Propfind, Update, Value};
use super::{Answer, Ctx, esc, href, status, xml_response};
use crate::access::{self, Access};
use crate::path::{self, CleanPath, OpenError, Resolved, SymlinkPolicy};
use crate::plan::Response;
use crate::request::Request;
use crate::site::Site;

/// Prefix of the xattrs that hold dead properties.
const XATTR: &str = "user.dav:";
/// The prefix dead properties are written with.
const P: &str = "zns";

/// One resource a PROPFIND answers for.
#[derive(Debug)]
struct Item {
    segments: Vec<String>,
    st: rustix::fs::Stat,
    /// The resource as the plan opened it, when that open followed no link (then
    /// it is what [`open_item`] would open): its dead properties are read from it
    /// rather than from a second open.
    file: Option<File>,
}

impl Item {
    fn dir(&self) -> bool {
        FileType::from_raw_mode(self.st.st_mode) == FileType::Directory
    }

    fn rel(&self) -> String {
        self.segments.join("/")
    }
}

/// A PROPFIND resolved before its body is read: the resources it answers for.
#[derive(Debug)]
pub(crate) struct Plan {
    items: Vec<Item>,
}

/// Where a followed link led must be a name this client may fetch.
fn link_ok(site: &Site, access: &mut Access<'_>, file: &File) -> bool {
    let Some(root) = site.root_path.as_deref() else {
        return false;
    };
    match access::real_rel(root, file) {
        Some(real) => access.name(&real).is_ok(),
        None => false,
    }
}

/// Resolves a PROPFIND: the resource (as GET resolves it) and, for Depth 1 on a
/// collection, its members that a listing would show (403 where no listing would be
/// served). Depth infinity (also when no Depth is sent) is 403 with
/// `propfind-finite-depth`.
pub(crate) fn plan(
    site: &Site,
    req: &Request<'_>,
    clean: &CleanPath,
    rel: &str,
    access: &mut Access<'_>,
) -> Result<Plan, Answer> {
    let cfg = &site.config;
    // `None`: infinity (also when no Depth is sent).
    let depth1 = match req.dav.depth.map(str::trim) {
        Some("0") => Some(false),
        Some("1") => Some(true),
        Some(d) if d.eq_ignore_ascii_case("infinity") => None,
        None => None,
        Some(_) => return Err(Answer::Status(400)),
    };
    let (file, st, via_link) =
        match path::open_noting_links(&site.root, clean, cfg.symlinks, cfg.hidden) {
            Ok((Resolved::File(f, st) | Resolved::Dir(f, st), via_link)) => {
                if via_link && !link_ok(site, access, &f) {
                    return Err(Answer::Status(404));
                }
                (f, st, via_link)
            }
            Err(OpenError::NotFound) => return Err(Answer::Status(404)),
            Err(OpenError::Forbidden) => return Err(Answer::Status(403)),
            Err(OpenError::Busy) => return Err(Answer::Status(503)),
            Err(OpenError::Other(_)) => return Err(Answer::Status(500)),
        };
    if access.name(rel).is_err() {
        return Err(Answer::Status(404));
    }
    // As GET: a hard-linked file on a guarded site is refused.
    if access.refuses_links(&st) {
        return Err(Answer::Status(403));
    }
    let mut me = Item {
        segments: clean.segments.clone(),
        st,
        file: None,
    };
    // Infinity on a file is the file alone; on a collection it is refused.
    let depth1 = match depth1 {
        Some(d) => d,
        None if !me.dir() => false,
        None => return Err(Answer::Error(403, "propfind-finite-depth")),
    };
    let mut items = Vec::new();
    let list = depth1 && me.dir();
    // Reached without a link, the open is the one `open_item` would make.
    let keep = |file| (!via_link).then_some(file);
    if !list {
        me.file = keep(file);
        items.push(me);
        return Ok(Plan { items });
    }
    items.push(me);
    if !access.listable(rel) {
        return Err(Answer::Status(403));
    }
    let dir = match rustix::fs::Dir::read_from(&file) {
        Ok(d) => d,
        Err(_) => return Err(Answer::Status(500)),
    };
    let mut seen = 0;
    for e in dir {
        let Ok(e) = e else {
            return Err(Answer::Status(500));
        };
        // As a listing: at most this many members (its reading, stats and the
        // answer's memory are bounded; beyond, 403).
        seen += 1;
        if seen > crate::listing::MAX_LISTING + 2 {
            return Err(Answer::Status(403));
        }
        let Ok(name) = std::str::from_utf8(e.file_name().to_bytes()) else {
            continue;
        };
        if name == "." || name == ".." || (!cfg.hidden && name.starts_with('.')) {
            continue;
        }
        let child = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        if access.name(&child).is_err() {
            continue;
        }
        let Ok(cst) = rustix::fs::statat(&file, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let mut segments = clean.segments.clone();
        segments.push(name.to_owned());
        let st = match FileType::from_raw_mode(cst.st_mode) {
            FileType::RegularFile | FileType::Directory => cst,
            FileType::Symlink if cfg.symlinks != SymlinkPolicy::Never => {
                let cp = CleanPath {
                    segments: segments.clone(),
                    trailing_slash: false,
                    query: None,
                };
                match path::open_noting_links(&site.root, &cp, cfg.symlinks, cfg.hidden) {
                    Ok((Resolved::File(f, st) | Resolved::Dir(f, st), _)) => {
                        if !link_ok(site, access, &f) {
                            continue;
                        }
                        st
                    }
                    Err(_) => continue,
                }
            }
            _ => continue,
        };
        if access.refuses_links(&st) {
            continue;
        }
        items.push(Item {
            segments,
            st,
            file: None,
        });
    }
    items[0].file = keep(file);
    Ok(Plan { items })
}

impl Plan {
    /// The 207 for the body (a propfind; empty: allprop).
    pub(crate) fn answer(self, ctx: &Ctx, body: &[u8], out: &mut Out, close: bool) -> Response {
        let what = match xml::propfind(body) {
            Ok(w) => w,
            Err(s) => return status(out, s, close),
        };
        let mut x = String::from(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">\n",
        );
        // Dead properties cost an open and an xattr listing per resource: only
        // when asked for (rclone, davfs2 and Explorer ask for DAV: ones by name).
        let want_dead = match &what {
            Propfind::Prop(names) => names.iter().any(|n| n.ns != "DAV:"),
            _ => true,
        };
        for item in &self.items {
            let dead = match (want_dead, &item.file) {
                (true, Some(f)) => dead(f),
                (true, None) => open_item(ctx, &item.segments, SymlinkPolicy::WithinRoot)
                    .map_or_else(Vec::new, |f| dead(&f)),
                (false, _) => Vec::new(),
            };
            x.push_str("<D:response><D:href>");
            x.push_str(&esc(&href(&item.segments, item.dir())));
            x.push_str("</D:href>");
            match &what {
                Propfind::AllProp => {
                    let mut found = String::new();
                    for n in LIVE {
                        if let Some(v) = live(ctx, item, n) {
                            found.push_str(&v);
                        }
                    }
                    for (n, v) in &dead {
                        found.push_str(&dead_element(n, Some(v)));
                    }
                    propstat(&mut x, &found, 200);
                }
                Propfind::PropName => {
                    let mut found = String::new();
                    for n in LIVE {
                        if live(ctx, item, n).is_some() {
                            found.push_str(&format!("<D:{n}/>"));
                        }
                    }
                    for (n, _) in &dead {
                        found.push_str(&dead_element(n, None));
                    }
                    propstat(&mut x, &found, 200);
                }
                Propfind::Prop(names) => {
                    let mut found = String::new();
                    let mut missing = String::new();
                    for n in names {
                        let v = if n.ns == "DAV:" {
                            live(ctx, item, &n.local).or_else(|| quota(ctx, &n.local))
                        } else {
                            None
                        };
                        let v = v.or_else(|| {
                            dead.iter()
                                .find(|(d, _)| d == n)
                                .map(|(d, v)| dead_element(d, Some(v)))
                        });
                        match v {
                            Some(v) => found.push_str(&v),
                            None => missing.push_str(&dead_element(n, None)),
                        }
                    }
                    if !found.is_empty() {
                        propstat(&mut x, &found, 200);
                    }
                    if !missing.is_empty() {
                        propstat(&mut x, &missing, 404);
                    }
                }
            }
            x.push_str("</D:response>\n");
        }
        x.push_str("</D:multistatus>\n");
        xml_response(out, 207, &x, close, &[])
    }
}

fn propstat(x: &mut String, props: &str, code: u16) {
    x.push_str("<D:propstat><D:prop>");
    x.push_str(props);
    x.push_str(&format!(
        "</D:prop><D:status>HTTP/1.1 {code} {}</D:status></D:propstat>",
        crate::head::reason(code)
    ));
}

/// The live properties, in allprop order.
const LIVE: &[&str] = &[
    "resourcetype",
    "getcontentlength",
    "getlastmodified",
    "getetag",
    "creationdate",
    "displayname",
    "getcontenttype",
    "supportedlock",
    "lockdiscovery",
];

/// A live property of `item`, as an element (`None`: it has none by that name).
#[allow(clippy::unnecessary_cast)] // stat field types differ between architectures
fn live(ctx: &Ctx, item: &Item, name: &str) -> Option<String> {
    let st = &item.st;
    let dir = item.dir();
    let v = crate::cache::validators(st);
    let display = item.segments.last().map_or("", String::as_str);
    Some(match name {
        "resourcetype" if dir => "<D:resourcetype><D:collection/></D:resourcetype>".into(),
        "resourcetype" => "<D:resourcetype/>".into(),
        "getcontentlength" if !dir => {
            format!("<D:getcontentlength>{}</D:getcontentlength>", st.st_size as u64)
        }
        "getlastmodified" => format!(
            "<D:getlastmodified>{}</D:getlastmodified>",
            v.last_modified()
        ),
        "getetag" => format!("<D:getetag>{}</D:getetag>", esc(&v.etag)),
        "creationdate" => format!(
            "<D:creationdate>{}</D:creationdate>",
            rfc3339(st.st_mtime as i64)
        ),
        "displayname" => format!("<D:displayname>{}</D:displayname>", esc(display)),
        "getcontenttype" if dir => "<D:getcontenttype>httpd/unix-directory</D:getcontenttype>".into(),
        "getcontenttype" => format!(
            "<D:getcontenttype>{}</D:getcontenttype>",
            esc(&crate::head::content_type(display))
        ),
        "supportedlock" => "<D:supportedlock>\
             <D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>\
             <D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>\
             </D:supportedlock>"
            .into(),
        "lockdiscovery" => format!(
            "<D:lockdiscovery>{}</D:lockdiscovery>",
            locks::discovery(ctx, &item.rel())
        ),
        _ => return None,
    })
}

/// The quota properties (RFC 4331), from the root's file system: asked for by
/// name only (not in allprop). Finder shows the free space from them.
#[allow(clippy::unnecessary_cast)] // statvfs field types differ between architectures
fn quota(ctx: &Ctx, name: &str) -> Option<String> {
    let v = rustix::fs::fstatvfs(&ctx.root).ok()?;
    let frsize = v.f_frsize as u64;
    Some(match name {
        "quota-available-bytes" => format!(
            "<D:quota-available-bytes>{}</D:quota-available-bytes>",
            (v.f_bavail as u64).saturating_mul(frsize)
        ),
        "quota-used-bytes" => format!(
            "<D:quota-used-bytes>{}</D:quota-used-bytes>",
            (v.f_blocks as u64)
                .saturating_sub(v.f_bfree as u64)
                .saturating_mul(frsize)
        ),
        _ => return None,
    })
}

/// `secs` since 1970 as an RFC 3339 UTC date-time.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A dead property's element (`value`: with it, else empty).
fn dead_element(n: &Name, value: Option<&Value>) -> String {
    let (open, close) = if n.ns.is_empty() {
        (format!("{} xmlns=\"\"", n.local), n.local.clone())
    } else {
        (
            format!("{P}:{} xmlns:{P}=\"{}\"", n.local, esc(&n.ns)),
            format!("{P}:{}", n.local),
        )
    };
    match value {
        None => format!("<{open}/>"),
        Some(v) => {
            let decls: String = v
                .decls
                .split(" xmlns")
                .filter(|d| !d.is_empty())
                .filter(|d| !(n.ns.is_empty() && d.starts_with('=')))
                .filter(|d| !d.starts_with(&format!(":{P}=")))
                .map(|d| format!(" xmlns{d}"))
                .collect();
            format!("<{open}{decls}>{}</{close}>", v.inner)
        }
    }
}

/// Opens a resource to read or write its xattrs (links as `links` says, beneath
/// the root).
fn open_item(ctx: &Ctx, segments: &[String], links: SymlinkPolicy) -> Option<File> {
    let clean = CleanPath {
        segments: segments.to_vec(),
        trailing_slash: false,
        query: None,
    };
    match path::open(&ctx.root, &clean, links, ctx.hidden) {
        Ok(Resolved::File(f, _) | Resolved::Dir(f, _)) => Some(f),
        Err(_) => None,
    }
}

/// The raw dead-property xattrs of `fd`: (xattr name, value).
pub(crate) fn dead_raw(fd: &impl AsFd) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::flistxattr(fd, &mut names[..]) else {
        return Vec::new();
    };
    names.truncate(n);
    let mut out = Vec::new();
    for raw in names.split(|&b| b == 0) {
        let Ok(name) = std::str::from_utf8(raw) else {
            continue;
        };
        if !name.starts_with(XATTR) {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::fgetxattr(fd, name, &mut value[..]) {
            value.truncate(len);
            out.push((name.to_owned(), value));
        }
    }
    out
}

/// The dead properties of `fd`.
fn dead(fd: &impl AsFd) -> Vec<(Name, Value)> {
    dead_raw(fd)
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(XATTR)?;
            let (local, ns) = rest.split_once(':')?;
            let value = String::from_utf8(value).ok()?;
            let (decls, inner) = value.split_once('\0')?;
            Some((
                Name {
                    ns: ns.to_owned(),
                    local: local.to_owned(),
                },
                Value {
                    decls: decls.to_owned(),
                    inner: inner.to_owned(),
                },
            ))
        })
        .collect()
}

fn xattr_name(n: &Name) -> String {
    format!("{XATTR}{}:{}", n.local, n.ns)
}

/// PROPPATCH: every instruction or none (RFC 4918 §9.2); DAV: properties are
/// protected (403, the rest 424).
#[allow(clippy::too_many_arguments)]
pub(crate) fn proppatch(
    ctx: &Ctx,
    clean: &CleanPath,
    rel: &str,
    if_: Option<&str>,
    body: &[u8],
    out: &mut Out,
    close: bool,
) -> Response {
    let updates = match xml::propertyupdate(body) {
        Ok(u) => u,
        Err(s) => return status(out, s, close),
    };
    let Some(file) = open_item(ctx, &clean.segments, SymlinkPolicy::Never) else {
        return status(out, 404, close);
    };
    if let Err(s) = locks::check(ctx, if_, rel, &[(rel, Scope::Exact)]) {
        return status(out, s, close);
    }
    let name_of = |u: &Update| match u {
        Update::Set(n, _) | Update::Remove(n) => n.clone(),
    };
    let mut results: Vec<(Name, u16)> = Vec::new();
    let protected = updates.iter().any(|u| name_of(u).ns == "DAV:");
    if protected {
        for u in &updates {
            let n = name_of(u);
            let s = if n.ns == "DAV:" { 403 } else { 424 };
            results.push((n, s));
        }
    } else {
        // Apply in order, remembering what was there to undo on a failure.
        let mut undo: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        let mut failed = None;
        for (i, u) in updates.iter().enumerate() {
            let n = name_of(u);
            let key = xattr_name(&n);
            let mut old = vec![0u8; 64 * 1024];
            let before = rustix::fs::fgetxattr(&file, key.as_str(), &mut old[..])
                .ok()
                .map(|len| {
                    old.truncate(len);
                    old
                });
            let r = match u {
                Update::Set(_, v) => {
                    let mut val = v.decls.clone().into_bytes();
                    val.push(0);
                    val.extend_from_slice(v.inner.as_bytes());
                    rustix::fs::fsetxattr(
                        &file,
                        key.as_str(),
                        &val,
                        rustix::fs::XattrFlags::empty(),
                    )
                }
                Update::Remove(_) => match rustix::fs::fremovexattr(&file, key.as_str()) {
                    Err(rustix::io::Errno::NODATA) => Ok(()),
                    other => other,
                },
            };
            match r {
                Ok(()) => undo.push((key, before)),
                Err(e) => {
                    let s = match e {
                        rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => 403,
                        _ => 507,
                    };
                    failed = Some((i, s));
                    break;
                }
            }
        }
        if let Some((at, s)) = failed {
            for (key, before) in undo.into_iter().rev() {
                let _ = match before {
                    Some(v) => rustix::fs::fsetxattr(
                        &file,
                        key.as_str(),
                        &v,
                        rustix::fs::XattrFlags::empty(),
                    ),
                    None => rustix::fs::fremovexattr(&file, key.as_str()),
                };
            }
            for (i, u) in updates.iter().enumerate() {
                results.push((name_of(u), if i == at { s } else { 424 }));
            }
        } else {
            for u in &updates {
                results.push((name_of(u), 200));
            }
        }
    }
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">\n<D:response><D:href>",
    );
    x.push_str(&esc(&href(&clean.segments, clean.trailing_slash)));
    x.push_str("</D:href>");
    for code in [200u16, 403, 424, 507] {
        let props: String = results
            .iter()
            .filter(|(_, s)| *s == code)
            .map(|(n, _)| {
                if n.ns == "DAV:" {
                    format!("<D:{}/>", n.local)
                } else {
                    dead_element(n, None)
                }
            })
            .collect();
        if !props.is_empty() {
            propstat(&mut x, &props, code);
        }
    }
    x.push_str("</D:response>\n</D:multistatus>\n");
    xml_response(out, 207, &x, close, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
