#!/usr/bin/env python3
"""10,000 idle keep-alive connections against `zcopy serve`: the server's memory
(VmRSS) with them open, and whether another client is still served (and how fast).

Usage: bench/idle.py ZCOPY_BINARY [CONNECTIONS]. Talks to 127.0.0.1 only, bounded in
count and time. Prints a Markdown table and writes bench/results/idle.md.
"""
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time

zcopy = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if hard < count + 100:
    sys.exit(f"need {count + 100} fds, the hard limit is {hard}")

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def get(port, path="/1k.bin", sock=None):
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(body) < length:
        body += s.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s, body

with tempfile.TemporaryDirectory() as www:
    with open(os.path.join(www, "1k.bin"), "wb") as f:
        f.write(os.urandom(1024))
    server = subprocess.Popen([zcopy, "-q", "serve", www, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"http://[^ ]+:(\d+)/", server.stdout.readline()).group(1))
        get(port)
        rss0 = rss_kib(server.pid)
        conns = []
        t0 = time.time()
        for i in range(count):
            s, _ = get(port)  # one request each, then idle on keep-alive
            conns.append(s)
        opened = time.time() - t0
        time.sleep(1)
        rss1 = rss_kib(server.pid)
        t1 = time.time()
        _, body = get(port)
        fresh_ms = (time.time() - t1) * 1000
        # And the idle ones are still alive: a request on the first and the last.
        get(port, sock=conns[0])
        get(port, sock=conns[-1])
        for s in conns:
            s.close()
    finally:
        server.terminate()
        server.wait(timeout=20)

lines = [
    f"# {count} idle keep-alive connections against zcopy serve ({os.uname().release}, {os.cpu_count()} cores)",
    "",
    f"Run: `bench/idle.py target/release/zcopy {count}` on {time.strftime('%Y-%m-%d', time.gmtime())}.",
    "",
    "| measure | value | target |",
    "|---|---|---|",
    f"| server VmRSS before | {rss0 / 1024:.1f} MiB | |",
    f"| server VmRSS with {count} idle connections | {rss1 / 1024:.1f} MiB | <= 64 MiB |",
    f"| memory per idle connection | {(rss1 - rss0) * 1024 / count:.0f} bytes | |",
    f"| a new client's request while they idle | 200 in {fresh_ms:.2f} ms | served |",
    f"| time to open {count} connections (one request each) | {opened:.1f} s | |",
]
text = "\n".join(lines) + "\n"
print(text)
os.makedirs("bench/results", exist_ok=True)
with open("bench/results/idle.md", "w") as f:
    f.write(text)
