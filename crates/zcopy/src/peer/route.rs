//! Two rtnetlink questions, asked of the kernel of the calling thread's network
//! namespace: "how would a packet to this address leave?" (`RTM_GETROUTE`) and "what
//! is this interface?" (`RTM_GETLINK`). Plain byte building and parsing over a
//! `NETLINK_ROUTE` socket — <https://man7.org/linux/man-pages/man7/rtnetlink.7.html>.

use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 1;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const IFLA_IFNAME: u16 = 3;
/// Nested link information; its `IFLA_INFO_KIND` names the driver (`veth`, ...).
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
/// The name of the device's parent (`dev->dev.parent`): present exactly when
/// `/sys/class/net/DEV/device` exists, i.e. the interface is backed by a bus device.
const IFLA_PARENT_DEV_NAME: u16 = 56;
const NLMSG_HDR: usize = 16;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// `rtm_type` of a route.
pub const RTN_LOCAL: u8 = 2;

/// The kernel's answer to a route lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// `rtm_type` (`RTN_UNICAST`, `RTN_LOCAL`, ...).
    pub kind: u8,
    /// Output interface index, if the route has one.
    pub oif: Option<u32>,
}

/// What the kernel says about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface name.
    pub name: String,
    /// Whether a bus device backs it (it has a parent device).
    pub has_device: bool,
    /// The link's kind (`IFLA_INFO_KIND`: `veth`, `bridge`, ...); empty when the
    /// kernel names none (hardware, loopback).
    pub kind: String,
}

fn open() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None, // NETLINK_ROUTE
    )?)
}

/// Sends one request (`body` after the header) and returns the payload of the reply
/// of type `want`, or the error the kernel answered with.
fn ask(msg_type: u16, body: &[u8], want: u16) -> io::Result<Vec<u8>> {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let sock = open()?;
    let mut req = Vec::with_capacity(NLMSG_HDR + body.len());
    req.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
    req.extend_from_slice(&msg_type.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // to the kernel
    req.extend_from_slice(body);
    rustix::net::send(&sock, &req, SendFlags::empty())?;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (n, full) = rustix::net::recv(&sock, &mut buf[..], RecvFlags::empty())?;
        if full > n {
            return Err(io::Error::other("netlink reply truncated"));
        }
        let mut at = 0;
        while at + NLMSG_HDR <= n {
            let len = u32_at(&buf, at) as usize;
            if len < NLMSG_HDR || at + len > n {
                return Err(io::Error::other("malformed netlink reply"));
            }
            let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            let msg_seq = u32_at(&buf, at + 8);
            let payload = &buf[at + NLMSG_HDR..at + len];
            if msg_seq == seq {
                if ty == NLMSG_ERROR {
                    let errno = payload
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                    return Err(if errno < 0 {
                        io::Error::from_raw_os_error(-errno)
                    } else {
                        io::Error::other("netlink: empty answer")
                    });
                }
                if ty == want {
                    return Ok(payload.to_vec());
                }
            }
            at += align4(len);
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes (`rtattr`: length, type, value) in `b`.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff; // without NLA_F_* flags
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = &b[align4(len).min(b.len())..];
        Some((ty, value))
    })
}

fn push_attr(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(out.len()), 0);
}

/// `RTM_GETROUTE` for `dst`, as `ip route get DST` asks it.
pub fn route(dst: IpAddr) -> io::Result<Route> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; flags.
    let (family, bits, addr) = match dst {
        IpAddr::V4(a) => (AF_INET, 32, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, 128, a.octets().to_vec()),
    };
    let mut body = vec![family, bits, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    push_attr(&mut body, RTA_DST, &addr);
    let reply = ask(RTM_GETROUTE, &body, RTM_NEWROUTE)?;
    if reply.len() < 12 {
        return Err(io::Error::other("short RTM_NEWROUTE"));
    }
    let oif = attrs(&reply[12..])
        .find(|&(ty, v)| ty == RTA_OIF && v.len() == 4)
        .map(|(_, v)| u32::from_ne_bytes(v.try_into().expect("4 bytes")));
    Ok(Route {
        kind: reply[7],
        oif,
    })
}

/// `RTM_GETLINK` for interface `index`.
pub fn link(index: u32) -> io::Result<Link> {
    // struct ifinfomsg: family, pad, type (u16), index (i32), flags, change (u32).
    let mut body = vec![0u8; 16];
    body[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    let reply = ask(RTM_GETLINK, &body, RTM_NEWLINK)?;
    if reply.len() < 16 {
        return Err(io::Error::other("short RTM_NEWLINK"));
    }
    let mut link = Link {
        name: format!("if{index}"),
        has_device: false,
        kind: String::new(),
    };
    for (ty, v) in attrs(&reply[16..]) {
        match ty {
            IFLA_IFNAME => {
                let v = v.split(|&c| c == 0).next().unwrap_or_default();
                link.name = String::from_utf8_lossy(v).into_owned();
            }
            IFLA_PARENT_DEV_NAME => link.has_device = true,
            IFLA_LINKINFO => {
                if let Some((_, k)) = attrs(v).find(|&(t, _)| t == IFLA_INFO_KIND) {
                    let k = k.split(|&c| c == 0).next().unwrap_or_default();
                    link.kind = String::from_utf8_lossy(k).into_owned();
                }
            }
            _ => {}
        }
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_and_stop_at_garbage() {
        let mut b = Vec::new();
        push_attr(&mut b, RTA_OIF, &7u32.to_ne_bytes());
        push_attr(&mut b, IFLA_IFNAME, b"lo\0");
        b.extend_from_slice(&[200, 0]); // a truncated header
        let got: Vec<_> = attrs(&b).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (RTA_OIF, &7u32.to_ne_bytes()[..]));
        assert_eq!(got[1], (IFLA_IFNAME, &b"lo\0"[..]));
    }

    #[test]
    fn the_loopback_address_routes_locally_through_lo() {
        let r = route("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(r.kind, RTN_LOCAL);
        let l = link(r.oif.expect("an output interface")).unwrap();
        assert_eq!(l.name, "lo");
        assert!(!l.has_device);
    }
}
