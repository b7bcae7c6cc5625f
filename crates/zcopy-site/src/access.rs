//! Who may fetch what: one answer for a file request, a listing's entries, an
//! archive's members and a sidecar, so none of them is a way around another.
//!
//! A name may be fetched when
//! - no segment starts with `.` (unless `--hidden`),
//! - the client's credentials pass the `auth-file` of the last rule with one whose
//!   glob matches the name, *and* of the name without a sidecar suffix (`.gz`, `.br`,
//!   `.zst`: `server.key.gz` is guarded as `server.key` is),
//! - where a symbolic link inside the root was followed, the same holds for the
//!   resolved name beneath the root ([`real_rel`]),
//! - and, when any rule asks for a password, the file has a single link
//!   (`st_nlink == 1`): a hard link is the same file under another name, and rules
//!   can only ever see names.
//!
//! A directory may be listed (or archived) when its name may be fetched and its
//! `listing` (the rule's, else `--listing`) is on.

use std::os::fd::AsFd;
use std::time::Instant;

use crate::auth::{Checks, Users, Verdict};
use crate::rules::{Rule, glob_match};
use crate::site_config::SiteConfig;

/// Suffixes of precompressed sidecars: a name ending in one is also guarded by the
/// rules of the name without it.
pub const SIDECAR_SUFFIXES: [&str; 3] = [".gz", ".br", ".zst"];

/// Why a name can't be fetched.
#[derive(Clone, Copy, Debug)]
pub enum Denied<'a> {
    /// Hidden (a dotfile), refused by the symlink policy, or a hard-linked file under a
    /// guarded site: answered as missing.
    NotFound,
    /// These users' credentials are needed (401 with their challenge).
    Auth(&'a Users),
}

/// The access answers for one request (one client's credentials), with the verdict
/// of each set of users remembered so that a listing or an archive checks a password
/// once per rule, not once per entry.
///
/// Passwords are checked through the worker's [`Checks`], never hashed here: a
/// verdict not known yet counts as "no" and marks the answer [`Access::pending`],
/// and the caller then answers nothing and asks again once the verdict is in.
#[derive(Debug)]
pub struct Access<'a> {
    rules: &'a [Rule],
    hidden: bool,
    listing: bool,
    authorization: Option<&'a str>,
    /// Some rule asks for a password.
    guarded: bool,
    verdicts: Vec<(*const Users, bool)>,
    checks: &'a mut Checks,
    now: Instant,
    /// A verdict this answer needed is still being worked out off the loop.
    pending: bool,
}

impl<'a> Access<'a> {
    /// The answers for a client that sent `authorization`; passwords are checked
    /// through `checks`.
    pub fn new(
        cfg: &'a SiteConfig,
        authorization: Option<&'a str>,
        checks: &'a mut Checks,
        now: Instant,
    ) -> Access<'a> {
        Access {
            rules: &cfg.rules,
            hidden: cfg.hidden,
            listing: cfg.listing,
            authorization,
            guarded: cfg.rules.iter().any(|r| r.auth.is_some()),
            verdicts: Vec::new(),
            checks,
            now,
            pending: false,
        }
    }

    /// Some verdict this answer depended on is not in yet: the answer built so far
    /// must not be sent; the request is answered again when the verdict arrives.
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// The client's credentials against `users`, through the worker's checks (each
    /// set asked once per request).
    pub fn verdict(&mut self, users: &Users) -> Verdict {
        let key = users as *const Users;
        if let Some(&(_, ok)) = self.verdicts.iter().find(|(k, _)| *k == key) {
            return if ok {
                Verdict::Allowed
            } else {
                Verdict::Denied(None)
            };
        }
        let v = self.checks.check(users, self.authorization, self.now);
        match v {
            Verdict::Allowed => self.verdicts.push((key, true)),
            Verdict::Pending => self.pending = true,
            _ => self.verdicts.push((key, false)),
        }
        v
    }

    /// Some rule asks for a password (hard-linked files are then refused).
    pub fn guarded(&self) -> bool {
        self.guarded
    }

    /// A regular file with more than one link, refused on a guarded site.
    pub fn refuses_links(&self, st: &rustix::fs::Stat) -> bool {
        #[allow(clippy::unnecessary_cast)] // differs between architectures
        let nlink = st.st_nlink as u64;
        self.guarded
            && nlink > 1
            && rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
    }

    /// Runs `job` off the event loop for this request (`key` tells it from others
    /// on the connection): its status once done ([`crate::offload`]).
    pub fn offload(
        &mut self,
        key: u64,
        job: impl FnOnce() -> u16 + Send + 'static,
    ) -> crate::offload::Offload {
        self.checks.offload(key, job)
    }

    /// Dotfiles are served (`--hidden`).
    pub fn hidden(&self) -> bool {
        self.hidden
    }

    /// Whether the client's credentials pass `users` (each set checked once; a
    /// verdict not in yet is a "no" that makes the answer [`Access::pending`]).
    pub fn passes(&mut self, users: &Users) -> bool {
        self.verdict(users) == Verdict::Allowed
    }

    /// May the name `rel` (decoded, from the root, no leading `/`; `""` is the root)
    /// be fetched? Hidden segments, then the auth of `rel` and of its sidecar original.
    pub fn name(&mut self, rel: &str) -> Result<(), Denied<'a>> {
        if !self.hidden && rel.split('/').any(|s| s.starts_with('.')) {
            return Err(Denied::NotFound);
        }
        if !self.guarded {
            return Ok(());
        }
        for users in [
            auth_of(self.rules, rel),
            original(rel).and_then(|o| auth_of(self.rules, o)),
        ]
        .into_iter()
        .flatten()
        {
            if !self.passes(users) {
                return Err(Denied::Auth(users));
            }
        }
        Ok(())
    }

    /// May the directory `rel` be listed (and archived)?
    pub fn listable(&mut self, rel: &str) -> bool {
        self.name(rel).is_ok() && listing_of(self.rules, rel).unwrap_or(self.listing)
    }
}

