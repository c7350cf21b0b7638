"""The DS18B20 listener over a w1 sysfs tree in a temp folder: sensors appearing, failing their
CRC, reading 85000, vanishing and coming back."""

import pytest

from listeners.ds18b20 import DS18B20Listener
from tests.support.loop_thread import LogWatch, LoopThread
from tests.support.w1_bus import W1Bus

A, B = "28-000008e2db06", "28-000009770529"


def settings(root, **kw):
    base = dict(ids=[A], names=["ambient"], nodename="sensors", w1_root=str(root), interval=0.1, retry_max=1.0,
                bulk_read=True,
                nodelistonly=False, max_line=4096)
    base.update(kw)
    return base


def readings(frame):
    return dict(zip(frame.names, frame.values))


@pytest.fixture
def bus(tmp_path):
    return W1Bus(tmp_path / "w1")


def run(bus, **kw):
    loop = LoopThread()
    listener = DS18B20Listener("temps", settings(bus.root, **kw), loop.loop, loop.emit)
    return loop, listener


def test_sensors_by_name_and_id_and_one_appearing(bus):
    bus.set(A, 21500)
    loop, listener = run(bus)
    with loop, LogWatch() as log:
        loop.on_loop(listener.open)
        first = loop.wait_for(lambda f: f)[0]
        assert first.node == "sensors" and readings(first) == {"ambient": 21.5}
        bus.set(B, -3250)
        frames = loop.wait_for(lambda f: len(readings(f[-1])) == 2, "the second sensor")
        assert readings(frames[-1]) == {"ambient": 21.5, B: -3.25}
        loop.on_loop(listener.close)
    assert log.count(f"sensor {B} found on the bus") == 1


def test_every_sensor_converts_at_once_where_the_kernel_offers_it(bus):
    bulk = bus.root / "w1_bus_master1" / "therm_bulk_read"
    bulk.write_text("0\n")
    bus.set(A, 21500)
    loop, listener = run(bus, interval=3600)   # one poll: no later one rewriting the file as it is read
    with loop:
        loop.on_loop(listener.open)
        loop.wait_for(lambda f: f)
        loop.on_loop(listener.close)
    assert bulk.read_text() == "trigger\n"


@pytest.mark.parametrize("milli, crc_ok, kind", [(19000, False, "crc"), (85000, True, "power_on_85"),
                                                 (-127000, True, "no_answer")])
def test_bad_reads_are_dropped_and_counted(bus, milli, crc_ok, kind):
    bus.set(A, 21500)
    bus.set(B, milli, crc_ok)
    loop, listener = run(bus)
    with loop:
        loop.on_loop(listener.open)
        loop.wait_for(lambda f: len(f) >= 3)
        bus.set(B, 20000)                          # the next read is good again
        frames = loop.wait_for(lambda f: B in readings(f[-1]), "a good read of B")
        loop.on_loop(listener.close)
    assert all(milli / 1000 not in f.values for f in frames)
    sensor = listener.status_details()["devices"][B]
    assert sensor["errors_by_kind"][kind] >= 3 and sensor["state"] == "ok" and sensor["last_good_read_age_s"] is not None


def test_a_vanishing_sensor_is_reported_once_each_way(bus):
    bus.set(A, 21500)
    bus.set(B, 22500)
    loop, listener = run(bus)
    with loop, LogWatch() as log:
        loop.on_loop(listener.open)
        loop.wait_for(lambda f: f)
        bus.remove(B)
        loop.wait_for(lambda f: len(f) >= 4 and all(B not in readings(x) for x in f[-3:]), "polls without B")
        assert loop.on_loop(listener.status_details)["devices"][B]["state"] == "missing"
        bus.set(B, 23000)
        loop.wait_for(lambda f: readings(f[-1]).get(B) == 23.0, "B back")
        loop.on_loop(listener.close)
    assert log.count(f"sensor {B} is not on the bus: no readings from it until it is back") == 1
    assert log.count(f"sensor {B} found on the bus") == 2     # at start, and back


def test_a_listed_sensor_never_found_is_said_once_and_no_bus_is_a_failing_poll(bus):
    loop, listener = run(bus)
    with loop, LogWatch() as log:
        loop.on_loop(listener.open)
        log.wait_for("still no reading (no 1-wire thermometer under")     # the second failed poll
        loop.on_loop(listener.close)
    assert log.count(f"sensor {A} (ambient) is not on the bus (listed in ids, not found)") == 1
    assert listener.status_details()["devices"]["temps"]["state"] == "failing"


def test_no_sensor_and_none_listed_is_said_once_and_a_sensor_plugged_in_later_is_read(bus):
    loop, listener = run(bus, ids=[], names=[])
    with loop, LogWatch() as log:
        loop.on_loop(listener.open)
        log.wait_for("no 1-wire thermometer under")
        bus.set(A, 19000)
        assert loop.wait_for(lambda f: f)[0].values == (19.0,)
        loop.on_loop(listener.close)
    assert log.count("no 1-wire thermometer under") == 1 and log.count("no reading") == 0
    assert listener.status_details()["devices"]["temps"]["errors"] == 0


@pytest.mark.parametrize("given, message", [
    (dict(ids=["28-0000"]), "ids: '28-0000' is not a 1-wire thermometer id"),
    (dict(ids=[A, A], names=[]), "ids: a sensor id is given twice"),
    (dict(names=["a", "b"]), "names: 2 names for 1 ids"),
    (dict(names=["cyl top"]), "names: input name 'cyl top'"),
])
def test_settings_are_checked(tmp_path, given, message):
    problems = DS18B20Listener.check_settings(settings(tmp_path, **given))
    assert any(message in p for p in problems), problems
