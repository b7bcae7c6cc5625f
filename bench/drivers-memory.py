#!/usr/bin/env python3
"""Private memory (RssAnon) of `zcopy serve` on the epoll and the io_uring driver,
side by side in alternating rounds: idle keep-alive clients, a burst of clients
connecting at once, and (optionally) bench/soak.py on each driver.

Usage: bench/drivers-memory.py ZCOPY [--rounds 3] [--clients 3000] [--soak SECONDS]
       [--soak-rounds N] [--soak-keepalive 3000] [--only idle,burst,soak] [--out FILE]
       [--drivers epoll,uring,LABEL=BINARY:DRIVER] [--lock FILE]

A driver given as LABEL=BINARY:DRIVER runs another build (a base commit's, say) on
DRIVER under the name LABEL, in the same alternating rounds. With --lock, each measure
soak runs under `flock FILE` (not overlapping other benchmarks that take it).

- idle: CLIENTS clients connect one after another, one request each (1 KiB), then stay
  open; RssAnon 2.5 s later (two sweeps), then a request on the first and the last.
- burst: CLIENTS clients connect at once, all send a request (1 KiB) before any
  response is read, then read them and stay open; RssAnon 2.5 s later.
- soak: bench/soak.py through a wrapper adding `--io DRIVER` (SECONDS, the
  keep-alive count given, 200 slow readers); the median and last RssAnon sample,
  whether it passed (no failed request, fds back to the baseline).

Each measure starts its own server (default workers) with a baseline; prints and
(with --out) writes a Markdown table of every round and the medians. Talks to
127.0.0.1 only, bounded in time, kills what it starts; python3 stdlib only.
"""
import argparse
import os
import re
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("zcopy")
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--clients", type=int, default=3000)
p.add_argument("--soak", type=float, default=0, help="soak seconds (0: no soak)")
p.add_argument("--soak-keepalive", type=int, default=3000)
p.add_argument("--soak-rounds", type=int, help="rounds that run the soak (default: all)")
p.add_argument("--only", default="idle,burst,soak")
p.add_argument("--drivers", default="epoll,uring", help="DRIVER or LABEL=BINARY:DRIVER, comma-separated")
p.add_argument("--lock", help="run each soak under flock LOCK")
p.add_argument("--args", default="", help="more serve arguments for both drivers")
p.add_argument("--out")
args = p.parse_args()
zcopy = os.path.abspath(args.zcopy)
only = args.only.split(",")
drivers = args.drivers.split(",")


def build(d):
    """The binary and the --io driver a driver entry runs."""
    if "=" not in d:
        return zcopy, d
    path, _, io = d.partition("=")[2].rpartition(":")
    return os.path.abspath(path), io


def locked(cmd):
    return ["flock", args.lock] + cmd if args.lock else cmd

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
need = 2 * args.clients + 3000
if hard != resource.RLIM_INFINITY and hard < need:
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
else:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile", "RssShmem", "VmRSS"):
                out[k] = int(v.split()[0])
    return out


REQ = b"GET /1k.bin HTTP/1.1\r\nHost: x\r\n\r\n"


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        got = s.recv(65536)
        if not got:
            raise OSError("closed before a response")
        data += got
    head, body = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"answered {head[:20]!r}")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        got = s.recv(65536)
        if not got:
            raise OSError("closed mid-body")
        body += got
    if body != BODY:
        raise OSError("body differs")


def serve(www, driver):
    binary, io = build(driver)
    cmd = [binary, "-q", "serve", www, "--listen", "127.0.0.1:0", "--io", io] + args.args.split()
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    port = int(re.search(r"http://[^ ]+:(\d+)/", server.stdout.readline()).group(1))
    return server, port


def stop(server):
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def measure(www, driver, kind):
    server, port = serve(www, driver)
    conns = []
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(REQ)
        read_response(s)
        s.close()
        time.sleep(0.5)
        base = status(server.pid)["RssAnon"]
        failed = 0
        if kind == "idle":
            for _ in range(args.clients):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(REQ)
                read_response(s)
                conns.append(s)
        else:
            conns = [socket.socket() for _ in range(args.clients)]
            sel = selectors.DefaultSelector()
            for s in conns:
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                sel.register(s, selectors.EVENT_WRITE)
            # Every request out as soon as its connection is up, none read yet.
            waiting = len(conns)
            end = time.monotonic() + 30
            while waiting and time.monotonic() < end:
                for key, _ in sel.select(timeout=1):
                    key.fileobj.send(REQ)
                    sel.unregister(key.fileobj)
                    waiting -= 1
            for s in conns:
                s.setblocking(True)
                s.settimeout(20)
                try:
                    read_response(s)
                except OSError:
                    failed += 1
        time.sleep(2.5)
        st = status(server.pid)
        fds = len(os.listdir(f"/proc/{server.pid}/fd"))
        for s in (conns[0], conns[-1]):
            try:
                s.sendall(REQ)
                read_response(s)
            except OSError:
                failed += 1
        return {"base": base, "anon": st["RssAnon"], "shmem": st["RssShmem"], "fds": fds, "failed": failed}
    finally:
        for s in conns:
            s.close()
        stop(server)


