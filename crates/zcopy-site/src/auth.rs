//! HTTP Basic authentication against bcrypt and argon2 password hashes (htpasswd).
//!
//! Verifying a hash is slow on purpose (tens of milliseconds), so it never runs on an
//! event loop: a worker's [`Checks`] hands it to a small pool of low-priority threads
//! ([`CHECK_THREADS`], at most [`CHECK_QUEUE`] waiting) and the request waits,
//! suspended, until its verdict is in; the worker's other connections go on. What a
//! check decided is remembered as a keyed hash of the header, never in clear: a
//! verified header for [`REMEMBER_FOR`] (a browser's repeated requests cost a map
//! lookup), a refused one for [`DENIED_FOR`]. Each client address (IPv6: its /64)
//! may start [`FAILURES_PER_MINUTE`] checks that fail per minute (a check that
//! succeeds gives its turn back); beyond that it is answered 429 at once, without a
//! hash. Hash checks compare in constant time inside `bcrypt` and `argon2`; an
//! unknown user is checked against a decoy with the algorithm and cost most users'
//! hashes have, so it takes as long as a known one.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// Most verified (and, apart, most refused) credentials remembered per user list.
const REMEMBERED: usize = 1024;
/// How long a verified Authorization header is taken without a new hash check.
pub const REMEMBER_FOR: Duration = Duration::from_secs(300);
/// How long a refused Authorization header is answered 401 without a new check.
pub const DENIED_FOR: Duration = Duration::from_secs(60);
/// Password checks that fail a client address may start per minute (a burst of as
/// many, then one per `60 / FAILURES_PER_MINUTE` seconds); beyond, 429 at once.
pub const FAILURES_PER_MINUTE: u32 = 10;
/// Client addresses whose failures are counted apart, per user list; beyond (after
/// forgetting those back at a full allowance), new addresses share one allowance.
const TRACKED: usize = 4096;
/// Password checks waiting for a thread of the pool (all workers); beyond, 503.
pub const CHECK_QUEUE: usize = 64;
/// Threads that verify hashes: half the CPUs, 1 to 4 (at a lower priority than the
/// event loops, so a flood of checks slows logins, never other requests).
pub const CHECK_THREADS: usize = 4;
/// Nice value of the check threads.
const CHECK_NICE: i32 = 10;

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

    /// What a check's cost depends on: the algorithm and its parameters (bcrypt
    /// `$2b$10`, argon2 `$argon2id$v=19$m=…,t=…,p=…`), without salt and hash.
    fn params(&self) -> String {
        match self {
            Hash::Bcrypt(h) => h[..h.match_indices('$').nth(2).map_or(h.len(), |(i, _)| i)].into(),
            Hash::Argon2(h) => match argon2::PasswordHash::new(h) {
                Ok(p) => {
                    let v = p.version.map(|v| format!("$v={v}")).unwrap_or_default();
                    format!("${}{v}${}", p.algorithm, p.params)
                }
                Err(_) => h.clone(),
            },
        }
    }
}

/// What the workers share of one user list: the keys of remembered headers, the
/// verdicts remembered, and each client address's allowance of failed checks.
struct Memory {
    keys: std::collections::hash_map::RandomState,
    good: Mutex<HashMap<u64, Instant>>,
    bad: Mutex<HashMap<u64, Instant>>,
    limits: Mutex<Limiter>,
}

impl Memory {
    fn new() -> Memory {
        Memory {
            keys: std::collections::hash_map::RandomState::new(),
            good: Mutex::new(HashMap::new()),
            bad: Mutex::new(HashMap::new()),
            limits: Mutex::new(Limiter::default()),
        }
    }

    fn key(&self, value: &str) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write(value.as_bytes());
        h.finish()
    }

    /// Whether `key` was verified (`Some(true)`) or refused (`Some(false)`) lately.
    fn recall(&self, key: u64, now: Instant) -> Option<bool> {
        let fresh = |m: &Mutex<HashMap<u64, Instant>>| {
            crate::lock(m).get(&key).is_some_and(|&until| now < until)
        };
        if fresh(&self.good) {
            Some(true)
        } else if fresh(&self.bad) {
            Some(false)
        } else {
            None
        }
    }

    fn remember(&self, key: u64, ok: bool, now: Instant) {
        let (map, ttl) = if ok {
            (&self.good, REMEMBER_FOR)
        } else {
            (&self.bad, DENIED_FOR)
        };
        let mut m = crate::lock(map);
        if m.len() >= REMEMBERED {
            m.retain(|_, until| now < *until);
            if m.len() >= REMEMBERED {
                m.clear();
            }
        }
        m.insert(key, now + ttl);
    }
}

