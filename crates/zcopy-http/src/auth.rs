//! HTTP Basic authentication against bcrypt and argon2 password hashes (htpasswd).
//!
//! Verifying a hash is slow on purpose (tens of milliseconds) and runs on the worker
//! that received the request; credentials that verified once are remembered (as a
//! keyed hash of the header, never in clear) so a browser's repeated requests cost a
//! map lookup. Hash checks compare in constant time inside `bcrypt` and `argon2`;
//! an unknown user is checked against a dummy hash so it takes as long as a known one.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

use base64::Engine as _;

/// Most verified credentials remembered.
const REMEMBERED: usize = 1024;

/// A password hash we can verify.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Hash {
    /// `$2a$`, `$2b$`, `$2y$` (bcrypt).
    Bcrypt(String),
    /// `$argon2id$`, `$argon2i$`, `$argon2d$` (PHC string).
    Argon2(String),
}

impl Hash {
    fn parse(s: &str) -> Result<Hash, String> {
        if s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$") {
            s.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("bad bcrypt hash: {e}"))?;
            Ok(Hash::Bcrypt(s.to_owned()))
        } else if s.starts_with("$argon2") {
            argon2::PasswordHash::new(s).map_err(|e| format!("bad argon2 hash: {e}"))?;
            Ok(Hash::Argon2(s.to_owned()))
        } else {
            Err("unsupported hash (use bcrypt `htpasswd -B` or argon2)".into())
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Argon2(h) => {
                use argon2::PasswordVerifier as _;
                argon2::PasswordHash::new(h).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password, &parsed)
                        .is_ok()
                })
            }
        }
    }
}

/// Users allowed in, with the realm named in `WWW-Authenticate`.
pub struct Users {
    /// Realm shown by browsers.
    pub realm: String,
    users: HashMap<String, Hash>,
    remembered: Mutex<HashMap<u64, ()>>,
    keys: std::collections::hash_map::RandomState,
    dummy: Hash,
}

impl std::fmt::Debug for Users {
    /// Names the realm and counts users: hashes never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// What an Authorization header proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid credentials.
    Allowed,
    /// No Authorization header.
    Missing,
    /// Present but wrong (user name, for the log, when one could be read).
    Denied(Option<String>),
}

impl Users {
    /// Users from `htpasswd` lines (`user:hash`; blank lines and `#` comments skipped).
    pub fn parse(realm: &str, text: &str) -> Result<Users, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: want user:hash", i + 1))?;
            if user.is_empty() {
                return Err(format!("line {}: empty user name", i + 1));
            }
            let hash = Hash::parse(hash).map_err(|e| format!("line {}: {e}", i + 1))?;
            users.insert(user.to_owned(), hash);
        }
        if users.is_empty() {
            return Err("no users".into());
        }
        Users::new(realm, users)
    }

    fn new(realm: &str, users: HashMap<String, Hash>) -> Result<Users, String> {
        if realm
            .bytes()
            .any(|b| b < b' ' || b == b'"' || b == b'\\' || b == 0x7f)
        {
            return Err("realm must not contain quotes, backslashes or control characters".into());
        }
        // A valid bcrypt hash of a random-ish secret nobody sends: unknown users take as
        // long as known ones.
        let dummy =
            Hash::Bcrypt("$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy".into());
        Ok(Users {
            realm: realm.to_owned(),
            users,
            remembered: Mutex::new(HashMap::new()),
            keys: std::collections::hash_map::RandomState::new(),
            dummy,
        })
    }

    /// Adds more users (a later entry for the same name replaces the earlier one).
    pub fn merge(&mut self, other: Users) {
        self.users.extend(other.users);
    }

    /// The `WWW-Authenticate` value.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\", charset=\"UTF-8\"", self.realm)
    }

    /// Checks an Authorization header value.
    pub fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(value) = authorization else {
            return Verdict::Missing;
        };
        let mut h = self.keys.build_hasher();
        h.write(value.as_bytes());
        let key = h.finish();
        if self.remembered.lock().is_ok_and(|m| m.contains_key(&key)) {
            return Verdict::Allowed;
        }
        let Some((user, password)) = decode_basic(value) else {
            return Verdict::Denied(None);
        };
        let ok = match self.users.get(&user) {
            Some(hash) => hash.verify(password.as_bytes()),
            None => {
                let _ = self.dummy.verify(password.as_bytes());
                false
            }
        };
        if !ok {
            return Verdict::Denied(Some(user));
        }
        if let Ok(mut m) = self.remembered.lock() {
            if m.len() >= REMEMBERED {
                m.clear();
            }
            m.insert(key, ());
        }
        Verdict::Allowed
    }
}

/// `Basic base64(user:password)` → (user, password); `None` for anything else.
fn decode_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {b}")
    }

    #[test]
    fn bcrypt_and_argon2_users() {
        let b = bcrypt::hash("s3cret", 4).unwrap();
        let a = {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
            argon2::Argon2::default()
                .hash_password(b"hunter2", &salt)
                .unwrap()
                .to_string()
        };
        let text = format!("# comment\n\nalice:{b}\nbob:{a}\n");
        let users = Users::parse("files", &text).unwrap();
        assert_eq!(
            users.check(Some(&basic("alice", "s3cret"))),
            Verdict::Allowed
        );
        // Remembered: same answer again.
        assert_eq!(
            users.check(Some(&basic("alice", "s3cret"))),
            Verdict::Allowed
        );
        assert_eq!(
            users.check(Some(&basic("bob", "hunter2"))),
            Verdict::Allowed
        );
        assert_eq!(
            users.check(Some(&basic("alice", "wrong"))),
            Verdict::Denied(Some("alice".into()))
        );
        assert_eq!(
            users.check(Some(&basic("bob", "s3cret"))),
            Verdict::Denied(Some("bob".into()))
        );
        assert_eq!(
            users.check(Some(&basic("carol", "x"))),
            Verdict::Denied(Some("carol".into()))
        );
        assert_eq!(users.check(None), Verdict::Missing);
        for junk in [
            "Basic !!!notbase64",
            "Basic",
            "Bearer abc",
            "Basic bm9jb2xvbg==", // "nocolon"
            "Basic //79/w==",     // not UTF-8
            "",
        ] {
            assert_eq!(users.check(Some(junk)), Verdict::Denied(None), "{junk:?}");
        }
        assert_eq!(
            users.challenge(),
            "Basic realm=\"files\", charset=\"UTF-8\""
        );
    }

    #[test]
    fn bad_files() {
        assert!(Users::parse("r", "").is_err());
        assert!(Users::parse("r", "alice").is_err());
        assert!(Users::parse("r", "alice:plaintext").is_err());
        assert!(Users::parse("r", "alice:$2b$10$short").is_err());
        assert!(Users::parse("r", ":$2b$04$abc").is_err());
        let b = bcrypt::hash("x", 4).unwrap();
        assert!(Users::parse("bad\"realm", &format!("a:{b}")).is_err());
    }
}
