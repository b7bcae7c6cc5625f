//! The request bodies WebDAV defines (RFC 4918 §14), parsed with quick-xml: a
//! body that is not well-formed XML, or not the element the method expects, is
//! `Err(400)`.

use quick_xml::events::Event;
use quick_xml::name::{PrefixDeclaration, ResolveResult};
use quick_xml::reader::NsReader;

/// A property's name: namespace URI and local name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Name {
    pub ns: String,
    pub local: String,
}

#[cfg(test)]
impl Name {
    pub fn dav(local: &str) -> Name {
        Name {
            ns: "DAV:".into(),
            local: local.into(),
        }
    }
}

/// What a PROPFIND asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Propfind {
    /// All properties (and the `include`d ones).
    AllProp,
    /// Property names only.
    PropName,
    /// These properties.
    Prop(Vec<Name>),
}

/// A property value to set: the namespace bindings in scope where it was written
/// (` xmlns:p="uri"`...) and its content as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Value {
    pub decls: String,
    pub inner: String,
}

/// One instruction of a PROPPATCH, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Update {
    Set(Name, Value),
    Remove(Name),
}

/// A LOCK request's lockinfo.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LockInfo {
    pub exclusive: bool,
    /// The owner element's content as sent, with its bindings.
    pub owner: Option<Value>,
}

fn reader(body: &[u8]) -> Result<NsReader<&[u8]>, u16> {
    let mut r = NsReader::from_reader(body);
    r.config_mut().trim_text(true);
    r.config_mut().expand_empty_elements = true;
    Ok(r)
}

fn name_of(ns: &ResolveResult<'_>, local: &str) -> Name {
    Name {
        ns: match ns {
            ResolveResult::Bound(n) => n.0.to_owned(),
            _ => String::new(),
        },
        local: local.to_owned(),
    }
}

/// A prefix must be bound to a namespace (`xmlns:p=""` binds none: XML Namespaces
/// 1.0 §2.2 makes that an error).
fn check_ns(ns: &ResolveResult<'_>, e: &quick_xml::events::BytesStart<'_>) -> Result<(), u16> {
    match ns {
        ResolveResult::Unknown(_) => Err(400),
        ResolveResult::Unbound if e.name().prefix().is_some() => Err(400),
        _ => Ok(()),
    }
}

/// The bindings in scope, as attributes.
fn decls(r: &NsReader<&[u8]>) -> String {
    let mut s = String::new();
    for (prefix, ns) in r.resolver().bindings() {
        match prefix {
            PrefixDeclaration::Default => {
                s.push_str(&format!(" xmlns=\"{}\"", super::esc(ns.0)));
            }
            PrefixDeclaration::Named(p) => {
                if p == "xml" || p == "xmlns" {
                    continue;
                }
                s.push_str(&format!(" xmlns:{p}=\"{}\"", super::esc(ns.0)));
            }
        }
    }
    s
}

/// Reads up to the document element: its name.
fn root(r: &mut NsReader<&[u8]>) -> Result<Name, u16> {
    loop {
        match r.read_resolved_event() {
            Ok((ns, Event::Start(e))) => {
                check_ns(&ns, &e)?;
                let local = e.local_name().into_inner().to_owned();
                return Ok(name_of(&ns, &local));
            }
            Ok((_, Event::Eof)) => return Err(400),
            Ok(_) => continue,
            Err(_) => return Err(400),
        }
    }
}

/// The next child element of the one being read: its name, or `None` at the
/// parent's end.
fn child(r: &mut NsReader<&[u8]>) -> Result<Option<(Name, String)>, u16> {
    loop {
        match r.read_resolved_event() {
            Ok((ns, Event::Start(e))) => {
                check_ns(&ns, &e)?;
                let qname = e.name().into_inner().to_owned();
                let local = e.local_name().into_inner().to_owned();
                return Ok(Some((name_of(&ns, &local), qname)));
            }
            Ok((_, Event::End(_))) => return Ok(None),
            Ok((_, Event::Eof)) => return Err(400),
            Ok(_) => continue,
            Err(_) => return Err(400),
        }
    }
}

