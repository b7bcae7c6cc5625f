#!/usr/bin/env python3
"""Soak test of `zcopy serve` on loopback: keep-alive clients, churn, slow readers,
slowloris clients and malformed requests at once, while a probe measures latency.

Usage: bench/soak.py ZCOPY_BINARY [--seconds 600] [--keepalive 10000] [--slow 200]
       [--loris 200] [--churn 100] [--bad 20] [--out bench/results]

Every 10 s (--sample) it records the server's private RSS (RssAnon), open fds and the probe's p99. At the
end it checks: no well-formed request failed (every body byte-exact), the server's fds
back to the baseline once the clients are gone, and (runs of 3 minutes or more) RSS in
the last minute within 5 % of minute 2. Writes OUT/soak.md and OUT/soak.svg; exits 1
if a check fails. Loopback only, bounded in time, stops by itself; python3 stdlib only.
"""
import argparse
import errno
import os
import random
import re
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("zcopy")
p.add_argument("--seconds", type=float, default=600)
p.add_argument("--keepalive", type=int, default=10_000, help="keep-alive connections")
p.add_argument("--ka-interval", type=float, default=20, help="seconds between requests on each")
p.add_argument("--slow", type=int, default=200, help="slow readers of a large file")
p.add_argument("--slow-rate", type=int, default=32 * 1024, help="bytes/s each slow reader reads")
p.add_argument("--loris", type=int, default=200, help="clients sending a head byte by byte")
p.add_argument("--churn", type=float, default=100, help="connect-request-close per second")
p.add_argument("--bad", type=float, default=20, help="malformed requests per second")
p.add_argument("--probe", type=float, default=10, help="probe requests per second")
p.add_argument("--sample", type=float, default=10, help="seconds between samples")
p.add_argument("--out", default="bench/results")
args = p.parse_args()

# Raise the fd limit (the server inherits it): each client is an fd here and one in
# the server. Above the hard limit only root can go (up to fs.nr_open).
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
need = args.keepalive + args.slow + args.loris + 2000
if hard != resource.RLIM_INFINITY and hard < need:
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
    except (ValueError, OSError) as e:
        sys.exit(f"soak: needs {need} fds, the hard limit is {hard} ({e}); raise ulimit -Hn")
else:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

FILES = {"/1k.bin": 1024, "/16k.bin": 16 * 1024, "/64k.bin": 64 * 1024, "/200k.bin": 200_000}
BIG = "/8m.bin"
SMALL = list(FILES)
BAD = [
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    b"GET /1k.bin HTTP/1.1\nHost: x\n\n",
    b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /1k.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /1k.bin#f HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /1k.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n",
]


