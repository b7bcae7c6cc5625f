//! Two network namespaces joined by a veth pair: a peer whose receive queue lives in
//! this kernel but not on loopback, as a container on the same host would be.
//!
//! [`VethPair::new`] creates namespaces `zcns<pid>x<n>a` / `…b` (unique per process
//! and pair, so parallel tests don't collide), a veth pair `veth0` (in `a`) /
//! `veth1` (in `b`) with addresses from a /30 of the 198.18.0.0/15 benchmarking
//! range (unique per pair), and brings `lo` up in both. Everything is removed on
//! drop, also while unwinding from a panic; namespaces left by a killed process are
//! swept by the next [`VethPair::new`].
//!
//! Code runs inside a namespace either on a thread that joined it
//! ([`Netns::run`]: sockets created there stay in that namespace) or as a command
//! under `ip netns exec` ([`Netns::command`]). Needs root and iproute2's `ip`.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

const PREFIX: &str = "zcns";

/// A named network namespace (`ip netns add`), removed on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace called `name` with `lo` up.
    pub fn create(name: &str) -> io::Result<Netns> {
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a thread that has joined this namespace, and returns its result.
    /// Sockets `f` creates belong to the namespace for good.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let file = File::open(format!("/run/netns/{}", self.name))?;
        std::thread::scope(|s| {
            s.spawn(move || {
                move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&file),
                    Some(LinkNameSpaceType::Network),
                )?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// A command that runs `program` inside this namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Two namespaces joined by a veth pair, removed on drop.
#[derive(Debug)]
pub struct VethPair {
    /// The first namespace; its end of the pair is `veth0`, address [`VethPair::addr_a`].
    pub a: Netns,
    /// The second namespace; its end is `veth1`, address [`VethPair::addr_b`].
    pub b: Netns,
    /// `veth0`'s address (in `a`).
    pub addr_a: Ipv4Addr,
    /// `veth1`'s address (in `b`).
    pub addr_b: Ipv4Addr,
}

impl VethPair {
    /// Creates the pair (see the crate docs). Fails without root or `ip`.
    pub fn new() -> io::Result<VethPair> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        sweep_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{pid}x{n}");
        let a = Netns::create(&format!("{base}a"))?;
        let b = Netns::create(&format!("{base}b"))?;
        // 198.18.0.0/15 holds 32768 /30s: one per pair, from pid and counter.
        let slot = (pid.wrapping_mul(64).wrapping_add(n)) % 32768;
        let net = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + slot * 4;
        let (addr_a, addr_b) = (Ipv4Addr::from(net + 1), Ipv4Addr::from(net + 2));
        ip(&[
            "link", "add", "veth0", "netns", &a.name, "type", "veth", "peer", "name", "veth1",
            "netns", &b.name,
        ])?;
        for (ns, dev, addr) in [(&a, "veth0", addr_a), (&b, "veth1", addr_b)] {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{addr}/30"),
                "dev",
                dev,
            ])?;
            ip(&["-n", &ns.name, "link", "set", dev, "up"])?;
        }
        Ok(VethPair {
            a,
            b,
            addr_a,
            addr_b,
        })
    }

    /// [`VethPair::new`] for tests: `None` after printing "skipped: needs root/netns"
    /// when namespaces can't be made here — except under `CI=true`, where that panics,
    /// since CI runs as root with iproute2 installed.
    pub fn for_test() -> Option<VethPair> {
        match VethPair::new() {
            Ok(p) => Some(p),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true but no network namespaces: {e}")
            }
            Err(e) => {
                println!("skipped: needs root/netns ({e})");
                None
            }
        }
    }
}

/// Runs `ip ARGS`, turning a failure into an error with its stderr.
fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("ip: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Removes namespaces this crate made in processes that no longer exist.
fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('x').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_pair_talks_across_the_veth_and_is_removed_on_drop() {
        let Some(pair) = VethPair::for_test() else {
            return;
        };
        let (a, b) = (pair.a.name().to_string(), pair.b.name().to_string());
        let listener = pair
            .b
            .run(|| TcpListener::bind((pair.addr_b, 0)))
            .unwrap()
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let addr_b = pair.addr_b;
        let mut s = pair
            .a
            .run(move || TcpStream::connect((addr_b, port)))
            .unwrap()
            .unwrap();
        s.write_all(b"ping").unwrap();
        let (mut c, from) = listener.accept().unwrap();
        assert_eq!(from.ip(), pair.addr_a);
        let mut got = [0u8; 4];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        // A command inside `a` sees veth0 and not the host's interfaces.
        let out = pair.a.command("ip").args(["-o", "link"]).output().unwrap();
        let links = String::from_utf8_lossy(&out.stdout);
        assert!(links.contains("veth0"), "{links}");
        assert!(!links.contains("veth1"), "{links}");
        drop((s, c, listener));
        drop(pair);
        for n in [a, b] {
            assert!(!std::path::Path::new("/run/netns").join(n).exists());
        }
    }

    #[test]
    fn pairs_get_distinct_names_and_addresses() {
        let (Some(p), Some(q)) = (VethPair::for_test(), VethPair::for_test()) else {
            return;
        };
        assert_ne!(p.a.name(), q.a.name());
        assert_ne!(p.addr_a, q.addr_a);
        for addr in [p.addr_a, p.addr_b, q.addr_a, q.addr_b] {
            assert_eq!(addr.octets()[0], 198);
            assert!(matches!(addr.octets()[1], 18 | 19));
        }
    }
}
