"""The polling contract: a device that implements only ``poll()`` gets a schedule, a worker
thread, the hand-off to the loop, error counting, backoff and per-device status."""

import logging
import threading
from pathlib import Path

import pytest

from buffers import BUFFERS
from gateway.spool import SPOOL_SPEC, build_spool
from gateway.config import ConfigLoader
from gateway.logs import Redactor
from gateway.registry import Registry
from listeners.polling import PolledDevice, PollError, PollingListener
from tests.support.polled_counter import CounterListener
from tests.support.proclog import WAIT

SETTINGS = {"interval": 0.1, "retry_max": 1.0, "node": 30, "nodelistonly": False}


def counter(running, name="meter", gate=None, **settings):
    listener = CounterListener(name, dict(SETTINGS, **settings), running.loop, running.emit)
    listener.gate = gate
    running.on_loop(listener.open)
    return listener


def device_status(running, listener, device=None):
    return running.on_loop(lambda: listener.status_details()["devices"][device or listener.name])


def test_a_device_that_implements_only_poll_is_read_every_interval(running):
    listener = counter(running)
    running.until(lambda: len(running.frames) >= 3)
    running.on_loop(listener.close)
    frame = running.frames[0]
    assert (frame.node, frame.values, frame.names, frame.source) == (30, (1, 230.5), ("count", "vrms"), "meter")
    assert [f.values[0] for f in running.frames[:3]] == [1, 2, 3]
    status = device_status(running, listener)
    assert status["state"] == "ok" and status["errors"] == 0 and status["last_good_read_age_s"] is not None
    assert status["latency_s"] is not None and status["polls"] >= 3
    assert listener.stats.frames_good >= 3


def test_polls_of_one_device_never_overlap_and_a_slow_device_delays_no_other(running):
    slow, fast = counter(running, "slow", threading.Event(), node=1), counter(running, "fast", node=2)
    assert slow.entered.acquire(timeout=WAIT)
    running.until(lambda: fast.count >= 5)   # five intervals and more went by
    assert not slow.entered.acquire(blocking=False), "a second poll began while the first ran"
    assert running.on_loop(lambda: slow.status_details()["devices"]["slow"]["polls"]) == 0
    slow.gate.set()
    running.until(lambda: any(f.node == 1 for f in running.frames))
    running.on_loop(slow.close)
    running.on_loop(fast.close)