def rss_kib(pid):
    """The server's private resident memory (RssAnon: heap, buffers, stacks). VmRSS
    also counts page-cache pages of files the mmap engine has mapped (RssFile), which
    belong to the kernel's cache and are shared, not memory the server holds; with
    slow readers of a large file they reach gigabytes and say nothing about leaks."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def p99(values):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * 0.99))]


class Stats:
    def __init__(self):
        self.ok = 0  # well-formed requests answered byte-exact
        self.failed = []  # (what, why) of well-formed requests that weren't
        self.refused = 0  # malformed requests answered 4xx/5xx then closed
        self.loris_closed = 0
        self.ka_closed = 0  # idle keep-alive connections the server closed
        self.ka_retried = 0  # requests that met such a close, retried on a new connection
        self.lat = []  # probe latencies (s) in the current sample

    def fail(self, what, why):
        if len(self.failed) < 1000:
            self.failed.append((what, why))


class Client:
    """One connection: writes `req`, then checks the response against `want`."""

    def __init__(self, loop, role, path=None, req=None):
        self.loop, self.role, self.path = loop, role, path
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        if role == "slow":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        self.sock.connect_ex(("127.0.0.1", loop.port))
        self.out = req or b""
        self.buf = b""
        self.head = None
        self.got = 0
        self.started = time.monotonic()
        self.last = self.started
        self.budget = 0.0
        self.reused = False  # a response has completed on this connection
        self.loop.add(self, selectors.EVENT_WRITE if self.out else selectors.EVENT_READ)

    def request(self, path, close=False):
        self.path, self.head, self.buf, self.got = path, None, b"", 0
        self.started = self.last = time.monotonic()
        self.out = f"GET {path} HTTP/1.1\r\nHost: soak\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n".encode()
        self.loop.modify(self, selectors.EVENT_WRITE)

    def writable(self):
        try:
            n = self.sock.send(self.out)
        except BlockingIOError:
            return
        except OSError as e:
            return self.broken(f"send: {e}")
        self.out = self.out[n:]
        if not self.out:
            self.loop.modify(self, selectors.EVENT_READ)

    def readable(self):
        want = 65536
        if self.role == "slow":
            want = int(self.budget)
            if want <= 0:
                self.loop.modify(self, 0)  # paused until the next tick
                return
        try:
            data = self.sock.recv(want)
        except BlockingIOError:
            return
        except OSError as e:
            return self.broken(f"recv: {e}")
        if not data:
            return self.eof()
        self.last = time.monotonic()
        if self.role == "slow":
            self.budget -= len(data)
        if self.role in ("bad", "loris"):
            self.buf += data[: 64 - len(self.buf)] if len(self.buf) < 64 else b""
            return
        if self.head is None:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head, data, self.buf = self.buf[:end], self.buf[end + 4 :], b""
            if not self.head.startswith(b"HTTP/1.1 200 "):
                return self.done(f"status {self.head[:12]!r}")
        self.check(data)

    def check(self, data):
        size = self.loop.sizes[self.path]
        body = self.loop.bodies[self.path]
        if body[self.got : self.got + len(data)] != data or self.got + len(data) > size:
            return self.done(f"body differs at byte {self.got}")
        self.got += len(data)
        if self.got == size:
            self.done(None)

    def done(self, why):
        stats = self.loop.stats
        if why:
            stats.fail(f"{self.role} GET {self.path}", why)
            return self.close()
        stats.ok += 1
        self.reused = True
        if self.role == "probe":
            stats.lat.append(time.monotonic() - self.started)
            self.close()
        elif self.role == "ka":
            self.path = None
            self.loop.modify(self, selectors.EVENT_READ)  # idle, watching for a close
            self.next_at = time.monotonic() + args.ka_interval * random.uniform(0.5, 1.5)
        elif self.role == "slow":
            self.request(BIG)
        else:
            self.close()

    def raced(self):
        """A request sent on a kept-alive connection just as the server closed it
        (nothing of the response arrived): like any HTTP client, retry it once on a
        new connection (RFC 9112 §9.3.1)."""
        if self.role == "ka" and self.path and self.reused and self.head is None and not self.buf:
            self.loop.stats.ka_retried += 1
            Client(self.loop, "ka").request(self.path)
            self.close()
            return True
        return False

    def eof(self):
        if self.raced():
            return
        if self.role == "bad":
            if self.refused():
                self.loop.stats.refused += 1
            else:
                self.loop.stats.fail("malformed request", f"answered {self.buf[:20]!r}")
        elif self.role == "loris":
            self.loop.stats.loris_closed += 1
        elif self.role == "ka" and self.path is None:
            self.loop.stats.ka_closed += 1  # the server may close an idle connection
        else:
            return self.broken("connection closed mid-response")
        self.close()

    def broken(self, why):
        if self.raced():
            return
        if self.role == "ka" and self.path is None:
            self.loop.stats.ka_closed += 1
        elif self.role == "loris":
            self.loop.stats.loris_closed += 1
        elif self.role == "bad":
            # A reset after the refusal is fine (the request's rest was never read).
            if self.refused():
                self.loop.stats.refused += 1
            else:
                self.loop.stats.fail("malformed request", why)
        else:
            self.loop.stats.fail(f"{self.role} GET {self.path}", why)
        self.close()

    def refused(self):
        return self.buf.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5"))

    def close(self):
        self.loop.remove(self)
        self.sock.close()


class Loop:
    def __init__(self, port, bodies):
        self.port, self.bodies = port, bodies
        self.sizes = {k: len(v) for k, v in bodies.items()}
        self.sel = selectors.DefaultSelector()
        self.clients = set()
        self.count = {}  # clients per role
        self.stats = Stats()

    def add(self, c, ev):
        self.clients.add(c)
        self.count[c.role] = self.count.get(c.role, 0) + 1
        c.ev = ev
        self.sel.register(c.sock, ev, c)

    def modify(self, c, ev):
        if c.ev == ev:
            return
        if c.ev:
            self.sel.unregister(c.sock)
        if ev:
            self.sel.register(c.sock, ev, c)
        c.ev = ev

    def remove(self, c):
        if c in self.clients:
            self.clients.discard(c)
            self.count[c.role] -= 1
            if c.ev:
                self.sel.unregister(c.sock)
            c.ev = 0

    def run_for(self, seconds, tick):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for key, ev in self.sel.select(timeout=0.05):
                c = key.data
                if ev & selectors.EVENT_WRITE:
                    c.writable()
                if ev & selectors.EVENT_READ and c in self.clients:
                    c.readable()
            tick()


def main():
    bodies = {path: os.urandom(size) for path, size in FILES.items()}
    bodies[BIG] = os.urandom(8 << 20)
    www = tempfile.mkdtemp(prefix="zcopy-soak-")
    for path, body in bodies.items():
        with open(www + path, "wb") as f:
            f.write(body)
    server = subprocess.Popen(
        [args.zcopy, "-q", "serve", www, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        return soak(server, bodies)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        for path in bodies:
            os.unlink(www + path)
        os.rmdir(www)


def soak(server, bodies):
    port = int(re.search(r"http://[^ ]+:(\d+)/", server.stdout.readline()).group(1))
    loop = Loop(port, bodies)
    stats = loop.stats
    # Warm up (every file, a few times, so the workers' caches are as they will be).
    for _ in range(4):
        for path in bodies:
            Client(loop, "probe", path, f"GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".encode())
    loop.run_for(3, lambda: None)
    time.sleep(1.5)
    base_fds, base_rss = fds(server.pid), rss_kib(server.pid)
    warm_failed = stats.failed
    loop.stats = stats = Stats()
    stats.failed = warm_failed

    samples = []
    t0 = time.monotonic()
    state = {"next_sample": t0 + args.sample, "churn": 0.0, "bad": 0.0, "probe": 0.0, "prev": t0, "scan": t0}

    def tick():
        now = time.monotonic()
        dt, state["prev"] = now - state["prev"], now
        if now - t0 > args.seconds:
            return
        # Top the populations up (ramping: at most 500 new keep-alive per tick).
        counts = loop.count
        for _ in range(min(500, args.keepalive - counts.get("ka", 0))):
            Client(loop, "ka").request(random.choice(SMALL))  # a client connects to ask
        for _ in range(args.slow - counts.get("slow", 0)):
            c = Client(loop, "slow")
            c.request(BIG)
        for _ in range(args.loris - counts.get("loris", 0)):
            Client(loop, "loris", req=b"GET /1k.bin HTTP/1.1\r\n")
        for key, rate in (("churn", args.churn), ("bad", args.bad), ("probe", args.probe)):
            state[key] += rate * dt
            while state[key] >= 1:
                state[key] -= 1
                if key == "bad":
                    Client(loop, "bad", req=random.choice(BAD))
                else:
                    path = random.choice(SMALL)
                    Client(loop, key, path, f"GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".encode())
        # Per-client work, four times a second (a pass over 10,000 clients is not free).
        scan_dt = now - state["scan"]
        if scan_dt < 0.25:
            return sample(now)
        state["scan"] = now
        for c in list(loop.clients):
            if c.role == "ka" and c.path is None and now >= c.next_at and c.ev == selectors.EVENT_READ:
                c.request(random.choice(SMALL))
            elif c.role == "slow":
                c.budget = min(c.budget + args.slow_rate * scan_dt, 65536)
                if c.ev == 0 and c.budget >= 1:
                    loop.modify(c, selectors.EVENT_READ)
            elif c.role == "loris" and now - c.last >= 2 and not c.out:
                c.last = now
                c.out = b"X"  # one more header byte
                loop.modify(c, selectors.EVENT_WRITE)
            if c.role in ("ka", "churn", "probe", "slow") and c.path and now - c.last > 60:
                c.broken("no progress for 60 s")
        sample(now)

    def sample(now):
        if now >= state["next_sample"]:
            state["next_sample"] += args.sample
            samples.append((now - t0, rss_kib(server.pid), fds(server.pid), p99(stats.lat) * 1000,
                            stats.ok, len(stats.failed), stats.refused, stats.loris_closed,
                            loop.count.get("ka", 0)))
            stats.lat = []
            s = samples[-1]
            print(f"t={s[0]:5.0f}s rss={s[1]/1024:6.1f}MiB fds={s[2]:6d} p99={s[3]:7.2f}ms ok={s[4]} "
                  f"failed={s[5]} refused={s[6]} loris_closed={s[7]} ka_open={s[8]}", flush=True)

    loop.run_for(args.seconds, tick)
    # Stop: let requests in flight finish (bounded), then close every client.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(c.path and c.role != "slow" for c in loop.clients):
        loop.run_for(0.5, lambda: None)
    for c in list(loop.clients):
        c.close()
    after = fds(server.pid)
    for _ in range(40):  # the server notices the closes and drops its caches' files
        if after <= base_fds:
            break
        time.sleep(0.5)
        after = fds(server.pid)
    return report(samples, stats, base_fds, base_rss, after)


def report(samples, stats, base_fds, base_rss, after):
    checks = [("no well-formed request failed", not stats.failed, f"{stats.ok} ok, {len(stats.failed)} failed"),
              ("fds back to the baseline", after <= base_fds, f"{base_fds} before, {after} after")]
    m2 = [s[1] for s in samples if 60 <= s[0] < 120]
    last = [s[1] for s in samples if s[0] >= args.seconds - 60]
    if args.seconds >= 180 and m2 and last:
        a, b = sum(m2) / len(m2), sum(last) / len(last)
        checks.append(("RSS in the last minute within 5 % of minute 2", abs(b - a) <= 0.05 * a,
                       f"{a / 1024:.1f} MiB → {b / 1024:.1f} MiB ({(b - a) / a * 100:+.1f} %)"))
    passed = all(ok for _, ok, _ in checks)
    cmd = " ".join(["bench/soak.py", "ZCOPY"] + sys.argv[2:])
    lines = [
        f"# Soak: zcopy serve under mixed load ({os.uname().release}, {os.cpu_count()} cores)",
        "",
        f"Run: `{cmd}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.seconds:.0f} s, "
        f"{args.keepalive} keep-alive connections (a request every ~{args.ka_interval:.0f} s each), "
        f"{args.churn:g}/s connect-request-close, {args.slow} slow readers of 8 MiB at {args.slow_rate // 1024} KiB/s, "
        f"{args.loris} slowloris clients, {args.bad:g}/s malformed requests, a probe at {args.probe:g}/s.",
        "",
        f"**{'PASS' if passed else 'FAIL'}**",
        "",
        "| check | result | |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {'pass' if ok else 'FAIL'} | {detail} |" for name, ok, detail in checks]
    lines += [
        "",
        f"Malformed requests refused: {stats.refused}; slowloris connections closed by the server: "
        f"{stats.loris_closed}; idle keep-alive connections closed by the server: {stats.ka_closed} "
        f"({stats.ka_retried} requests met the close and were retried on a new connection); "
        f"baseline RSS {base_rss / 1024:.1f} MiB.",
        "",
        "![RSS, fds and p99 over time](soak.svg)",
        "",
        "| t (s) | private RSS (MiB) | server fds | probe p99 (ms) | good requests ok | failed | malformed refused | loris closed | keep-alive open |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {s[0]:.0f} | {s[1] / 1024:.2f} | {s[2]} | {s[3]:.2f} | {s[4]} | {s[5]} | {s[6]} | {s[7]} | {s[8]} |" for s in samples]
    if stats.failed:
        lines += ["", "First failures:", ""] + [f"- {w}: {y}" for w, y in stats.failed[:20]]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "soak.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "soak.svg"), "w") as f:
        f.write(svg(samples))
    return 0 if passed else 1


def svg(samples):
    """Three stacked line charts (RSS, fds, p99) over time, plain SVG."""
    w, h, pad = 720, 150, 50
    series = [("RSS (MiB)", [s[1] / 1024 for s in samples], "#1f77b4"),
              ("server fds", [s[2] for s in samples], "#2ca02c"),
              ("probe p99 (ms)", [s[3] for s in samples], "#d62728")]
    xs = [s[0] for s in samples] or [0]
    xmax = max(xs) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{3 * h + 20}" font-family="sans-serif" font-size="11">']
    for i, (name, ys, color) in enumerate(series):
        top = i * h + 10
        ys = [y if y == y else 0 for y in ys]  # NaN → 0
        ymax = max(ys + [1e-9]) * 1.1
        out.append(f'<text x="{pad}" y="{top + 10}">{name} (max {max(ys + [0]):.1f})</text>')
        out.append(f'<line x1="{pad}" y1="{top + h - 20}" x2="{w - 10}" y2="{top + h - 20}" stroke="#999"/>')
        out.append(f'<text x="{pad - 5}" y="{top + 20}" text-anchor="end">{ymax:.0f}</text>')
        out.append(f'<text x="{pad - 5}" y="{top + h - 20}" text-anchor="end">0</text>')
        pts = " ".join(f"{pad + x / xmax * (w - pad - 10):.1f},{top + h - 20 - y / ymax * (h - 40):.1f}" for x, y in zip(xs, ys))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        out.append(f'<text x="{w - 10}" y="{top + h - 5}" text-anchor="end">{xmax:.0f} s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
