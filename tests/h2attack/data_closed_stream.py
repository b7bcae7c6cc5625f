#!/usr/bin/env python3
"""DATA on a closed or reset stream: (1) GET / on stream 1, wait for the response,
then 16 KiB DATA frames on stream 1 (now closed); (2) on a fresh connection, a POST
on stream 1 reset by us (RST_STREAM CANCEL), then 16 KiB DATA frames on it. Far more
than the 64 KiB connection window in all, but sent as a well-behaved client would:
only within the connection window the server has granted (65535 + its WINDOW_UPDATEs
on stream 0). A server that does not credit the connection window for DATA it
discards leaves that client stuck: FAIL when no credit comes for 2 s. After each
phase, if the connection is still open, GET / on it must be answered. Bounded by
--count frames per phase and --seconds."""
import time

import h2attack as a


def phase(args, reset, deadline):
    c = a.Conn(args)
    auth = a.authority(args)
    if reset:
        c.send(a.frame(a.HEADERS, a.END_HEADERS, 1, a.request_block(auth, "/", "POST", a.scheme(args)))
               + a.rst_stream(1, a.CANCEL))
    else:
        c.send(a.frame(a.HEADERS, a.END_STREAM | a.END_HEADERS, 1, a.request_block(auth, "/", scheme=a.scheme(args))))
        c.pump(2.0, until=lambda c: 1 in c.ended or 1 in c.rst_sids)
    c.pump(0.2)
    grant0 = 65535 + c.conn_credit  # what the server granted before any discarded DATA
    frames = 0
    sent = 0
    stuck = False
    payload = b"d" * 16384
    while not c.closed and frames < args.count and time.monotonic() < deadline:
        if sent + len(payload) > 65535 + c.conn_credit:
            if not c.pump(2.0, until=lambda c: sent + len(payload) <= 65535 + c.conn_credit):
                stuck = not c.closed
                break
            continue
        if not c.send(a.frame(a.DATA, 0, 1, payload), timeout=max(0.1, deadline - time.monotonic())):
            break
        frames += 1
        sent += len(payload)
    c.pump(0.3)
    same = "connection closed"
    if not c.closed:
        c.send(a.frame(a.HEADERS, a.END_STREAM | a.END_HEADERS, 3, a.request_block(auth, "/", scheme=a.scheme(args))))
        ok = c.pump(args.good_timeout, until=lambda c: 3 in c.ended or 3 in c.rst_sids)
        same = "GET / on the same connection %s" % ("answered" if ok and 3 in c.ended else
                                                    "reset" if ok else "NOT answered")
    c.close()
    if stuck:
        win = "STUCK: connection window exhausted, no credit for 2 s"
    elif sent <= grant0:
        win = "within the %d B granted up front: crediting not exercised" % grant0
    else:
        win = "connection window credited (%d B granted up front, %d B later)" % (grant0, 65535 + c.conn_credit - grant0)
    text = "%d×16 KiB DATA (%s), %s; %s" % (frames, win, same, c.reaction())
    fail = None
    if stuck:
        fail = "%s: the server does not credit the connection window for discarded DATA" % (
            "reset stream" if reset else "closed stream")
    elif "NOT answered" in same:
        fail = "%s: GET / on the same connection not answered" % ("reset stream" if reset else "closed stream")
    return text, fail


def attack(args):
    half = args.seconds / 2
    r1, f1 = phase(args, False, time.monotonic() + half)
    r2, f2 = phase(args, True, time.monotonic() + half)
    return {"sent": "DATA on closed and on reset streams within the granted connection window",
            "reaction": "closed: %s | reset: %s" % (r1, r2), "fail": "; ".join(f for f in (f1, f2) if f)}


if __name__ == "__main__":
    a.run("data_closed_stream", __doc__, attack, count_default=1536)
