# Used by bench/beside-big.sh.
# Fixed-rate 1 KiB GETs on one keep-alive connection; prints p50/p99/p999/max latency in ms.
import socket, sys, time
port, secs, gap = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
req = b"GET /1k.bin HTTP/1.1\r\nHost: x\r\n\r\n"
lat = []; end = time.monotonic() + secs; nxt = time.monotonic()
while time.monotonic() < end:
    now = time.monotonic()
    if now < nxt: time.sleep(nxt - now)
    nxt += gap
    t0 = time.monotonic(); s.sendall(req); buf = b""
    while True:
        buf += s.recv(65536)
        h, sep, rest = buf.partition(b"\r\n\r\n")
        if sep and len(rest) >= 1024: break
    lat.append((time.monotonic() - t0) * 1000)
lat.sort(); n = len(lat)
q = lambda p: lat[min(n - 1, int(p * n))]
print(f"n={n} p50={q(.5):.3f} p99={q(.99):.3f} p999={q(.999):.3f} max={lat[-1]:.3f} ms")
