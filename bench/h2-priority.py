#!/usr/bin/env python3
"""A page-like load over one h2c connection (issue 21: RFC 9218 priorities).

One connection, Chrome-like windows (6 MiB per stream, 15 MiB for the
connection). A large body (`large.bin`) is requested first, then N small urgent
ones (`s0.css` ...), after NLARGE (default 1) large ones: either in the same write as the large one (`--at once`) or
once the large body's first DATA frame arrived (`--at started`). Mode `prio`
sends `priority: u=5` on the large one and `u=0` / `u=1` (alternately) on the
small ones; mode `none` sends no priority field (the server then takes turns, a
frame each, as before priorities). Prints one line per round:
  MODE urgent_ms large_ms first_ms
urgent_ms: from sending the small requests until the last of them ended;
large_ms: from sending the large requests until the last ended; first_ms: until
the first small one ended. Bytes are counted
against the sizes given (a short body fails the round).

Usage: h2-priority.py HOST PORT LARGE_BYTES SMALL_BYTES N MODE AT ROUNDS [NLARGE]
(MODE prio|none|alt: alt alternates prio and none, starting with prio)
"""
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

TRACE = []  # set to [None] to record (stream, bytes) of every DATA frame


def one(host, port, large, small, n, prio, at, nlarge=1):
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 6 << 20,
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
    })
    c.initiate_connection()
    c.increment_flow_control_window((15 << 20) - 65535)
    s.sendall(c.data_to_send())

    def req(path, p):
        sid = c.get_next_available_stream_id()
        h = [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", host)]
        if prio and p:
            h.append(("priority", p))
        c.send_headers(sid, h, end_stream=True)
        return sid

    got = {}
    t0 = time.monotonic()
    bigs = [req("/large.bin", "u=5") for _ in range(nlarge)]
    big = bigs[0]
    for b in bigs:
        got[b] = 0
    smalls = []
    t_small = None

    def send_smalls():
        nonlocal t_small
        for i in range(n):
            sid = req(f"/s{i}.css", "u=0" if i % 2 == 0 else "u=1")
            smalls.append(sid)
            got[sid] = 0
        t_small = time.monotonic()

    if at == "once":
        send_smalls()
    s.sendall(c.data_to_send())
    ended = {}
    while len(ended) < n + nlarge:
        data = s.recv(1 << 20)
        if not data:
            raise SystemExit("closed")
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                got[ev.stream_id] += len(ev.data)
                if TRACE:
                    TRACE.append((ev.stream_id, len(ev.data)))
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if at == "started" and t_small is None and ev.stream_id == big:
                    send_smalls()
            elif isinstance(ev, h2.events.StreamEnded):
                ended[ev.stream_id] = time.monotonic()
            elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise SystemExit(f"reset: {ev}")
        out = c.data_to_send()
        if out:
            s.sendall(out)
    s.close()
    for b in bigs:
        assert got[b] == large, (got[b], large)
    for sid in smalls:
        assert got[sid] == small, (sid, got[sid], small)
    urgent = max(ended[sid] for sid in smalls) - t_small
    first = min(ended[sid] for sid in smalls) - t_small
    return urgent * 1000, (max(ended[b] for b in bigs) - t0) * 1000, first * 1000


def main():
    host, port, large, small, n, mode, at, rounds = sys.argv[1:9]
    nlarge = int(sys.argv[9]) if len(sys.argv) > 9 else 1
    port, large, small, n, rounds = int(port), int(large), int(small), int(n), int(rounds)
    for r in range(rounds):
        for m in (["prio", "none"] if mode == "alt" else [mode]):
            u, l, f = one(host, port, large, small, n, m == "prio", at, nlarge)
            print(f"{m} {u:.2f} {l:.2f} {f:.2f}", flush=True)


if __name__ == "__main__":
    main()
