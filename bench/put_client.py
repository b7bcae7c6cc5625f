#!/usr/bin/env python3
"""PUT one file with sendfile(2): the benchmark client of bench/put.sh (CLIENT=sendfile).

    bench/put_client.py HOST PORT PATH FILE

Sends `PUT PATH HTTP/1.1` with Content-Length (no Expect, no chunking), then the
file's bytes with socket.sendfile() (os.sendfile: the page cache's pages go to the
socket without a copy through this process), reads the status line, and closes.
Prints `CODE SECONDS CPU_SECONDS`: wall-clock time from connect to the status line,
and this process's own user+sys CPU over the same span (so interpreter start-up is
not counted in either). curl -T reads the file and copies it into the socket, a
full core at ~2.4 GB/s on this machine, which made the client the limit of a PUT
over loopback; this one spends a fraction of that (see bench/results/put-*.md).

Only the standard library: any peer server is driven by the same bytes.
"""
import os
import resource
import socket
import sys
import time


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    host, port, path, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    with open(name, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = (
            f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
        ).encode()
        c0, t0 = cpu(), time.monotonic()
        with socket.create_connection((host, port)) as s:
            s.sendall(head)
            try:
                sent = s.sendfile(f)
            except OSError as e:
                # Refused before the body was taken (e.g. 413): its answer, if any.
                sent = f"none ({e})"
            try:
                status = s.makefile("rb").readline()
            except OSError:
                status = b""
            if sent != size:
                sys.exit(f"sent {sent} of the {size} bytes; answer: {status!r}")
        t1, c1 = time.monotonic(), cpu()
    parts = status.split()
    code = parts[1].decode() if len(parts) > 1 else "000"
    print(f"{code} {t1 - t0:.6f} {c1 - c0:.6f}")


if __name__ == "__main__":
    main()