/// Failed-check allowances per client address: a bucket of
/// [`FAILURES_PER_MINUTE`] turns, refilled at that rate.
#[derive(Default)]
struct Limiter {
    buckets: HashMap<IpAddr, Bucket>,
    /// Shared by addresses beyond [`TRACKED`].
    overflow: Option<Bucket>,
    pruned: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Bucket {
    turns: f64,
    at: Instant,
}

impl Bucket {
    const FULL: f64 = FAILURES_PER_MINUTE as f64;

    fn new(now: Instant) -> Bucket {
        Bucket {
            turns: Bucket::FULL,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.turns = (self.turns + secs * Bucket::FULL / 60.0).min(Bucket::FULL);
        self.at = now;
    }
}

/// The address a client's failures are counted under: IPv4 as is, IPv6 by its /64
/// (one host usually has a whole one).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Limiter {
    fn bucket(&mut self, ip: IpAddr, now: Instant) -> &mut Bucket {
        let ip = client_key(ip);
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= TRACKED {
            if self
                .pruned
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
            {
                self.pruned = Some(now);
                self.buckets.retain(|_, b| {
                    b.refill(now);
                    b.turns < Bucket::FULL
                });
            }
            if self.buckets.len() >= TRACKED {
                return self.overflow.get_or_insert_with(|| Bucket::new(now));
            }
        }
        self.buckets.entry(ip).or_insert_with(|| Bucket::new(now))
    }

    /// Takes a turn for a check from `ip`; when none is left, the seconds until one is.
    fn take(&mut self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let b = self.bucket(ip, now);
        b.refill(now);
        if b.turns >= 1.0 {
            b.turns -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - b.turns) * 60.0 / Bucket::FULL;
        Err((wait.ceil() as u64).max(1))
    }

    /// Gives back the turn of a check that succeeded (or never ran).
    fn refund(&mut self, ip: IpAddr, now: Instant) {
        let b = self.bucket(ip, now);
        b.refill(now);
        b.turns = (b.turns + 1.0).min(Bucket::FULL);
    }
}

/// Users allowed in, with the realm named in `WWW-Authenticate`.
pub struct Users {
    /// Realm shown by browsers.
    pub realm: String,
    users: HashMap<String, Hash>,
    /// Checked for unknown user names (see [`decoy`]).
    decoy: Hash,
    memory: Arc<Memory>,
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
    /// Being checked off the event loop: the request waits for the verdict (the
    /// worker is woken with the connection's token, see [`Checks::completed`]).
    Pending,
    /// The client address used up its failed checks: 429, retry after this many
    /// seconds.
    Limited(u64),
    /// The check pool's queue is full: 503.
    Busy,
}

/// The hash an unknown user's password is checked against so that the answer takes
/// as long as a known user's: a hash of the file with the algorithm and parameters
/// most of its hashes have (ties: the first user name), whose verdict is discarded.
fn decoy(users: &HashMap<String, Hash>) -> Hash {
    let mut names: Vec<&String> = users.keys().collect();
    names.sort();
    let mut count: HashMap<String, usize> = HashMap::new();
    for h in users.values() {
        *count.entry(h.params()).or_default() += 1;
    }
    let most = count.values().copied().max().unwrap_or(0);
    names
        .iter()
        .map(|n| &users[*n])
        .find(|h| count.get(&h.params()) == Some(&most))
        .cloned()
        // A list has at least one user; this is for the type only.
        .unwrap_or_else(|| {
            Hash::Bcrypt("$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy".into())
        })
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
        Ok(Users {
            realm: realm.to_owned(),
            decoy: decoy(&users),
            users,
            memory: Arc::new(Memory::new()),
        })
    }

    /// Adds more users (a later entry for the same name replaces the earlier one).
    pub fn merge(&mut self, other: Users) {
        self.users.extend(other.users);
        self.decoy = decoy(&self.users);
    }

    /// The `WWW-Authenticate` value.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\", charset=\"UTF-8\"", self.realm)
    }

    /// The hash `password` is checked against for `user` (the decoy for an unknown
    /// name), and whether the verdict counts.
    fn hash_for(&self, user: &str) -> (&Hash, bool) {
        match self.users.get(user) {
            Some(h) => (h, true),
            None => (&self.decoy, false),
        }
    }

    /// Checks an Authorization header value here and now, hash check included
    /// (tens of milliseconds): for tools and tests; a server's workers use
    /// [`Checks::check`], which never hashes on the calling thread.
    pub fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(value) = authorization else {
            return Verdict::Missing;
        };
        let now = Instant::now();
        let key = self.memory.key(value);
        if self.memory.recall(key, now) == Some(true) {
            return Verdict::Allowed;
        }
        let Some((user, password)) = decode_basic(value) else {
            return Verdict::Denied(None);
        };
        let (hash, counts) = self.hash_for(&user);
        let ok = hash.verify(password.as_bytes()) && counts;
        self.memory.remember(key, ok, now);
        if ok {
            Verdict::Allowed
        } else {
            Verdict::Denied(Some(user))
        }
    }
}

