#!/usr/bin/env python3
"""Runs every HTTP/2 attack in this directory against one server, one after the
other, and prints PASS/FAIL per attack with figures: the good client's time during
and after the attack, the server's RSS before/peak/after (with --pid), the server's
CPU seconds over the attack, and how the server reacted (GOAWAY code, RST_STREAM
codes, connection closed, backpressure).

  tests/h2attack/run.py --host 127.0.0.1 --port 8080 [--tls [--ca CA.pem]] [--pid PID]

The server must serve GET / (any status below 500) and a large file at --big (default
/big.bin, 64 MiB or more is best). h2c is HTTP/2 with prior knowledge on a plain port.
Each attack is bounded in count and time (--seconds each, default 5) and runs in its
own process under a timeout. Exit status: 0 if every attack passed.
Needs the PyPI `h2` package (pip install h2, or Debian python3-h2).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ATTACKS = ["rapid_reset", "made_you_reset", "continuation_flood", "hpack_bomb", "settings_flood", "ping_flood",
           "window_update_flood", "zero_window", "data_closed_stream", "too_many_streams"]


def mib(kib):
    return "%.1f" % (kib / 1024) if kib is not None else "-"


def secs(g):
    if not g:
        return "-"
    return ("%.3fs" % g["seconds"]) if g.get("ok") else "FAIL(%s)" % (g.get("error") or g.get("status"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--sni")
    p.add_argument("--pid", type=int)
    p.add_argument("--seconds", type=float, default=5.0, help="time bound per attack")
    p.add_argument("--good-timeout", type=float, default=5.0)
    p.add_argument("--rss-mib", type=float, default=64.0)
    p.add_argument("--big", default="/big.bin")
    p.add_argument("--only", help="comma-separated attack names")
    p.add_argument("--json", help="write every result to this file (JSON lines)")
    p.add_argument("--label", default="", help="a name for the server in the output")
    args = p.parse_args()
    common = ["--host", args.host, "--port", str(args.port), "--seconds", str(args.seconds),
              "--good-timeout", str(args.good_timeout), "--rss-mib", str(args.rss_mib), "--big", args.big]
    if args.tls:
        common.append("--tls")
    if args.ca:
        common += ["--ca", args.ca]
    if args.sni:
        common += ["--sni", args.sni]
    if args.pid:
        common += ["--pid", str(args.pid)]
    names = args.only.split(",") if args.only else ATTACKS
    results = []
    for name in names:
        t0 = time.monotonic()
        limit = args.seconds * 2 + args.good_timeout * 4 + 30
        try:
            cp = subprocess.run([sys.executable, os.path.join(HERE, name + ".py")] + common,
                                capture_output=True, text=True, timeout=limit)
            lines = [line for line in cp.stdout.splitlines() if line.startswith("{")]
            r = json.loads(lines[-1]) if lines else {"attack": name, "verdict": "ERROR",
                                                     "error": (cp.stderr.strip().splitlines() or ["no output"])[-1]}
        except subprocess.TimeoutExpired:
            r = {"attack": name, "verdict": "FAIL", "why": "attack process exceeded %.0fs" % limit}
        r["wall_seconds"] = round(time.monotonic() - t0, 1)
        results.append(r)
        print("%-20s %-5s good during %-12s after %-12s RSS MiB %s->%s->%s  CPU %ss" % (
            name, r["verdict"], secs(r.get("good_during")), secs(r.get("good_after")),
            mib(r.get("rss_kib_before")), mib(r.get("rss_kib_peak")), mib(r.get("rss_kib_after")),
            r.get("server_cpu_s", "-")), flush=True)
        for k in ("sent", "reaction", "why", "error"):
            if r.get(k):
                print("    %-8s %s" % (k + ":", r[k]), flush=True)
        # Let the server settle (closing connections, timers) before the next attack.
        time.sleep(0.5)
    if args.json:
        with open(args.json, "a") as f:
            for r in results:
                r["label"] = args.label
                f.write(json.dumps(r) + "\n")
    passed = sum(r["verdict"] == "PASS" for r in results)
    print("%s%d/%d attacks passed" % ((args.label + ": ") if args.label else "", passed, len(results)))
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