def soak(driver, tmp):
    binary, io = build(driver)
    label = driver.partition("=")[0]
    wrapper = os.path.join(tmp, f"zcopy-{label}")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec "{binary}" "$@" --io {io} {args.args}\n')
    os.chmod(wrapper, 0o755)
    out = os.path.join(tmp, f"soak-{label}")
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run(
        locked([sys.executable, os.path.join(here, "soak.py"), wrapper, "--seconds", str(args.soak),
                "--keepalive", str(args.soak_keepalive), "--out", out]),
        capture_output=True, text=True, timeout=args.soak + 200,
    )
    rows = re.findall(r"^\| (\d+) \| ([\d.]+) \|", r.stdout, re.M)
    mib = [float(v) for _, v in rows]
    checks = re.findall(r"^\| (no well-formed request failed|fds back to the baseline) \| (\w+) \| ([^|]*)\|", r.stdout, re.M)
    return {"median": statistics.median(mib) if mib else float("nan"), "last": mib[-1] if mib else float("nan"),
            "max": max(mib) if mib else float("nan"), "passed": r.returncode == 0,
            "checks": "; ".join(f"{d.strip()}" for _, _, d in checks)}


BODY = os.urandom(1024)
results = {(k, d): [] for k in only for d in drivers}
with tempfile.TemporaryDirectory(prefix="umem-") as tmp:
    www = os.path.join(tmp, "www")
    os.mkdir(www)
    with open(os.path.join(www, "1k.bin"), "wb") as f:
        f.write(BODY)
    for rnd in range(args.rounds):
        order = drivers if rnd % 2 == 0 else drivers[::-1]
        for kind in only:
            if kind == "soak" and (not args.soak or rnd >= (args.soak_rounds or args.rounds)):
                continue
            for d in order:
                r = soak(d, tmp) if kind == "soak" else measure(www, d, kind)
                results[(kind, d)].append(r)
                print(f"round {rnd + 1} {kind:5} {d.partition('=')[0]:5} {r}", flush=True)

lines = [
    f"Run: `bench/drivers-memory.py ZCOPY {' '.join(sys.argv[2:])}` on "
    f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({os.uname().release}, {os.cpu_count()} cores).",
    "",
    "| measure | driver | private memory (RssAnon) per round | median | |",
    "|---|---|---|---|---|",
]
for kind in only:
    for d in drivers:
        rs = results[(kind, d)]
        if not rs:
            continue
        if kind == "soak":
            vals = [r["median"] * 1024 for r in rs]
            per = ", ".join(f"{r['median']:.2f} (last {r['last']:.2f}, max {r['max']:.2f})" for r in rs) + " MiB"
            note = "; ".join(("pass" if r["passed"] else "FAIL") + f": {r['checks']}" for r in rs)
            lines.append(f"| soak {args.soak:.0f} s, {args.soak_keepalive} keep-alive + 200 slow readers, median sample | {d.partition('=')[0]} | {per} | {statistics.median(vals) / 1024:.2f} MiB | {note} |")
        else:
            vals = [r["anon"] for r in rs]
            per = ", ".join(f"{r['anon']:,}" for r in rs) + " KiB"
            note = f"baseline {statistics.median([r['base'] for r in rs]):,.0f} KiB; RssShmem {statistics.median([r['shmem'] for r in rs]):,.0f} KiB; failed {sum(r['failed'] for r in rs)}"
            what = f"{args.clients:,} idle keep-alive clients (one request each)" if kind == "idle" else f"burst: {args.clients:,} clients at once, then idle"
            lines.append(f"| {what} | {d.partition('=')[0]} | {per} | {statistics.median(vals):,.0f} KiB | {note} |")
text = "\n".join(lines) + "\n"
print(text)
if args.out:
    with open(args.out, "a") as f:
        f.write(text)
