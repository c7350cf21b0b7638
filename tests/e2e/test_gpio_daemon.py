"""GPIO pulse counting and digital inputs in the daemon, run as the service runs it, with only
the gpiod library faked (tests/gpiod_shim): totals reaching emoncms, restarts, kill -9 and a
power cut while counting, and a Pi without the gpiod package."""

import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import pytest

from tests.support.configs import listener_config
from tests.support.daemon import runtime_dir_for
from tests.support.gpiod_control import Batch, RemoteChip, gpiod_env, past, pulse_train

PULSE = """
    [[gas]]
    type = pulse
    pin = 17
    nodename = gasmeter
    rate_limit = 0
    {extra}
"""


@pytest.fixture
def pins():
    folder = tempfile.mkdtemp(prefix="gpio-")   # short: a Unix socket path has ~100 characters
    chip = RemoteChip(Path(folder) / "pins")
    yield chip
    chip.close()
    shutil.rmtree(folder, ignore_errors=True)


def send_pulses(pins, count, start=None, **kw):
    batch = Batch()
    pulse_train(batch, 17, count, start if start is not None else past(), **kw)
    pins.drive_many(batch.edges)


def totals(emoncms):
    return [row.value for row in emoncms.rows if row.node == "gasmeter" and row.name == "pulse"]


def wait_total(emoncms, total):
    emoncms.wait_until(lambda rows: total in totals(emoncms), what=f"a pulse total of {total}")


def start(gateway_factory, emoncms, pins, extra=""):
    """The daemon with one pulse listener (``extra``: more of its settings) and emoncms."""
    config = listener_config(emoncms, PULSE.format(extra=extra))
    return gateway_factory(config, env=gpiod_env(pins.path))


def test_pulses_reach_every_buffer_as_a_total(gateway_factory, emoncms, pins, tmp_path):
    config = listener_config(emoncms, PULSE.format(extra="initial_total = 500"), extra=f"""
    [[csv]]
    type = file
    path = {tmp_path / 'readings.csv'}
    """)
    gw = gateway_factory(config, env=gpiod_env(pins.path))
    wait_total(emoncms, 500)
    send_pulses(pins, 12, bounces=2)
    wait_total(emoncms, 512)
    assert gw.stop() == 0
    assert "pulse total 512 saved" in gw.log
    rows = (tmp_path / "readings.csv").read_text().splitlines()
    assert rows[-1].endswith(",gasmeter,512")


def test_a_restart_in_the_middle_of_counting_goes_on(gateway_factory, emoncms, pins):
    gw = start(gateway_factory, emoncms, pins)
    send_pulses(pins, 8)
    wait_total(emoncms, 8)
    assert gw.stop() == 0
    pins.close()
    start(gateway_factory, emoncms, pins)
    send_pulses(pins, 4)
    wait_total(emoncms, 12)
    assert 0 not in totals(emoncms)[1:]           # never back to 0 after the first start


def test_kill_9_while_counting_loses_no_counted_pulse(gateway_factory, emoncms, pins):
    gw = start(gateway_factory, emoncms, pins)
    wait_total(emoncms, 0)
    stop = threading.Event()

    def keep_pulsing():
        while not stop.is_set():
            try:
                send_pulses(pins, 5, start=past(1), period_ms=10, width_ms=4)
            except (OSError, AssertionError):   # the daemon died under us
                return

    pulser = threading.Thread(target=keep_pulsing)
    pulser.start()
    emoncms.wait_until(lambda rows: max(totals(emoncms), default=0) >= 50, what="counting under way")
    gw.kill()                                     # SIGKILL: no clean stop, nothing saved by it
    stop.set()
    pulser.join()
    pins.close()
    reported = max(totals(emoncms))
    emoncms.reset()
    gw = start(gateway_factory, emoncms, pins)
    restored = int(re.search(r"pulse total (\d+) \(from the tmpfs mirror\)", gw.log).group(1))
    assert restored >= reported                   # every pulse reported before the kill is kept
    send_pulses(pins, 3)
    wait_total(emoncms, restored + 3)


def test_a_power_cut_keeps_the_saved_total(gateway_factory, emoncms, pins, tmp_path):
    gw = start(gateway_factory, emoncms, pins, "save_interval = 0")
    send_pulses(pins, 20)
    wait_total(emoncms, 20)
    gw.kill()
    shutil.rmtree(runtime_dir_for(tmp_path))      # the reboot empties the tmpfs
    pins.close()
    emoncms.reset()
    gw = start(gateway_factory, emoncms, pins, "save_interval = 0")
    wait_total(emoncms, 20)
    assert "pulse total 20 (from the saved record)" in gw.log


def test_digital_inputs_reach_emoncms(gateway_factory, emoncms, pins):
    config = listener_config(emoncms, """
    [[digital]]
    type = gpio
    pins = 15,
    pin_numbering = board
    nodename = heatpump
    """)
    gateway_factory(config, env=gpiod_env(pins.path))
    emoncms.wait_until(lambda rows: any(r.node == "heatpump" and r.name == "pin15" and r.value == 0 for r in rows),
                       what="pin15 = 0")
    pins.drive(22, True, past())                  # header pin 15 is GPIO22
    emoncms.wait_until(lambda rows: any(r.node == "heatpump" and r.name == "pin15" and r.value == 1 for r in rows),
                       what="pin15 = 1")


def test_without_gpiod_the_listener_says_what_to_install_and_the_rest_runs(gateway_factory, emoncms, tmp_path):
    config = listener_config(emoncms, PULSE.format(extra=""))
    gw = gateway_factory(config)
    line = gw.wait_for_log(r"ERROR .*listener 'gas'")
    assert "pip install 'gpiod>=2'" in line
    gw.signal(signal.SIGTERM)
    assert gw.stop() == 0
