"""The M-Bus listeners against simulated meters answering real EN 13757-3 telegrams on a
pseudo-terminal (a serial M-Bus adapter) and a TCP port: several meters on one bus, one that
answers in several telegrams, one that is silent, bad checksums. (The daemon end to end:
tests/e2e/test_meters.py.)"""

import logging

import pytest

from listeners.mbus import MBusListener, MBusTcpListener
from tests.support.mbus_meter import kamstrup_601 as kamstrup, multi_telegram_meter

COMMON = {"interval": 0.2, "retry_max": 2.0, "nodelistonly": False, "nodename": "",
          "validate_checksum": True, "link_reset": True}
KAMSTRUP_601 = {"energy": 37351, "volume": 561.08, "flow_temp": 101.69, "return_temp": 46.16,
                "delta_temp": 55.53, "power": 34700, "flow": 0.543, "on_time": 985}


def sections(**meters):
    return {name: {k: str(v) for k, v in meter.items()} for name, meter in meters.items()}


def serial_settings(link, **extra):
    return dict(COMMON, com_port=str(link), com_baud=2400, timeout=0.2, **extra)


def by_node(frames):
    return {frame.node: dict(zip(frame.names, frame.values)) for frame in frames}


def devices(listener):
    return listener.status_details()["devices"]


def test_heat_meters_and_a_multi_telegram_meter_on_one_adapter_that_echoes(mbus_bus, running, tmp_path):
    link = mbus_bus(kamstrup(1), multi_telegram_meter(2), echo=True).start_serial(tmp_path / "ttyMBUS")
    listener = MBusListener("mbus", serial_settings(link, meters=sections(
        heat={"meter": "kamstrup_multical", "address": 1}, multi={"meter": "standard", "address": 2},
        gone={"meter": "heat_meter", "address": 5})), running.loop, running.emit)
    running.on_loop(listener.open)
    running.until(lambda: {"heat", "multi"} <= {f.node for f in running.frames}
                  and devices(listener)["gone"]["errors"] >= 1)
    status = running.on_loop(lambda: devices(listener))
    running.on_loop(listener.close)
    nodes = by_node(running.frames)
    assert nodes["heat"] == pytest.approx(KAMSTRUP_601)
    assert nodes["multi"]["energy_2"] == 16            # from the third telegram
    assert status["heat"]["units"]["energy"] == "kWh" and status["heat"]["missing"] == ["error_time"]
    assert status["gone"]["state"] == "failing"
    assert status["gone"]["last_error"] == "address 5: no answer to SND_NKE after 3 tries"


def test_a_bad_checksum_is_asked_for_again_and_too_many_cost_that_read_only(mbus_bus, running, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="oemgateway.listener.mbus")
    meter = kamstrup(1)
    meter.garble = 1
    link = mbus_bus(meter).start_serial(tmp_path / "ttyMBUS")
    listener = MBusListener("mbus", serial_settings(link, meters=sections(heat={"meter": "heat_meter"})),
                            running.loop, running.emit)
    running.on_loop(listener.open)
    running.until(lambda: running.frames)
    assert devices(listener)["heat"]["errors"] == 0   # (asked again at once, with the same FCB)
    meter.garble = 3                                        # every try of the next read
    running.until(lambda: devices(listener)["heat"]["errors"] == 1)
    assert devices(listener)["heat"]["last_error"].startswith(
        "address 1: a bad frame (long frame of 253 bytes from address 17: checksum ")   # (the telegram's own A)
    before = len(running.frames)
    running.until(lambda: len(running.frames) > before)
    running.on_loop(listener.close)
    assert by_node(running.frames)["heat"]["energy"] == 37351
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_checksums_can_be_ignored_for_a_meter_known_to_get_them_wrong(mbus_bus, running, tmp_path):
    meter = kamstrup(1)
    meter.garble = 10 ** 6
    link = mbus_bus(meter).start_serial(tmp_path / "ttyMBUS")
    listener = MBusListener("mbus", serial_settings(link, validate_checksum=False,
                                                    meters=sections(heat={"meter": "heat_meter"})),
                            running.loop, running.emit)
    running.on_loop(listener.open)
    running.until(lambda: running.frames)
    running.on_loop(listener.close)
    assert running.frames[0].node == "heat"


def test_mbus_over_tcp_with_emonhub_names_under_one_node(mbus_bus, running):
    port = mbus_bus(kamstrup(3)).start_tcp()
    listener = MBusTcpListener("gateway", dict(COMMON, host="127.0.0.1", port=port, timeout=1.0, nodename="heatpump",
                                               meters=sections(heatmeter={"type": "kamstrup403", "address": 3})),
                               running.loop, running.emit)
    running.on_loop(listener.open)
    running.until(lambda: running.frames)
    running.on_loop(listener.close)
    frame = running.frames[0]
    assert frame.node == "heatpump"
    values = dict(zip(frame.names, frame.values))
    assert values["heatmeter_Energy"] == 37351 and values["heatmeter_FlowT"] == 101.69


class PortInfo:
    """What pyserial's port listing says of a USB serial adapter (the library boundary: no USB here)."""

    def __init__(self, device, vid, pid):
        self.device, self.vid, self.pid = str(device), vid, pid


def test_the_adapter_is_found_by_its_usb_ids_as_emonhub_finds_it(mbus_bus, running, tmp_path, monkeypatch):
    from serial.tools import list_ports
    link = mbus_bus(kamstrup(1)).start_serial(tmp_path / "ttyUSB3")
    ports = [PortInfo(tmp_path / "ttyUSB1", 0x0403, 0x6001), PortInfo(link, 1659, 9123)]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    settings = serial_settings("/dev/ttyUSB0", usb_vid=1659, usb_pid=9123, meters=sections(heat={"meter": "heat_meter"}))
    assert MBusListener.claims(settings) == []   # (known when found)
    listener = MBusListener("mbus", settings, running.loop, running.emit)
    running.on_loop(listener.open)
    running.until(lambda: running.frames)
    ports[1] = PortInfo(link, 1659, 1)        # unplugged: no adapter with these ids
    listener.bus.close()                       # (as after a lost port: the next read searches again)
    running.until(lambda: devices(listener)["heat"]["errors"] >= 1)
    running.on_loop(listener.close)
    assert devices(listener)["heat"]["last_error"] == \
        "no serial port with USB ids 1659:9123 (is the adapter plugged in?)"
