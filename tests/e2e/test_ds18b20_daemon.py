"""The DS18B20 listener in the daemon: temperatures reaching emoncms from a w1 sysfs tree in a
temp folder, each sensor in /status, a read that blocks."""

import json
import os
import urllib.request

from tests.support.configs import listener_config
from tests.support.daemon import free_port, send_lines
from tests.support.w1_bus import W1Bus

A, B = "28-000008e2db06", "28-000009770529"


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


def test_a_read_that_blocks_never_delays_other_listeners(gateway_factory, emoncms, tmp_path):
    """A conversion takes ~750 ms and a sick bus longer: here the sensor's w1_slave is a FIFO
    that answers only when the test writes to it. Meanwhile frames from a socket listener go
    through; then the temperature comes."""
    root = tmp_path / "w1"
    (root / A).mkdir(parents=True)
    os.mkfifo(root / A / "w1_slave")
    port = free_port()
    gw = gateway_factory(listener_config(emoncms, f"""
    [[temps]]
    type = ds18b20
    w1_root = {root}
    [[tcp]]
    type = socket
    port = {port}
    """))
    send_lines(port, b"7 42\n")
    emoncms.wait_until(lambda rows: any(r.node == "7" and r.value == 42 for r in rows), what="the socket's frame")
    assert not any(r.node == "sensors" for r in emoncms.rows)     # the poll is still blocked
    with open(root / A / "w1_slave", "w") as sensor:              # the conversion ends
        sensor.write("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n")
    emoncms.wait_until(lambda rows: any(r.node == "sensors" and r.value == 23.125 for r in rows), what="23.125")
    assert gw.stop() == 0