/// Skips the rest of the element whose start was just read.
fn skip(r: &mut NsReader<&[u8]>, qname: &str) -> Result<(), u16> {
    r.read_to_end(quick_xml::name::QName(qname))
        .map(|_| ())
        .map_err(|_| 400)
}

/// The raw content of the element whose start was just read, with the bindings in
/// scope.
fn value(r: &mut NsReader<&[u8]>, body: &[u8], qname: &str) -> Result<Value, u16> {
    let decls = decls(r);
    let span = r
        .read_to_end(quick_xml::name::QName(qname))
        .map_err(|_| 400u16)?;
    let raw = body
        .get(span.start as usize..span.end as usize)
        .ok_or(400u16)?;
    let inner = std::str::from_utf8(raw).map_err(|_| 400u16)?.to_owned();
    Ok(Value { decls, inner })
}

/// Nothing but whitespace, comments and processing instructions follow.
fn end(r: &mut NsReader<&[u8]>) -> Result<(), u16> {
    loop {
        match r.read_event() {
            Ok(Event::Eof) => return Ok(()),
            Ok(Event::Start(_) | Event::Text(_) | Event::End(_)) => return Err(400),
            Ok(_) => continue,
            Err(_) => return Err(400),
        }
    }
}

fn is_dav(n: &Name, local: &str) -> bool {
    n.ns == "DAV:" && n.local == local
}

/// A PROPFIND body (empty: allprop).
pub(crate) fn propfind(body: &[u8]) -> Result<Propfind, u16> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Propfind::AllProp);
    }
    let mut r = reader(body)?;
    if !is_dav(&root(&mut r)?, "propfind") {
        return Err(400);
    }
    let mut found = None;
    while let Some((n, q)) = child(&mut r)? {
        if is_dav(&n, "allprop") {
            found.get_or_insert(Propfind::AllProp);
            skip(&mut r, &q)?;
        } else if is_dav(&n, "propname") {
            found.get_or_insert(Propfind::PropName);
            skip(&mut r, &q)?;
        } else if is_dav(&n, "prop") {
            let mut names = Vec::new();
            while let Some((p, pq)) = child(&mut r)? {
                names.push(p);
                skip(&mut r, &pq)?;
            }
            found.get_or_insert(Propfind::Prop(names));
        } else {
            // `include` and extensions.
            skip(&mut r, &q)?;
        }
    }
    end(&mut r)?;
    found.ok_or(400)
}

/// A PROPPATCH body.
pub(crate) fn propertyupdate(body: &[u8]) -> Result<Vec<Update>, u16> {
    let mut r = reader(body)?;
    if !is_dav(&root(&mut r)?, "propertyupdate") {
        return Err(400);
    }
    let mut updates = Vec::new();
    while let Some((n, q)) = child(&mut r)? {
        let set = is_dav(&n, "set");
        if !set && !is_dav(&n, "remove") {
            skip(&mut r, &q)?;
            continue;
        }
        while let Some((p, pq)) = child(&mut r)? {
            if !is_dav(&p, "prop") {
                skip(&mut r, &pq)?;
                continue;
            }
            while let Some((name, nq)) = child(&mut r)? {
                if set {
                    let v = value(&mut r, body, &nq)?;
                    updates.push(Update::Set(name, v));
                } else {
                    skip(&mut r, &nq)?;
                    updates.push(Update::Remove(name));
                }
            }
        }
    }
    end(&mut r)?;
    if updates.is_empty() {
        return Err(400);
    }
    Ok(updates)
}