/// A hash check for the pool.
struct Job {
    hash: Hash,
    /// The verdict counts (false: an unknown user, checked against the decoy).
    counts: bool,
    password: String,
    key: u64,
    ip: IpAddr,
    memory: Arc<Memory>,
    reply: Sender<Done>,
    waker: Option<Wake>,
}

/// A verdict back from the pool.
struct Done {
    key: u64,
    ok: bool,
}

/// The process's hash-check threads and their queue.
struct Pool {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        }));
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get() / 2)
            .clamp(1, CHECK_THREADS);
        for i in 0..n {
            let spawned = std::thread::Builder::new()
                .name(format!("zcopy-auth-{i}"))
                .spawn(move || check_thread(pool));
            if let Err(e) = spawned {
                tracing::error!("password check thread: {e}");
            }
        }
        pool
    })
}

fn check_thread(pool: &'static Pool) {
    // Below the event loops: a flood of checks must not take their CPU.
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), CHECK_NICE);
    loop {
        let job = {
            let mut q = crate::lock(&pool.queue);
            loop {
                if let Some(job) = q.pop_front() {
                    break job;
                }
                q = pool.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let ok = job.hash.verify(job.password.as_bytes()) && job.counts;
        let now = Instant::now();
        job.memory.remember(job.key, ok, now);
        if ok {
            crate::lock(&job.memory.limits).refund(job.ip, now);
        }
        if job.reply.send(Done { key: job.key, ok }).is_ok()
            && let Some(w) = &job.waker
        {
            w();
        }
    }
}

pub use crate::offload::Wake;

/// A worker's password checks: hands them to the pool, and carries verdicts back to
/// the requests that wait for them. The driver says which connection is being
/// served ([`Checks::asking`]) before it lets the core answer requests, and, when
/// woken, resumes the connections [`Checks::completed`] names.
pub struct Checks {
    tx: Sender<Done>,
    rx: Receiver<Done>,
    waker: Option<Wake>,
    /// The connection being served: its token and address.
    asking: (usize, IpAddr),
    /// Checks of this worker in the pool, by header key: the connections waiting.
    waiting: HashMap<u64, Vec<usize>>,
    /// Verdicts in, by header key: (allowed, waiting requests yet to take it).
    decided: HashMap<u64, (bool, usize)>,
    /// Other work of the site's off the loop (WebDAV COPY, DELETE, MOVE).
    jobs: crate::offload::Jobs,
}

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checks")
            .field("waiting", &self.waiting.len())
            .finish_non_exhaustive()
    }
}

impl Default for Checks {
    fn default() -> Checks {
        Checks::new(None)
    }
}

