"""``import gpiod`` in a daemon under test: the fake libgpiod 2 module (``tests.support.fake_gpiod``).

A test puts this folder first on the daemon's PYTHONPATH (``gpiod_env``), so the gateway's own
code runs unchanged and only the library is replaced. The fake has the Pi's header chip at
/dev/gpiochip0; the test drives its input lines through the Unix socket named in
$OEMGATEWAY_TEST_GPIOD: one JSON line ``[[pin, level, timestamp_ns or null], ...]`` per batch of
edges, answered ``ok`` once they are queued (``tests.support.gpiod_control.RemoteChip``).
"""

import json
import os
import socket
import threading

from tests.support.fake_gpiod import FakeGpiod

_fake = FakeGpiod()
_chip = _fake.add_chip("/dev/gpiochip0", "pinctrl-bcm2711", 58)

line = _fake.line
LineSettings = _fake.LineSettings
EdgeEvent = _fake.EdgeEvent
ChipInfo = _fake.ChipInfo
RequestReleasedError = _fake.RequestReleasedError
api_version = _fake.api_version
request_lines = _fake.request_lines
Chip = _fake.Chip
is_gpiochip_device = _fake.is_gpiochip_device


def _listen(path: str) -> socket.socket:
    """Bound before the import returns: the socket exists once the daemon has imported gpiod."""
    try:
        os.unlink(path)   # left by a daemon that was killed
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    return server


def _serve(server: socket.socket) -> None:
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()


def _handle(conn: socket.socket) -> None:
    with conn, conn.makefile("rw", encoding="utf-8") as stream:
        for text in stream:
            for pin, level, stamp in json.loads(text):
                _chip.drive(pin, bool(level), stamp)
            stream.write("ok\n")
            stream.flush()


if os.environ.get("OEMGATEWAY_TEST_GPIOD"):
    threading.Thread(target=_serve, args=(_listen(os.environ["OEMGATEWAY_TEST_GPIOD"]),), name="fake-gpio-pins",
                     daemon=True).start()
