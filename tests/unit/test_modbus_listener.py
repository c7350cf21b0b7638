"""The Modbus listeners against a real pymodbus server: Modbus TCP on a free port, and Modbus RTU
over a pseudo-terminal with the server on the other end; several meters on one bus, a silent
meter, garbage on the line, exception codes. (The daemon end to end: tests/e2e/test_meters.py.)"""

import logging

from listeners.modbus import ModbusListener, ModbusTcpListener
from tests.support.modbus_server import SDM120_REGISTERS, SimulatedMeter

COMMON = {"interval": 0.2, "retry_max": 2.0, "nodelistonly": False, "nodename": "",
          "datatype": "float32"}
SDM120 = SDM120_REGISTERS
SDM120_VALUES = {"V": 230.5, "I": 6.5, "P": 1498.2, "VA": 1500.0, "PF": 0.998, "FR": 50.0, "EI": 1234.5,
                 "EE": 0.25, "RI": 12.0}   # (P to 1 decimal place: the preset's precision)
HEAT_METER = {7: [2150], 8: [0xFFCE]}      # holding registers: 21.50 °C, and -50 (int16)


def meters(**sections):
    return {name: {k: str(v) for k, v in section.items()} for name, section in sections.items()}


def by_node(frames):
    """The last frame of each node, as ``{node: {name: value}}``."""
    return {frame.node: dict(zip(frame.names, frame.values)) for frame in frames}


def device(running, listener, name):
    return running.on_loop(lambda: listener.status_details()["devices"][name])


def test_modbus_tcp_meters_by_preset_and_by_register_list(modbus_server, running):
    modbus = modbus_server(SimulatedMeter(1, input=SDM120), SimulatedMeter(7, holding=HEAT_METER))
    port = modbus.start_tcp()
    settings = dict(COMMON, host="127.0.0.1", port=port, timeout=1.0, meters=meters(
        electric={"meter": "sdm120", "address": 1},
        heat={"address": 7, "registers": "7, 8", "names": "FlowT, offset", "datatypes": "int16",
              "scales": "0.01", "units": "°C"}))
    assert ModbusTcpListener.check_settings(settings) == []
    listener = ModbusTcpListener("inverter", settings, running.loop, running.emit)
    running.on_loop(listener.open)
    running.until(lambda: {"electric", "heat"} <= {f.node for f in running.frames})
    running.on_loop(listener.close)
    nodes = by_node(running.frames)
    assert nodes["electric"] == SDM120_VALUES
    assert nodes["heat"] == {"FlowT": 21.5, "offset": -50}
    status = device(running, listener, "electric")
    assert status["state"] == "ok" and status["meter"] == "sdm120" and status["address"] == 1
    assert status["units"]["P"] == "W" and status["units"]["EI"] == "kWh"
    assert device(running, listener, "heat")["units"] == {"FlowT": "°C", "offset": ""}


def rtu_settings(link, **extra):
    return dict(COMMON, com_port=str(link), com_baud=9600, parity="none", stopbits=1, timeout=0.3, **extra)


def test_several_rtu_meters_on_one_bus_and_a_silent_one_that_delays_none(modbus_server, running, tmp_path):
    modbus = modbus_server(SimulatedMeter(1, input=SDM120), SimulatedMeter(2, input={**SDM120, 12: 10.0}),
                    SimulatedMeter(3, input=SDM120))
    link = modbus.start_rtu(tmp_path / "ttyRS485")
    modbus.silent.add(3)
    listener = ModbusListener("bus", rtu_settings(link, meters=meters(
        a={"meter": "sdm120", "address": 1}, b={"meter": "sdm230", "address": 2, "inputs": "P, EI"},
        dead={"meter": "sdm120", "address": 3})), running.loop, running.emit)
    running.on_loop(listener.open)
    running.until(lambda: sum(f.node == "b" for f in running.frames) >= 8)
    dead = device(running, listener, "dead")
    running.on_loop(listener.close)
    nodes = by_node(running.frames)
    assert nodes["a"] == SDM120_VALUES and nodes["b"] == {"P": 10.0, "EI": 1234.5}
    assert "dead" not in nodes
    assert dead["state"] == "failing" and dead["last_error"] == "no answer from address 3 within 0.3 s"
    # Backoff: while the others were read eight times, the silent meter was asked less often.
    assert 1 <= dead["errors"] < 8 and dead["retry_in_s"] > COMMON["interval"]
    # One request per poll (perhaps one more in flight): a silent meter costs one timeout a poll.
    assert modbus.requests[3] in (dead["errors"], dead["errors"] + 1)


