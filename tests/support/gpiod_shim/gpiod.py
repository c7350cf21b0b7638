"""``import gpiod`` in a daemon under test: the fake libgpiod 2 module (``tests.support.fake_gpiod``).

A test puts this folder first on the daemon's PYTHONPATH (``gpiod_env``), so the gateway's own
code runs unchanged and only the library is replaced. The fake has the Pi's header chip at
/dev/gpiochip0; the test drives its input lines through the Unix socket named in
$OEMGATEWAY_TEST_GPIOD: one JSON line ``[[pin, level, timestamp_ns or null], ...]`` per batch of
edges, answered ``ok`` once they are queued (``tests.support.gpiod_control.RemoteChip``).
"""

import os

from tests.support.fake_gpiod import FakeGpiod
from tests.support.gpiod_control import serve_pins

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


if os.environ.get("OEMGATEWAY_TEST_GPIOD"):
    serve_pins(_chip, os.environ["OEMGATEWAY_TEST_GPIOD"])