/// A LOCK body.
pub(crate) fn lockinfo(body: &[u8]) -> Result<LockInfo, u16> {
    let mut r = reader(body)?;
    if !is_dav(&root(&mut r)?, "lockinfo") {
        return Err(400);
    }
    let mut scope = None;
    let mut write = false;
    let mut owner = None;
    while let Some((n, q)) = child(&mut r)? {
        if is_dav(&n, "lockscope") {
            while let Some((s, sq)) = child(&mut r)? {
                if is_dav(&s, "exclusive") {
                    scope = Some(true);
                } else if is_dav(&s, "shared") {
                    scope = Some(false);
                }
                skip(&mut r, &sq)?;
            }
        } else if is_dav(&n, "locktype") {
            while let Some((t, tq)) = child(&mut r)? {
                write |= is_dav(&t, "write");
                skip(&mut r, &tq)?;
            }
        } else if is_dav(&n, "owner") {
            owner = Some(value(&mut r, body, &q)?);
        } else {
            skip(&mut r, &q)?;
        }
    }
    end(&mut r)?;
    match (scope, write) {
        (Some(exclusive), true) => Ok(LockInfo { exclusive, owner }),
        _ => Err(400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propfind_bodies() {
        assert_eq!(propfind(b"").unwrap(), Propfind::AllProp);
        let b = br#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><x:a xmlns:x="urn:x"/></D:prop></D:propfind>"#;
        assert_eq!(
            propfind(b).unwrap(),
            Propfind::Prop(vec![
                Name::dav("getetag"),
                Name {
                    ns: "urn:x".into(),
                    local: "a".into()
                }
            ])
        );
        let b = br#"<propfind xmlns="DAV:"><propname/></propfind>"#;
        assert_eq!(propfind(b).unwrap(), Propfind::PropName);
        assert_eq!(
            propfind(b"<propfind xmlns=\"DAV:\"><allprop/>").unwrap_err(),
            400
        );
        assert_eq!(propfind(b"<x/>").unwrap_err(), 400);
        assert_eq!(propfind(b"<D:propfind xmlns:D=\"DAV:\">").unwrap_err(), 400);
        let b =
            br#"<D:propfind xmlns:D="DAV:"><D:prop><bar:foo xmlns:bar=""/></D:prop></D:propfind>"#;
        assert_eq!(propfind(b).unwrap_err(), 400);
        let b = br#"<D:propfind xmlns:D="DAV:"><D:prop><bar:foo/></D:prop></D:propfind>"#;
        assert_eq!(propfind(b).unwrap_err(), 400);
    }

    #[test]
    fn proppatch_keeps_values_and_their_bindings() {
        let b = br#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://ns.example.com/z/">
          <D:set><D:prop><Z:Authors><Z:Author>Jim &amp; Roy</Z:Author></Z:Authors></D:prop></D:set>
          <D:remove><D:prop><Z:Copyright-Owner/></D:prop></D:remove></D:propertyupdate>"#;
        let u = propertyupdate(b).unwrap();
        assert_eq!(u.len(), 2);
        let Update::Set(n, v) = &u[0] else { panic!() };
        assert_eq!(n.local, "Authors");
        assert_eq!(v.inner, "<Z:Author>Jim &amp; Roy</Z:Author>");
        assert!(v.decls.contains("xmlns:Z=\"http://ns.example.com/z/\""));
        assert!(matches!(&u[1], Update::Remove(n) if n.local == "Copyright-Owner"));
    }

    #[test]
    fn lockinfo_bodies() {
        let b = br#"<?xml version="1.0" encoding="utf-8" ?><D:lockinfo xmlns:D='DAV:'><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>http://example.org/~ejw/contact.html</D:href></D:owner></D:lockinfo>"#;
        let l = lockinfo(b).unwrap();
        assert!(l.exclusive);
        assert!(l.owner.unwrap().inner.contains("contact.html"));
        assert_eq!(lockinfo(b"<D:lockinfo xmlns:D='DAV:'/>").unwrap_err(), 400);
    }
}
