"""Shared machinery for the HTTP/2 attack scripts in this directory.

Each attack script builds raw HTTP/2 frames (the `h2` state machine refuses to send
most of what an attacker sends), runs one attack bounded in count and time against
HOST:PORT (h2c with prior knowledge, or TLS with ALPN h2), then checks that

  * a good client (a fresh connection, the PyPI `h2` state machine, GET /) is answered
    within --good-timeout seconds, once while the attack runs and once after it, and
  * the server's RSS (--pid: that process and its descendants, from /proc) grew by at
    most --rss-mib MiB over the attack (peak sampled every 50 ms).

It reports how the server reacted (GOAWAY code, RST_STREAM codes, connection closed or
reset, send blocked by backpressure) and prints one JSON line last, which run.py reads.
Exit status: 0 PASS, 1 FAIL, 2 ERROR (the attack could not run).

Needs the PyPI `h2` package (`pip install h2`, or Debian `python3-h2`); it brings `hpack`.
"""

import argparse
import json
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
from collections import Counter

import h2.config
import h2.connection
import h2.events
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FRAME_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY",
               "WINDOW_UPDATE", "CONTINUATION"]
# Flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# Settings
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)
SETTING_NAMES = {1: "HEADER_TABLE_SIZE", 2: "ENABLE_PUSH", 3: "MAX_CONCURRENT_STREAMS", 4: "INITIAL_WINDOW_SIZE",
                 5: "MAX_FRAME_SIZE", 6: "MAX_HEADER_LIST_SIZE", 8: "ENABLE_CONNECT_PROTOCOL",
                 9: "NO_RFC7540_PRIORITIES"}
# Error codes
ERROR_NAMES = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
               "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
               "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]
CANCEL = 8


def error_name(code):
    return ERROR_NAMES[code] if code < len(ERROR_NAMES) else "0x%x" % code


# ---------------------------------------------------------------- frames, HPACK

def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid & 0x7FFFFFFF) + payload


def settings(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def window_update(sid, increment):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", increment & 0x7FFFFFFF))


def rst_stream(sid, code=CANCEL):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def ping(data=b"\0" * 8, ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def goaway(last_sid=0, code=0):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_sid, code))


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    if isinstance(s, str):
        s = s.encode()
    return hpack_int(len(s), 7) + s


# Static table indexes used below.
STATIC = {":authority": 1, ":method": 2, ":path": 4, ":scheme": 6}


def lit(name, value, indexing=False):
    """One header field as a literal; without indexing (the dynamic table is never
    touched, so the bytes can be sent again and again) unless `indexing`."""
    idx = STATIC.get(name)
    if indexing:
        return (hpack_int(idx, 6, 0x40) if idx else b"\x40" + hpack_str(name)) + hpack_str(value)
    return (hpack_int(idx, 4, 0x00) if idx else b"\x00" + hpack_str(name)) + hpack_str(value)


def request_block(authority, path="/", method="GET", scheme="http", extra=()):
    """A header block for a request that never touches the dynamic table."""
    b = b"\x82" if method == "GET" else lit(":method", method)  # 2 = :method GET
    b += b"\x87" if scheme == "https" else b"\x86"  # 7 = :scheme https, 6 = http
    b += b"\x84" if path == "/" else lit(":path", path)  # 4 = :path /
    b += lit(":authority", authority)
    for name, value in extra:
        b += lit(name, value)
    return b


# ---------------------------------------------------------------- /proc

