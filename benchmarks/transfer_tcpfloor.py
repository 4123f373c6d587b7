"""The floor of the disk-transfer benchmark: the least work a network copy of N bytes
into a file on the destination's disk can do from Python (kernel ``sendfile`` on the
sender, 4 MiB ``recv_into`` + ``write`` on the receiver, ``fsync`` at the end; no
framing, no checksums, no sparseness).

    python transfer_tcpfloor.py recv ADDR PORT OUTFILE   # prints "ready", then seconds
    python transfer_tcpfloor.py send ADDR PORT INFILE

The receiver is listening before the sender starts, and times from ``accept`` to the
end of the ``fsync`` (so neither interpreter's start-up is counted); it prints the
seconds as its last line.
"""

from __future__ import annotations

import os
import socket
import sys
import time


def receive(address: str, port: int, out: str) -> None:
    server = socket.create_server((address, port))
    print("ready", flush=True)
    conn, _ = server.accept()
    started = time.perf_counter()
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while n := conn.recv_into(buf):
            os.write(fd, view[:n])
        os.fsync(fd)
    finally:
        os.close(fd)
    print(f"{time.perf_counter() - started:.6f}", flush=True)


def send(address: str, port: int, path: str) -> None:
    with socket.create_connection((address, port)) as sock, open(path, "rb") as fh:
        sock.sendfile(fh)


if __name__ == "__main__":
    mode, addr, port_s, file_arg = sys.argv[1:5]
    (receive if mode == "recv" else send)(addr, int(port_s), file_arg)
