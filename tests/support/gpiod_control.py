"""Driving GPIO input lines: in this process (a ``FakeGpiod`` chip) or in a daemon under test
(``RemoteChip``, through the ``tests/gpiod_shim`` module that daemon imports as ``gpiod``, or
the radio stand-in's, whose chip ``serve_pins`` serves likewise)."""

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from tests.support.proclog import WAIT

SHIM = Path(__file__).resolve().parent / "gpiod_shim"
MS = 1_000_000


def gpiod_env(socket_path) -> dict:
    """Environment for a daemon whose ``import gpiod`` gets the fake, driven through ``socket_path``."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(SHIM), os.environ.get("PYTHONPATH")])),
            "OEMGATEWAY_TEST_GPIOD": str(socket_path)}


def serve_pins(chip, socket_path: str) -> None:
    """In the daemon: drive ``chip``'s input lines as a ``RemoteChip`` at ``socket_path`` asks.
    The socket is bound before this returns (so it exists once the daemon has imported gpiod);
    a thread serves it."""
    try:
        os.unlink(socket_path)   # left by a daemon that was killed
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(4)
    threading.Thread(target=_serve_pins, args=(chip, server), name="fake-gpio-pins", daemon=True).start()


def _serve_pins(chip, server: socket.socket) -> None:
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_drive_pins, args=(chip, conn), daemon=True).start()


def _drive_pins(chip, conn: socket.socket) -> None:
    with conn, conn.makefile("rw", encoding="utf-8") as stream:
        for text in stream:
            for pin, level, stamp in json.loads(text):
                chip.drive(pin, bool(level), stamp)
            stream.write("ok\n")
            stream.flush()


class RemoteChip:
    """The daemon's fake GPIO chip, seen from the test: ``drive`` as on ``FakeGpioChip``."""

    def __init__(self, socket_path):
        self.path = str(socket_path)
        self._stream = None

    def _connect(self):
        """Connect to the daemon's fake chip: call once the daemon has opened its GPIO listener."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(WAIT)
        sock.connect(self.path)
        return sock.makefile("rw", encoding="utf-8")

    def drive_many(self, edges) -> None:
        if self._stream is None:
            self._stream = self._connect()
        self._stream.write(json.dumps(list(edges)) + "\n")
        self._stream.flush()
        assert self._stream.readline().strip() == "ok"

    def drive(self, pin: int, level: bool, timestamp_ns: Optional[int] = None) -> None:
        self.drive_many([(pin, level, timestamp_ns)])

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


@contextlib.contextmanager
def remote_pins():
    """A ``RemoteChip`` whose socket is in a fresh temp folder (short: a Unix socket path has
    ~100 characters), for ``gpiod_env``; closed and removed after."""
    folder = tempfile.mkdtemp(prefix="gpio-")
    chip = RemoteChip(Path(folder) / "pins")
    try:
        yield chip
    finally:
        chip.close()
        shutil.rmtree(folder, ignore_errors=True)


class Batch:
    """Edges collected by ``drive`` and sent to a RemoteChip in one go."""

    def __init__(self):
        self.edges = []

    def drive(self, pin, level, timestamp_ns=None):
        self.edges.append((pin, level, timestamp_ns))


def pulse_train(chip, pin, count, start_ns, period_ms=100, width_ms=40, bounces=0, active_high=True):
    """``count`` pulses on ``pin`` stamped from ``start_ns``, each with ``bounces`` extra edge
    pairs (0.5 ms apart) on both its rising and falling edge, as a reed switch makes."""
    on, off = active_high, not active_high
    for i in range(count):
        t = start_ns + i * period_ms * MS
        for edge_at, level, other in ((t, on, off), (t + width_ms * MS, off, on)):
            chip.drive(pin, level, edge_at)
            for b in range(bounces):
                chip.drive(pin, other, edge_at + (2 * b + 1) * MS // 2)
                chip.drive(pin, level, edge_at + (2 * b + 2) * MS // 2)


def past(seconds: float = 60) -> int:
    """A start stamp far enough back that every edge of a train has settled by now."""
    return time.monotonic_ns() - int(seconds * 1e9)