def tree_pids(pid):
    """pid and its descendants (nginx: the master and its workers)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kib(pid):
    total = 0
    for p in tree_pids(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid):
    hz = os.sysconf("SC_CLK_TCK")
    t = 0
    for p in tree_pids(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            t += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return t / hz


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_kib(pid) if pid else 0
        self.stop = threading.Event()

    def run(self):
        while self.pid and not self.stop.wait(0.05):
            self.peak = max(self.peak, rss_kib(self.pid))


# ---------------------------------------------------------------- connections

def open_socket(args, rcvbuf=None, alpn=("h2",)):
    s = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(args.good_timeout)
    s.connect((args.host, args.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if args.tls:
        ctx = ssl.create_default_context(cafile=args.ca) if args.ca else ssl._create_unverified_context()
        if not args.ca:
            ctx.check_hostname = False
        ctx.set_alpn_protocols(list(alpn))
        s = ctx.wrap_socket(s, server_hostname=args.sni or args.host)
        if s.selected_alpn_protocol() != "h2":
            raise RuntimeError("ALPN selected %r, not h2" % s.selected_alpn_protocol())
    return s


class Conn:
    """A raw HTTP/2 client connection, single-threaded (TLS sockets are not safe to
    read and write from two threads): every send also reads what the server sent,
    unless reading is paused, and parses it into counters."""

    def __init__(self, args, our_settings=(), rcvbuf=None, conn_window=None, preface=True):
        self.args = args
        self.sock = open_socket(args, rcvbuf)
        self.sock.setblocking(False)
        self.t0 = time.monotonic()
        self.buf = b""
        self.closed = None  # "EOF" / "RST" / error text once the server is gone
        self.closed_at = None
        self.goaway = []  # (last_sid, code name, debug)
        self.rst = Counter()  # code name -> count
        self.rst_sids = set()
        self.frames_in = Counter()
        self.statuses = Counter()
        self.ended = set()  # streams the server ended (END_STREAM)
        self.headers_seen = set()
        self.data_bytes = 0
        self.conn_credit = 0  # WINDOW_UPDATE increments on stream 0 from the server
        self.server_settings = {}
        self.settings_acks = 0
        self.ping_acks = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.blocked = False  # a send could not proceed for the whole deadline
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 1 << 16
        self.hblock = None
        self.auto_ack = True
        self.acks = b""  # SETTINGS ACKs owed, sent at the next frame boundary
        if preface:
            out = PREFACE + settings(our_settings)
            if conn_window:
                out += window_update(0, conn_window)
            self.send(out, read=False)

    # -- output
    def send(self, data, read=True, timeout=None):
        """Writes all of data unless the server is gone or the write is blocked for
        `timeout` seconds (then self.blocked). Returns True if everything went out."""
        if self.closed:
            return False
        if self.acks:
            data, self.acks = self.acks + data, b""
        view = memoryview(data)
        deadline = time.monotonic() + (self.args.good_timeout if timeout is None else timeout)
        while view:
            r = [self.sock] if read else []
            if read and isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                self._read()
            left = deadline - time.monotonic()
            if left <= 0:
                self.blocked = True
                return False
            rr, ww, _ = select.select(r, [self.sock], [], left)
            if rr:
                self._read()
                if self.closed:
                    return False
            if ww:
                try:
                    n = self.sock.send(view)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    continue
                except OSError as e:
                    self._close(type(e).__name__)
                    return False
                self.bytes_out += n
                view = view[n:]
        return True

    # -- input
    def pump(self, seconds, until=None):
        """Reads for up to `seconds`, or until until(self) holds or the server is gone."""
        deadline = time.monotonic() + seconds
        while not self.closed:
            if self.acks:
                self.send(b"", timeout=0.5)
            if until and until(self):
                return True
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                self._read()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            rr, _, _ = select.select([self.sock], [], [], min(left, 0.1))
            if rr:
                self._read()
        return bool(until and until(self))

    def _close(self, how):
        if not self.closed:
            self.closed = how
            self.closed_at = time.monotonic() - self.t0

    def _read(self):
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except ConnectionResetError:
                self._close("RST")
                return
            except OSError as e:
                self._close(type(e).__name__)
                return
            if not chunk:
                self._close("EOF")
                return
            self.bytes_in += len(chunk)
            self.buf += chunk
            self._parse()
            if len(chunk) < (1 << 16) and not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                return

    def _parse(self):
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + n:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            p = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            self.frames_in[FRAME_NAMES[ftype] if ftype < len(FRAME_NAMES) else "0x%x" % ftype] += 1
            if ftype == GOAWAY and len(p) >= 8:
                last, code = struct.unpack(">II", p[:8])
                self.goaway.append((last & 0x7FFFFFFF, error_name(code), p[8:80].decode("latin-1")))
            elif ftype == RST_STREAM and len(p) >= 4:
                self.rst[error_name(struct.unpack(">I", p[:4])[0])] += 1
                self.rst_sids.add(sid)
            elif ftype == SETTINGS:
                if flags & ACK:
                    self.settings_acks += 1
                else:
                    for i in range(0, len(p) - 5, 6):
                        k, v = struct.unpack(">HI", p[i:i + 6])
                        self.server_settings[SETTING_NAMES.get(k, str(k))] = v
                    if self.auto_ack:
                        self.acks += settings(ack=True)
            elif ftype == PING and flags & ACK:
                self.ping_acks += 1
            elif ftype == WINDOW_UPDATE and sid == 0 and len(p) >= 4:
                self.conn_credit += struct.unpack(">I", p[:4])[0] & 0x7FFFFFFF
            elif ftype == DATA:
                self.data_bytes += n
                if flags & END_STREAM:
                    self.ended.add(sid)
            elif ftype in (HEADERS, CONTINUATION):
                if ftype == HEADERS:
                    pad = p[0] if flags & PADDED else 0
                    off = (1 if flags & PADDED else 0) + (5 if flags & PRIORITY_FLAG else 0)
                    self.hblock = (sid, flags, p[off:len(p) - pad])
                elif self.hblock:
                    self.hblock = (self.hblock[0], self.hblock[1], self.hblock[2] + p)
                if flags & END_HEADERS and self.hblock:
                    hsid, hflags, block = self.hblock
                    self.hblock = None
                    try:
                        for k, v in self.decoder.decode(block, raw=True):
                            if k == b":status":
                                self.statuses[v.decode()] += 1
                                self.headers_seen.add(hsid)
                    except Exception as e:  # noqa: BLE001 - report, don't die
                        self.statuses["hpack-error:%s" % type(e).__name__] += 1
                    if hflags & END_STREAM:
                        self.ended.add(hsid)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reaction(self):
        parts = []
        if self.goaway:
            g = self.goaway[0]
            parts.append("GOAWAY %s last=%d%s" % (g[1], g[0], (" '%s'" % g[2]) if g[2] else ""))
        if self.rst:
            parts.append("RST " + " ".join("%s×%d" % kv for kv in sorted(self.rst.items())))
        if self.closed:
            parts.append("closed(%s) at %.2fs" % (self.closed, self.closed_at))
        if self.blocked:
            parts.append("send blocked (backpressure)")
        if self.statuses:
            parts.append("statuses " + " ".join("%s×%d" % kv for kv in sorted(self.statuses.items())))
        return ", ".join(parts) or "no reaction"


# ---------------------------------------------------------------- the good client

def good_client(args, path="/"):
    """A fresh connection, the `h2` state machine, GET path; returns a dict with
    ok, status, seconds, bytes, error."""
    t0 = time.monotonic()
    res = {"ok": False, "status": None, "seconds": None, "bytes": 0, "error": None}
    s = None
    try:
        s = open_socket(args)
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True,
                                                                           header_encoding="utf-8"))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "https" if args.tls else "http"),
                                (":path", path), (":authority", authority(args))], end_stream=True)
        s.sendall(conn.data_to_send())
        deadline = t0 + args.good_timeout
        done = False
        while not done:
            left = deadline - time.monotonic()
            if left <= 0:
                res["error"] = "timeout"
                break
            s.settimeout(left)
            data = s.recv(1 << 16)
            if not data:
                res["error"] = "closed before the response ended"
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    res["status"] = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    res["bytes"] += len(ev.data)
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    done = True
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    res["error"] = "stream reset %s" % error_name(ev.error_code)
                    done = True
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    res["error"] = "GOAWAY %s" % error_name(ev.error_code)
                    done = True
            out = conn.data_to_send()
            if out:
                s.sendall(out)
    except socket.timeout:
        res["error"] = "timeout"
    except Exception as e:  # noqa: BLE001
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        if s:
            try:
                s.close()
            except OSError:
                pass
    res["seconds"] = round(time.monotonic() - t0, 3)
    res["ok"] = res["error"] is None and res["status"] is not None and res["status"] < 500
    return res


def authority(args):
    return args.authority or ("%s:%d" % (("[%s]" % args.host) if ":" in args.host else args.host, args.port))


def scheme(args):
    return "https" if args.tls else "http"


# ---------------------------------------------------------------- the driver

def parser(description, count_default, seconds_default=5.0):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true", help="TLS with ALPN h2 (default: h2c with prior knowledge)")
    p.add_argument("--ca", help="CA file to verify the server (default with --tls: no verification)")
    p.add_argument("--sni", help="server name for SNI/verification (default: --host)")
    p.add_argument("--authority", help=":authority (default HOST:PORT)")
    p.add_argument("--pid", type=int, help="server pid: its RSS (with descendants) is bounded")
    p.add_argument("--seconds", type=float, default=seconds_default, help="attack time bound")
    p.add_argument("--count", type=int, default=count_default, help="attack count bound")
    p.add_argument("--good-timeout", type=float, default=5.0, help="bound on the good client (s)")
    p.add_argument("--rss-mib", type=float, default=64.0, help="bound on the server's RSS growth (MiB)")
    p.add_argument("--big", default="/big.bin", help="path of a large file (≥ 16 MiB) on the server")
    p.add_argument("--no-during", action="store_true", help="no good client while the attack runs")
    return p


def run(name, description, attack, count_default, seconds_default=5.0, extra_args=None):
    """Parses the arguments, runs attack(args, ctx) -> dict of figures (with a
    'reaction' string), checks the good client during and after, and the RSS."""
    p = parser(description, count_default, seconds_default)
    if extra_args:
        extra_args(p)
    args = p.parse_args()
    result = {"attack": name, "verdict": "ERROR"}
    sampler = RssSampler(args.pid)
    rss0 = rss_kib(args.pid) if args.pid else None
    cpu0 = cpu_seconds(args.pid) if args.pid else None
    pre = good_client(args)
    if not pre["ok"]:
        result["error"] = "the good client failed before the attack: %s" % pre
        return finish(result)
    during = {}
    stop = threading.Event()

    def during_client():
        if not stop.wait(min(0.2, args.seconds / 4)):
            during.update(good_client(args))

    th = threading.Thread(target=during_client, daemon=True)
    sampler.start()
    if not args.no_during:
        th.start()
    t0 = time.monotonic()
    try:
        figures = attack(args)
    except Exception as e:  # noqa: BLE001
        result["error"] = "attack failed: %s: %s" % (type(e).__name__, e)
        stop.set()
        sampler.stop.set()
        return finish(result)
    result["attack_seconds"] = round(time.monotonic() - t0, 2)
    stop.set()
    if th.is_alive() or th.ident:
        th.join(args.good_timeout + 1)
    after = good_client(args)
    sampler.stop.set()
    sampler.join(1)
    result.update(figures)
    result["good_during"] = during or None
    result["good_after"] = after
    if args.pid:
        result["rss_kib_before"] = rss0
        result["rss_kib_peak"] = sampler.peak
        result["rss_kib_after"] = rss_kib(args.pid)
        result["server_cpu_s"] = round(cpu_seconds(args.pid) - cpu0, 2)
    fails = []
    if not after["ok"]:
        fails.append("good client after: %s" % (after["error"] or after["status"]))
    if during and not during.get("ok"):
        fails.append("good client during: %s" % (during.get("error") or during.get("status")))
    if figures.get("fail"):
        fails.append(figures["fail"])
    if args.pid and (sampler.peak - rss0) > args.rss_mib * 1024:
        fails.append("RSS grew %.1f MiB > %.0f MiB" % ((sampler.peak - rss0) / 1024, args.rss_mib))
    result["verdict"] = "FAIL" if fails else "PASS"
    if fails:
        result["why"] = "; ".join(fails)
    return finish(result)


def finish(result):
    r = result
    print("%s: %s" % (r["attack"], r["verdict"]), file=sys.stderr)
    for k in ("error", "why", "sent", "reaction"):
        if r.get(k):
            print("  %s: %s" % (k, r[k]), file=sys.stderr)
    print(json.dumps(r))
    sys.exit({"PASS": 0, "FAIL": 1}.get(r["verdict"], 2))


def until_deadline(args):
    return time.monotonic() + args.seconds


class Agg:
    """Reactions summed over the connections an attack used."""

    def __init__(self):
        self.conns = 0
        self.goaway = Counter()
        self.rst = Counter()
        self.closed = Counter()
        self.statuses = Counter()
        self.blocked = 0
        self.settings = {}
        self.first_close_at = []

    def add(self, c):
        self.conns += 1
        for g in c.goaway[:1]:
            self.goaway[g[1]] += 1
        self.rst.update(c.rst)
        self.statuses.update(c.statuses)
        if c.closed:
            self.closed[c.closed] += 1
            self.first_close_at.append(c.closed_at)
        self.blocked += c.blocked
        self.settings = self.settings or c.server_settings

    def reaction(self):
        parts = ["%d conn" % self.conns]
        if self.goaway:
            parts.append("GOAWAY " + " ".join("%s×%d" % kv for kv in sorted(self.goaway.items())))
        if self.rst:
            parts.append("RST " + " ".join("%s×%d" % kv for kv in sorted(self.rst.items())))
        if self.closed:
            parts.append("closed " + " ".join("%s×%d" % kv for kv in sorted(self.closed.items()))
                         + " (first at %.2fs)" % min(self.first_close_at))
        if self.blocked:
            parts.append("send blocked (backpressure) on %d" % self.blocked)
        if self.statuses:
            parts.append("statuses " + " ".join("%s×%d" % kv for kv in sorted(self.statuses.items())))
        return ", ".join(parts)


def wait_settings(c, seconds=1.0):
    """Reads until the server's SETTINGS arrived."""
    c.pump(seconds, until=lambda c: c.server_settings or c.frames_in["SETTINGS"])
    return c.server_settings