impl Checks {
    /// Checks whose verdicts wake the worker through `waker`.
    pub fn new(waker: Option<Wake>) -> Checks {
        let (tx, rx) = channel();
        Checks {
            tx,
            rx,
            waker,
            asking: (usize::MAX, IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            waiting: HashMap::new(),
            decided: HashMap::new(),
            jobs: crate::offload::Jobs::default(),
        }
    }

    /// The connection whose requests are answered next: `token` is what
    /// [`Checks::completed`] gives back for it, `ip` its client address.
    pub fn asking(&mut self, token: usize, ip: IpAddr) {
        self.asking = (token, ip);
    }

    /// Checks an Authorization header value against `users` for the connection
    /// [`Checks::asking`] named, without a hash on this thread: from what is
    /// remembered, or [`Verdict::Pending`] while the pool checks it.
    pub fn check(&mut self, users: &Users, authorization: Option<&str>, now: Instant) -> Verdict {
        let Some(value) = authorization else {
            return Verdict::Missing;
        };
        let mem = &users.memory;
        let key = mem.key(value);
        let denied = || Verdict::Denied(decode_basic(value).map(|(u, _)| u));
        if let Some((ok, left)) = self.decided.get_mut(&key) {
            let ok = *ok;
            *left -= 1;
            if *left == 0 {
                self.decided.remove(&key);
            }
            return if ok { Verdict::Allowed } else { denied() };
        }
        match mem.recall(key, now) {
            Some(true) => return Verdict::Allowed,
            Some(false) => return denied(),
            None => {}
        }
        let Some((user, password)) = decode_basic(value) else {
            return Verdict::Denied(None);
        };
        let (token, ip) = self.asking;
        if let Some(w) = self.waiting.get_mut(&key) {
            w.push(token);
            return Verdict::Pending;
        }
        if let Err(secs) = crate::lock(&mem.limits).take(ip, now) {
            return Verdict::Limited(secs);
        }
        let (hash, counts) = users.hash_for(&user);
        let job = Job {
            hash: hash.clone(),
            counts,
            password,
            key,
            ip,
            memory: mem.clone(),
            reply: self.tx.clone(),
            waker: self.waker.clone(),
        };
        let pool = pool();
        {
            let mut q = crate::lock(&pool.queue);
            if q.len() >= CHECK_QUEUE {
                drop(q);
                crate::lock(&mem.limits).refund(ip, now);
                return Verdict::Busy;
            }
            q.push_back(job);
        }
        pool.ready.notify_one();
        self.waiting.insert(key, vec![token]);
        Verdict::Pending
    }

    /// Runs `job` off the loop for the request `key` of the connection
    /// [`Checks::asking`] names ([`crate::offload`]): its status once done.
    pub fn offload(
        &mut self,
        key: u64,
        job: impl FnOnce() -> u16 + Send + 'static,
    ) -> crate::offload::Offload {
        self.jobs.run(self.asking.0, key, self.waker.as_ref(), job)
    }

    /// The tokens of connections whose verdict is in (appended to `woken`): resume
    /// them, and their request is answered again, this time from the verdict.
    pub fn completed(&mut self, woken: &mut Vec<usize>) {
        self.jobs.completed(woken);
        while let Ok(done) = self.rx.try_recv() {
            let Some(tokens) = self.waiting.remove(&done.key) else {
                continue;
            };
            if self.decided.len() >= REMEMBERED {
                // Verdicts nobody came back for (their connections closed).
                self.decided.clear();
            }
            self.decided.insert(done.key, (done.ok, tokens.len()));
            woken.extend(tokens);
        }
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

    /// The issue: the decoy was a cost-10 bcrypt hash whatever the file held, so an
    /// unknown user took 56 ms where a known one with a cost-5 hash took 1.9 ms.
    #[test]
    fn the_decoy_has_the_algorithm_and_cost_of_the_file() {
        let b5 = || bcrypt::hash("x", 5).unwrap();
        let users = Users::parse("r", &format!("a:{}\nb:{}\n", b5(), b5())).unwrap();
        assert_eq!(users.decoy.params(), "$2b$05");
        // Mixed costs: the most common one.
        let b4 = bcrypt::hash("x", 4).unwrap();
        let text = format!("a:{b4}\nb:{}\nc:{}\n", b5(), b5());
        assert_eq!(Users::parse("r", &text).unwrap().decoy.params(), "$2b$05");
        let a = {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
            let params = argon2::Params::new(4096, 1, 1, None).unwrap();
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string()
        };
        let mut users = Users::parse("r", &format!("z:{a}\n")).unwrap();
        assert_eq!(users.decoy.params(), "$argon2id$v=19$m=4096,t=1,p=1");
        // An unknown user is checked against it, and refused.
        assert_eq!(
            users.check(Some(&basic("nobody", "pw"))),
            Verdict::Denied(Some("nobody".into()))
        );
        // Merging recomputes it.
        users.merge(Users::parse("r", &format!("a:{}\nb:{}\n", b5(), b5())).unwrap());
        assert_eq!(users.decoy.params(), "$2b$05");
    }

    #[test]
    fn failures_are_limited_per_address_and_successes_give_their_turn_back() {
        let now = Instant::now();
        let mut l = Limiter::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..FAILURES_PER_MINUTE {
            assert_eq!(l.take(a, now), Ok(()));
        }
        let wait = l.take(a, now).unwrap_err();
        assert_eq!(wait, 60 / u64::from(FAILURES_PER_MINUTE));
        assert_eq!(l.take(b, now), Ok(()));
        l.refund(a, now);
        assert_eq!(l.take(a, now), Ok(()));
        // One turn comes back per 60 / N seconds.
        let later = now + Duration::from_secs(60 / u64::from(FAILURES_PER_MINUTE));
        assert_eq!(l.take(a, later), Ok(()));
        assert!(l.take(a, later).is_err());
        // IPv6: one allowance per /64; IPv4-mapped addresses are IPv4.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2:3".parse().unwrap();
        assert_eq!(client_key(v6a), client_key(v6b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), a);
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