/// `rel` without a sidecar suffix, when it has one (and something before it).
pub fn original(rel: &str) -> Option<&str> {
    SIDECAR_SUFFIXES.iter().find_map(|s| {
        rel.strip_suffix(s)
            .filter(|o| !o.is_empty() && !o.ends_with('/'))
    })
}

/// The users of the last rule with an `auth-file` whose glob matches `rel`.
pub fn auth_of<'a>(rules: &'a [Rule], rel: &str) -> Option<&'a Users> {
    rules
        .iter()
        .rev()
        .filter(|r| r.auth.is_some())
        .find(|r| glob_match(&r.glob, rel))
        .and_then(|r| r.auth.as_deref())
}

/// The `listing` of the last rule that sets one and matches `rel`.
pub fn listing_of(rules: &[Rule], rel: &str) -> Option<bool> {
    rules
        .iter()
        .rev()
        .filter(|r| r.listing.is_some())
        .find(|r| glob_match(&r.glob, rel))
        .and_then(|r| r.listing)
}

/// The root's own path, as the kernel names it (for [`real_rel`]).
pub fn root_path(root: &impl AsFd) -> Option<String> {
    fd_path(root)
}

/// Where the open `fd` is beneath the root whose path is `root` (from
/// [`root_path`]): `Some("")` for the root itself, `Some("a/b")`, or `None` when it
/// is outside the root (only `--symlinks follow` gets there) or unknown.
pub fn real_rel(root: &str, fd: &impl AsFd) -> Option<String> {
    let p = fd_path(fd)?;
    if p == root {
        return Some(String::new());
    }
    let rest = if root == "/" {
        p.strip_prefix('/')?
    } else {
        p.strip_prefix(root)?.strip_prefix('/')?
    };
    Some(rest.to_owned())
}

/// The path `/proc/self/fd/N` names (not for deleted files).
fn fd_path(fd: &impl AsFd) -> Option<String> {
    use std::os::fd::AsRawFd;
    let link = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    let p = std::fs::read_link(link).ok()?;
    let p = p.into_os_string().into_string().ok()?;
    (!p.ends_with(" (deleted)")).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_originals() {
        assert_eq!(original("keys/server.key.gz"), Some("keys/server.key"));
        assert_eq!(original("a.br"), Some("a"));
        assert_eq!(original("x.zst"), Some("x"));
        assert_eq!(original(".gz"), None);
        assert_eq!(original("d/.gz"), None);
        assert_eq!(original("a.txt"), None);
    }

    #[test]
    fn real_paths_beneath_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root_dir = tmp.path().join("r");
        std::fs::create_dir_all(root_dir.join("sub")).unwrap();
        std::os::unix::fs::symlink("sub", root_dir.join("link")).unwrap();
        let root = std::fs::File::open(&root_dir).unwrap();
        let rp = root_path(&root).unwrap();
        assert_eq!(real_rel(&rp, &root).as_deref(), Some(""));
        let sub = std::fs::File::open(root_dir.join("link")).unwrap();
        assert_eq!(real_rel(&rp, &sub).as_deref(), Some("sub"));
        let outside = std::fs::File::open(tmp.path()).unwrap();
        assert_eq!(real_rel(&rp, &outside), None);
    }
}
