"""Driving GPIO input lines: in this process (a ``FakeGpiod`` chip) or in a daemon under test
(``RemoteChip``, through the ``tests/gpiod_shim`` module that daemon imports as ``gpiod``)."""

import json
import os
import socket
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
