"""The DS18B20 listener over a w1 sysfs tree in a temp folder: sensors appearing, failing their
CRC, reading 85000, vanishing and coming back; and in the daemon, readings reaching emoncms."""

import json
import urllib.request

import pytest

from listeners.ds18b20 import DS18B20Listener
from tests.conftest import free_port, listener_config
from tests.loop_thread import LogWatch, LoopThread
from tests.w1_bus import W1Bus

A, B = "28-000008e2db06", "28-000009770529"


def settings(root, **kw):
    base = dict(ids=[A], names=["ambient"], node="sensors", w1_root=str(root), interval=0.1, retry_max=1.0,
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


@pytest.mark.parametrize("given, message", [
    (dict(ids=["28-0000"]), "ids: '28-0000' is not a 1-wire thermometer id"),
    (dict(ids=[A, A], names=[]), "ids: a sensor id is given twice"),
    (dict(names=["a", "b"]), "names: 2 names for 1 ids"),
    (dict(names=["cyl top"]), "names: input name 'cyl top'"),
])
def test_settings_are_checked(tmp_path, given, message):
    problems = DS18B20Listener.check_settings(settings(tmp_path, **given))
    assert any(message in p for p in problems), problems


def test_temperatures_reach_emoncms_and_each_sensor_is_in_the_status(gateway_factory, emoncms, tmp_path):
    bus = W1Bus(tmp_path / "w1")
    bus.set(A, 55125)
    bus.set(B, 85000)                              # a sensor just powered: dropped, not 85 °C
    status_port = free_port()
    gateway_factory(listener_config(emoncms, f"""
    [[temps]]
    type = ds18b20
    ids = {A},
    names = cylinder_top,
    w1_root = {bus.root}
    interval = 0.2
    """, gateway=f"clock = trusted\nstatus_port = {status_port}"))
    emoncms.wait_until(lambda rows: any(r.node == "sensors" and r.name == "cylinder_top" and r.value == 55.125
                                        for r in rows), what="cylinder_top = 55.125")
    bus.set(B, 40000)
    emoncms.wait_until(lambda rows: any(r.name == B and r.value == 40.0 for r in rows), what=f"{B} = 40")
    assert not any(r.value == 85.0 for r in emoncms.rows)
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status", timeout=10) as reply:
        devices = json.load(reply)["listeners"]["temps"]["devices"]
    assert devices[f"{A} (cylinder_top)"]["last_good_read_age_s"] is not None
    assert devices[B]["errors_by_kind"]["power_on_85"] >= 1 and devices[B]["state"] == "ok"


def test_the_shipped_samples_of_the_sensor_listeners_are_valid_once_uncommented(tmp_path):
    """The shipped config shows every setting of ds18b20, pulse and gpio, commented out (the
    shipped file runs without hardware); uncommented, with their defaults, they validate."""
    import re
    from buffers import BUFFERS
    from gateway.config import ConfigLoader
    from listeners import LISTENERS
    from tests.conftest import shipped_config
    lines = shipped_config().splitlines()
    start = lines.index("    # [[temperatures]]")
    end = next(i for i in range(lines.index("    # [[digital]]"), len(lines)) if not lines[i].strip())
    uncommented = (re.sub(r"^\s*#\s*(#\s*)?", "", line) for line in lines[start:end])
    sample = [line for line in uncommented if re.match(r"(\[\[\w+\]\]|\w+ = )", line)]
    shown = {line.split("=")[0].strip() for line in sample if "=" in line}
    for type_name in ("ds18b20", "pulse", "gpio"):
        spec_keys = {line.split("=")[0].strip() for line in LISTENERS.resolve(type_name).settings_spec().splitlines()}
        assert spec_keys - {"max_line", "nodelistonly"} <= shown, type_name
    path = tmp_path / "gw.conf"
    path.write_text("[listeners]\n" + "\n".join(sample) + "\n")
    config = ConfigLoader(LISTENERS, BUFFERS).load(str(path))
    assert set(config.listeners) == {"temperatures", "gas", "digital"}