def test_garbage_on_the_line_costs_the_reads_it_hits_and_nothing_else(modbus_server, running, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="oemgateway.listener.bus")
    modbus = modbus_server(SimulatedMeter(1, input=SDM120))
    link = modbus.start_rtu(tmp_path / "ttyRS485")
    modbus.garble = 2
    listener = ModbusListener("bus", rtu_settings(link, meters=meters(m={"meter": "sdm120", "address": 1})),
                              running.loop, running.emit)
    running.on_loop(listener.open)
    running.until(lambda: len(running.frames) >= 2)
    status = device(running, listener, "m")
    running.on_loop(listener.close)
    assert by_node(running.frames)["m"] == SDM120_VALUES
    assert status["errors"] == 2 and status["state"] == "ok"
    assert any("answers again (after 2 failed polls)" in r.getMessage() for r in caplog.records)


def test_exception_codes_cost_only_the_registers_refused(modbus_server, running, caplog):
    caplog.set_level(logging.WARNING, logger="oemgateway.listener.tcp")
    modbus = modbus_server(SimulatedMeter(1, input={0: 230.0, 6: 1.5}), SimulatedMeter(2, input={0: 1.0}))
    port = modbus.start_tcp()
    listener = ModbusTcpListener("tcp", dict(COMMON, host="127.0.0.1", port=port, timeout=1.0, meters=meters(
        partial={"address": 1, "registers": "0, 6, 500", "names": "V, I, beyond"},
        refused={"address": 2, "registers": "300", "functioncodes": "3"})), running.loop, running.emit)
    running.on_loop(listener.open)
    running.until(lambda: running.frames and listener.status_details()["devices"]["refused"]["errors"] >= 1)
    running.on_loop(listener.close)
    assert by_node(running.frames) == {"partial": {"V": 230.0, "I": 1.5}}
    warnings = [r.getMessage() for r in caplog.records]
    assert any("meter partial: beyond (input register 500): Modbus exception 2 (illegal data address)" in w
               for w in warnings), warnings
    assert device(running, listener, "refused")["last_error"] == \
        "address 2: r300 (holding register 300): Modbus exception 2 (illegal data address)"


def test_a_missing_serial_port_is_reported_and_retried(running, tmp_path):
    listener = ModbusListener("bus", rtu_settings(tmp_path / "ttyUSB9", meters=meters(m={"meter": "sdm120"})),
                              running.loop, running.emit)
    running.on_loop(listener.open)
    running.until(lambda: listener.status_details()["devices"]["m"]["errors"] >= 2)
    running.on_loop(listener.close)
    assert device(running, listener, "m")["last_error"].startswith(
        f"cannot open {tmp_path / 'ttyUSB9'}: no such device")


def test_a_port_named_with_a_star_is_searched_for_as_emonhub_does(modbus_server, running, tmp_path, monkeypatch):
    from serial.tools import list_ports
    modbus = modbus_server(SimulatedMeter(1, input=SDM120))
    link = modbus.start_rtu(tmp_path / "ttyACM1")

    class PortInfo:   # what pyserial's port listing says (the library boundary: no USB here)
        def __init__(self, device):
            self.device, self.vid, self.pid = str(device), 0x2E8A, 0x000A

    monkeypatch.setattr(list_ports, "comports", lambda: [PortInfo(tmp_path / "ttyUSB0"), PortInfo(link)])
    listener = ModbusListener("bus", rtu_settings(f"{tmp_path}/ttyACM*", meters=meters(m={"meter": "sdm120"})),
                              running.loop, running.emit)
    assert listener.describe_bus() == f"the serial port matching {tmp_path}/ttyACM* at 9600 baud"
    running.on_loop(listener.open)
    running.until(lambda: running.frames)
    running.on_loop(listener.close)
    assert by_node(running.frames)["m"] == SDM120_VALUES
