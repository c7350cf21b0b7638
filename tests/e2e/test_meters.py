"""Modbus and M-Bus meters with the daemon running as a subprocess, the way the service runs:
readings reach emoncms, /status shows each meter, and config errors name the file, line, meter
section and key."""

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.support.configs import listener_config, values_by_node
from tests.support.daemon import DAEMON, WAIT, free_port
from tests.support.mbus_meter import kamstrup_601, multi_telegram_meter
from tests.support.modbus_server import SDM120_REGISTERS, SimulatedMeter


def test_rtu_meters_reach_emoncms_and_status_shows_each_meter(modbus_server, gateway_factory, emoncms, tmp_path):
    modbus = modbus_server(SimulatedMeter(1, input=SDM120_REGISTERS), SimulatedMeter(2, input=SDM120_REGISTERS))
    link = modbus.start_rtu(tmp_path / "ttyRS485")
    modbus.silent.add(2)
    status_port = free_port()
    gw = gateway_factory(listener_config(emoncms, f"""
    [[heatpump]]
    type = modbus
    com_port = {link}
    timeout = 0.3
    interval = 0.5
    nodename = heatpump
    [[[meters]]]
    [[[[electric]]]]
    meter = sdm120
    address = 1
    inputs = P, EI
    [[[[spare]]]]
    meter = sdm120
    address = 2
    """, gateway=f"clock = trusted\nstatus_port = {status_port}"))
    rows = emoncms.wait_until(lambda rows: {"electric_P", "electric_EI"} <= {r.name for r in rows}, what="meter rows")
    assert values_by_node(rows)["heatpump"] == {"electric_P": 1498.2, "electric_EI": 1234.5}
    gw.wait_for_log(r"WARNING .*spare: no reading \(no answer from address 2 within 0.3 s\)")
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status", timeout=WAIT) as reply:
        listener = json.load(reply)["listeners"]["heatpump"]
    assert listener["type"] == "modbus" and listener["devices"]["electric"]["state"] == "ok"
    assert listener["devices"]["spare"]["state"] == "failing"
    assert gw.stop() == 0
    assert "Traceback" not in gw.log


# -- config errors ------------------------------------------------------------------------------------
def check(tmp_path, listener: str):
    path = tmp_path / "gw.conf"
    path.write_text(f"[listeners]\n{listener}\n[buffers]\n[[f]]\ntype = file\n")
    return subprocess.run([sys.executable, str(DAEMON), "--config-file", str(path), "--check"],
                          capture_output=True, text=True, timeout=60)


MODBUS_BUS = "[[bus]]\ntype = modbus\ncom_port = /dev/ttyUSB0\n[[[meters]]]\n[[[[m]]]]"
MBUS_BUS = "[[bus]]\ntype = mbus\ncom_port = /dev/ttyUSB1\n[[[meters]]]\n[[[[m]]]]"
AT_METER = ": [listeners] [[bus]] [[[meters]]] [[[[m]]]]: meters: m: "


@pytest.mark.parametrize("bus, meter, message", [
    (MODBUS_BUS, "meter = sdm12", ":7" + AT_METER + "meter: unknown meter preset 'sdm12' (known: "),
    (MODBUS_BUS, "registers = 12\ndatatypes = int33", ":8" + AT_METER + "datatypes: 'int33' is not a data type"),
    (MODBUS_BUS, "meter = sdm120\naddress = 300", ":8" + AT_METER + "address: '300' is not a Modbus device "
                                                "address (1-247)"),
    (MBUS_BUS, "meter = kamstrup", ":7" + AT_METER + "meter: unknown M-Bus meter preset 'kamstrup' (known: "),
    (MBUS_BUS, "address = 251", ":7" + AT_METER + "address '251' is not an M-Bus primary address"),
])
def test_config_errors_name_the_file_the_meter_section_and_the_key(tmp_path, bus, meter, message):
    result = check(tmp_path, f"{bus}\n{meter}")
    assert result.returncode == 1
    assert f"{tmp_path / 'gw.conf'}{message}" in result.stderr, result.stderr


def test_config_errors_of_a_bus(tmp_path):
    result = check(tmp_path, "[[bus]]\ntype = modbus_tcp\nhost = 300.1.1.1\n[[[meters]]]\n[[[[a]]]]\n"
                             "meter = sdm120\n[[[[b]]]]\nmeter = sdm630\naddress = 1\n")
    assert result.returncode == 1
    assert "[listeners] [[bus]]: host = 300.1.1.1: not an IP address or host name" in result.stderr
    assert "[[[[b]]]]: meters: b: address: 1 is meter a's address too" in result.stderr
    result = check(tmp_path, "[[bus]]\ntype = modbus\n")
    assert "[listeners] [[bus]]: meters: no meter: add a [[[meters]]] section" in result.stderr


def test_heat_meter_readings_reach_emoncms(mbus_bus, gateway_factory, emoncms, tmp_path):
    link = mbus_bus(kamstrup_601(1), multi_telegram_meter(2)).start_serial(tmp_path / "ttyMBUS")
    gw = gateway_factory(listener_config(emoncms, f"""
    [[MBUS]]
    type = mbus
    com_port = {link}
    interval = 0.5
    [[[meters]]]
    [[[[heatmeter]]]]
    meter = kamstrup_multical
    address = 1
    [[[[multi]]]]
    address = 2
    """))
    rows = emoncms.wait_until(lambda rows: {"heatmeter", "multi"} <= {r.node for r in rows}, what="both meters")
    got = values_by_node(rows)
    assert got["heatmeter"]["energy"] == 37351 and got["heatmeter"]["flow_temp"] == 101.69
    assert got["multi"]["Energy2"] == 16
    gw.wait_for_log(r"INFO .*listener 'MBUS': polling 2 meters on .*ttyMBUS at 2400 baud every 0.5 s")
    assert gw.stop() == 0
    assert "Traceback" not in gw.log and " WARNING " not in gw.log.split("ready")[1]