def test_a_failing_device_is_counted_logged_once_and_asked_less_and_less_often(running, caplog):
    caplog.set_level(logging.INFO, logger="oemgateway.listener.meter")
    listener = CounterListener("meter", dict(SETTINGS), running.loop, running.emit)
    listener.fail_with = PollError("no answer from meter 1 within 0.5 s")
    waits = []
    original = listener.poll

    def poll():   # the wait the base chose before this poll
        waits.append(listener.status_details()["devices"]["meter"]["retry_in_s"])
        return original()

    listener.poll = poll
    running.on_loop(listener.open)
    running.until(lambda: listener.status_details()["devices"]["meter"]["errors"] >= 7)
    assert waits[:7] == [None, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    status = device_status(running, listener)
    assert status["state"] == "failing" and status["last_error"] == "no answer from meter 1 within 0.5 s"
    assert status["last_good_read_age_s"] is None and running.on_loop(lambda: listener.state) == "failing"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings   # the first failure, then one throttled line
    assert "no answer from meter 1" in warnings[0] and "then less often" in warnings[0]

    listener.fail_with = None
    running.until(lambda: running.frames)
    assert any("answers again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    status = device_status(running, listener)
    assert status["state"] == "ok" and status["retry_in_s"] is None and status["errors"] >= 7
    running.on_loop(listener.close)


def test_a_fault_in_a_device_s_code_is_logged_with_its_traceback_and_polling_goes_on(running, caplog):
    listener = CounterListener("meter", dict(SETTINGS), running.loop, running.emit)
    listener.fail_with = KeyError("register")
    running.on_loop(listener.open)
    running.until(lambda: listener.status_details()["devices"]["meter"]["errors"] >= 2)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info and "polling meter failed" in errors[0].getMessage()
    assert "internal error: KeyError" in device_status(running, listener)["last_error"]
    listener.fail_with = None
    running.until(lambda: running.frames)
    running.on_loop(listener.close)


def test_closing_while_a_poll_blocks_returns_at_once_and_drops_what_that_poll_reads(running):
    listener = counter(running, gate=threading.Event())
    assert listener.entered.acquire(timeout=WAIT)
    running.on_loop(listener.close)   # (the loop answers: close did not wait for the device)
    assert not listener.released.is_set()   # the port stays with the poll that uses it
    listener.gate.set()
    assert listener.released.wait(WAIT)
    running.on_loop(lambda: None)   # whatever the poll handed to the loop has run by now
    assert listener.count == 1 and running.frames == []


def test_closing_between_polls_releases_the_device_before_it_returns(running):
    """A listener re-created with new settings must find the port free."""
    listener = counter(running, interval=60)   # (no poll runs when it closes)
    running.until(lambda: len(running.frames) >= 1)
    running.on_loop(listener.close)
    assert listener.released.is_set()


class TwoMeters(PollingListener):
    """Two devices of one listener: ``lane`` says whether they share a bus."""

    SPEC = "shared_bus = boolean(default=True)"

    def devices(self):
        lane = "bus" if self.settings["shared_bus"] else None
        return [Meter(self, 1, lane or "a"), Meter(self, 2, lane or "b")]


class Meter(PolledDevice):
    def __init__(self, listener, address, lane):
        super().__init__(f"meter{address}", listener.settings["interval"], lane)
        self.listener, self.address = listener, address
        self.gate, self.polls, self.active = None, 0, 0
        self.most_active = listener.most_active = getattr(listener, "most_active", [0])

    def poll(self):
        self.polls += 1
        self.active += 1
        self.most_active[0] = max(self.most_active[0], sum(m.active for m in self.listener.meters))
        if self.gate is not None:
            self.gate.wait()
        self.active -= 1
        return [self.listener.frame(self.address, [self.polls])]


def two_meters(running, shared_bus):
    listener = TwoMeters("bus", dict(SETTINGS, shared_bus=shared_bus), running.loop, running.emit)
    listener.meters = listener.devices()
    listener.devices = lambda: listener.meters
    return listener


def test_devices_on_one_bus_are_asked_one_after_another(running):
    listener = two_meters(running, shared_bus=True)
    running.on_loop(listener.open)
    running.until(lambda: min(m.polls for m in listener.meters) >= 5)
    running.on_loop(listener.close)
    assert listener.most_active == [1]
    assert set(running.on_loop(lambda: listener.status_details()["devices"])) == {"meter1", "meter2"}


def test_devices_of_one_bus_due_together_hand_their_readings_over_together(running):
    """One wake-up of the loop and one delivery per bus and interval, not one per device."""
    listener = two_meters(running, shared_bus=True)
    first, second = listener.meters
    second.gate = threading.Event()
    running.on_loop(listener.open)
    running.until(lambda: second.polls == 1)   # (so the first meter's poll is over)
    assert first.polls == 1 and running.on_loop(lambda: list(running.frames)) == []
    second.gate.set()
    running.until(lambda: len(running.frames) >= 2)
    running.on_loop(listener.close)
    assert [f.node for f in running.frames[:2]] == [1, 2]


def test_a_hung_device_on_its_own_lane_never_delays_the_others(running):
    listener = two_meters(running, shared_bus=False)
    hung, other = listener.meters
    hung.gate = threading.Event()
    running.on_loop(listener.open)
    running.until(lambda: other.polls >= 5)
    assert hung.polls == 1
    hung.gate.set()
    running.until(lambda: any(f.node == 1 for f in running.frames))
    running.on_loop(listener.close)


# -- through the gateway: config, buffers, reload ----------------------------------------------
def gateway_config(tmp_path: Path, interval: float) -> Path:
    path = tmp_path / "gw.conf"
    path.write_text(f"""
[gateway]
durability = none
config_check_interval = 0
[listeners]
[[meter]]
type = counter
interval = {interval}
node = 31
[buffers]
[[file]]
type = file
path = {tmp_path}/readings.csv
""")
    return path


@pytest.fixture
def gateway(tmp_path, running):
    from gateway.hub import Gateway
    loader = ConfigLoader(Registry("listener", {"counter": "tests.support.polled_counter:CounterListener"}),
                          BUFFERS, SPOOL_SPEC)
    config = loader.load(str(gateway_config(tmp_path, 0.1)))
    hub = Gateway(running.loop, loader, Redactor(), build_spool(config.gateway))
    hub.spool.open(config.buffers)
    running.on_loop(lambda: hub.start(config))
    yield hub
    running.on_loop(hub.shutdown)


def test_a_polled_device_s_readings_reach_the_buffers(tmp_path, running, gateway):
    running.until(lambda: gateway.buffers["file"].stats.delivered >= 2)
    rows = (tmp_path / "readings.csv").read_text().splitlines()
    assert rows[0] == "time,local_time,node,values"
    assert [row.split(",")[2:] for row in rows[1:3]] == [["31", "1", "230.5"], ["31", "2", "230.5"]]


def test_a_reload_while_a_poll_blocks_replaces_the_listener_at_once(tmp_path, running, gateway):
    old = gateway.listeners["meter"]
    running.until(lambda: old.count >= 1)
    old.gate = threading.Event()
    assert old.waiting.acquire(timeout=WAIT)
    read_before = running.on_loop(lambda: old.count)
    gateway_config(tmp_path, 0.2)
    running.on_loop(lambda: gateway.reload("test"))
    new = gateway.listeners["meter"]
    assert new is not old and new.settings["interval"] == 0.2
    running.until(lambda: new.count >= 2)
    assert not old.released.is_set()
    old.gate.set()
    assert old.released.wait(WAIT)
    running.on_loop(lambda: None)
    assert old.count == read_before + 1 and old.stats.frames_good == read_before   # (that poll's reading: dropped)


def test_status_shows_each_device(running, gateway):
    from gateway.web.status import format_status, snapshot
    running.until(lambda: gateway.buffers["file"].stats.delivered >= 1)
    status = running.on_loop(lambda: snapshot(gateway, "test", 0.0, str))
    device = status["listeners"]["meter"]["devices"]["meter"]
    assert device["state"] == "ok" and device["errors"] == 0 and device["last_good_read_age_s"] is not None
    assert "meter" in format_status(status).split("listeners:")[1].splitlines()[2]


def test_polls_after_the_first_fall_on_the_clocks_multiples_of_the_interval():
    """Devices with the same interval, started at different times, are then polled at the same
    moments (on the wall clock's multiples of the interval), so their readings share a delivery."""
    from listeners.polling import next_on_grid
    for wall, mono in ((1_000_003.25, 50.0), (1_000_007.9, 12345.678), (1_000_010.0, 7.0)):
        due = next_on_grid(mono, wall, 10.0)
        assert 0 < due - mono <= 10.0
        assert (wall + (due - mono)) % 10.0 == pytest.approx(0.0, abs=1e-6) \
            or (wall + (due - mono)) % 10.0 == pytest.approx(10.0, abs=1e-6)
