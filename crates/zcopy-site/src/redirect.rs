//! Where a plain-HTTP redirect listener sends a client: the same host and target
//! over https.

use std::fmt::Write;

/// `https://HOST[:PORT]TARGET` for a request with Host header `host` (its port
/// dropped) and origin-form `target`; the port is left out when it is 443. `None`
/// when there is no usable host name (the client gets a 400).
pub fn https_location(host: Option<&str>, port: u16, target: &str) -> Option<String> {
    let name = host_name(host?)?;
    let mut loc = String::with_capacity(16 + name.len() + target.len());
    loc.push_str("https://");
    loc.push_str(name);
    if port != 443 {
        let _ = write!(loc, ":{port}");
    }
    loc.push_str(target);
    Some(loc)
}

/// The name part of a Host header value (`name`, `1.2.3.4`, `[::1]`), checked to
/// hold only characters a host may have.
fn host_name(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        let end = host.find(']')?;
        let (name, rest) = host.split_at(end + 1);
        if !(rest.is_empty() || rest.starts_with(':')) {
            return None;
        }
        if !name[1..name.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        name
    } else {
        let name = host.split(':').next().unwrap_or("");
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return None;
        }
        name
    };
    (!name.is_empty() && name != "[]").then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let l = |h, p, t| https_location(h, p, t);
        assert_eq!(
            l(Some("example.com"), 443, "/a?b=c").as_deref(),
            Some("https://example.com/a?b=c")
        );
        assert_eq!(
            l(Some("example.com:8080"), 8443, "/").as_deref(),
            Some("https://example.com:8443/")
        );
        assert_eq!(
            l(Some("[::1]:80"), 443, "/x").as_deref(),
            Some("https://[::1]/x")
        );
        assert_eq!(
            l(Some("127.0.0.1"), 443, "/").as_deref(),
            Some("https://127.0.0.1/")
        );
        assert_eq!(l(None, 443, "/"), None);
        assert_eq!(l(Some(""), 443, "/"), None);
        assert_eq!(l(Some("a b"), 443, "/"), None);
        assert_eq!(l(Some("evil.com/x"), 443, "/"), None);
        assert_eq!(l(Some("[::1]x"), 443, "/"), None);
        assert_eq!(l(Some("[]"), 443, "/"), None);
        assert_eq!(l(Some("a@b"), 443, "/"), None);
    }
}
