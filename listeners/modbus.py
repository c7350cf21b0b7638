"""Modbus meters: RTU on a serial port or USB adapter (type ``modbus``), or Modbus TCP (type
``modbus_tcp``), several meters on one bus.

Each meter names a preset (``meter = sdm120``) or lists its registers as emonhub does
(``registers``, ``names``, ``units``, ``scales``, ``datatypes``, ``functioncodes``,
``byteorder``... see ``protocols.modbus_meters`` and ``protocols.modbus_registers``), and its
``address`` (1-247). Its registers are read in as few requests as the map allows; a register
the meter refuses (Modbus exception 2) is read on its own, so one bad address costs only its
value. Requests and answers go through pymodbus, on the listener's worker thread.

A meter that does not answer within ``timeout`` gives no reading this time and is asked again
with backoff (``listeners.polling``); a meter answering with an exception code, or garbage (a
CRC error pymodbus drops, so: no answer), likewise. A meter that answers only some registers
gives those, and the log says which are missing (at most every 10 minutes).

Settings of ``modbus`` (RTU), with their defaults:

``com_port`` (/dev/ttyUSB0)  the serial device (prefer its /dev/serial/by-id/... name)
``com_baud`` (9600)          the bus speed (Eastron meters: 9600 from the factory; emonhub: 2400)
``parity`` (none)            none, even or odd
``stopbits`` (1)             1 or 2
``timeout`` (1)              seconds to wait for a meter's answer
``usb_vid``, ``usb_pid`` (none) find the adapter by its USB ids (``listeners.meters``)
``datatype`` (float32)       the data type of listed registers that give none (emonhub's
                             ``int``/``float`` too)
``interval`` (10), ``retry_max`` (300), ``nodename`` ('')  as every meter bus

``modbus_tcp`` has ``host`` (required) and ``port`` (502) instead of the serial settings;
``address`` is then the unit id behind the host (a Modbus TCP gateway's RTU meters, or 1).
"""

import inspect
import logging
from typing import List, Optional, Sequence

import serial
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from gateway.frame import input_name_problem
from listeners.meters import SERIAL_BUS_SPEC, MeterBusListener, MeterDevice, find_serial_port
from listeners.polling import PollError
from listeners.serialport import describe_open_error
from protocols.modbus_meters import MeterSettings, meter_settings
from protocols.modbus_registers import DeviceError, read_requests

PARITY = {"none": "N", "even": "E", "odd": "O"}
# pymodbus 3.10 renamed the device address keyword ``slave`` to ``device_id``.
_DEVICE_KEYWORD = ("device_id" if "device_id" in inspect.signature(ModbusTcpClient.read_input_registers).parameters
                   else "slave")


class ModbusBus:
    """A pymodbus client, made and opened on the worker thread at the first request and after a
    failure (``make_client()``, which may look for the serial port, as emonhub does)."""

    def __init__(self, make_client, where: str, timeout: float, probe=None):
        self.make_client = make_client
        self.client = None
        self.where = where
        self.timeout = timeout
        self._probe = probe      # (port) -> why it cannot be opened (pymodbus does not say)

    def read(self, unit: int, function: int, address: int, count: int) -> List[int]:
        """``count`` registers from ``address`` of meter ``unit``: function 3 (holding) or 4 (input)."""
        def call():
            read = self.client.read_holding_registers if function == 3 else self.client.read_input_registers
            return read(address, count=count, **{_DEVICE_KEYWORD: unit})
        return self._request(unit, call).registers

    def write(self, unit: int, address: int, words: Sequence[int]) -> None:
        self._request(unit, lambda: self.client.write_registers(address, list(words), **{_DEVICE_KEYWORD: unit}))

    def _request(self, unit: int, call):
        self._ensure_open()
        try:
            response = call()
        except ModbusIOException:
            raise PollError(f"no answer from address {unit} within {self.timeout:g} s") from None
        except ConnectionException as exc:
            self.close()
            raise PollError(f"lost the connection to {self.where} ({exc})") from None
        except (ModbusException, OSError, serial.SerialException) as exc:
            self.close()
            raise PollError(f"{self.where}: {exc}") from None
        if response.isError():
            raise DeviceError(getattr(response, "exception_code", 0))
        return response

    def _ensure_open(self) -> None:
        if self.client is not None and self.client.connected:
            return
        self.client = self.make_client()
        if not self.client.connect():
            where = self.client.comm_params.host
            why = self._probe(where) if self._probe else None
            self.close()
            raise PollError(f"cannot {'open' if self._probe else 'connect to'} {where}" + (f": {why}" if why else ""))

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()


def _serial_problem(port: str) -> Optional[str]:
    """Why ``port`` cannot be opened (no such device, permission, in use), by trying it."""
    try:
        serial.serial_for_url(port, exclusive=True).close()
    except (serial.SerialException, OSError, ValueError) as exc:
        return describe_open_error(port, exc)[1]
    return None


class ModbusMeter(MeterDevice):
    """One meter: its register writes (Samsung), then its read requests, on the bus."""

    def __init__(self, listener: "ModbusListener", meter: MeterSettings):
        super().__init__(listener, meter)
        self.requests = meter.register_map.requests()

    def read(self):
        bus, unit = self.listener.bus, self.meter.address
        problems = []
        for address, words in self.meter.register_map.writes:
            try:
                bus.write(unit, address, words)
            except DeviceError as exc:
                problems.append(f"writing register {address}: {exc}")
        results = read_requests(self.requests, lambda function, address, count: bus.read(unit, function, address,
                                                                                      count))
        readings = [(r.register.name, r.value, r.register.unit) for r in results if r.error is None]
        problems += [r.error for r in results if r.error is not None]
        if not readings:
            raise PollError(f"address {unit}: " + (problems[0] + (f" (and {len(problems) - 1} more)"
                                                                  if len(problems) > 1 else "")))
        return readings, problems

    def describe(self) -> dict:
        preset = self.meter.preset
        return dict(super().describe(), meter=preset.name if preset else None)


class ModbusMeters(MeterBusListener):
    """What both Modbus listeners' meters are: register maps, read by ``ModbusMeter``."""

    SPEC = """
    datatype = string(default='float32')
    """
    DEVICE = ModbusMeter

    @classmethod
    def parse_meter(cls, name: str, section: dict, settings: dict) -> MeterSettings:
        return meter_settings(name, section, settings.get("datatype") or "float32")

    @classmethod
    def meter_problems(cls, meter: MeterSettings) -> List[str]:
        return [f"names: {problem}" for problem in filter(None, (input_name_problem(register.name)
                                                                 for register in meter.register_map.registers))]

    @classmethod
    def meter_warnings(cls, meter: MeterSettings, settings: dict) -> List[str]:
        return list(meter.warnings)


class ModbusListener(ModbusMeters):
    """Modbus RTU meters on one serial port."""

    SPEC = """
    com_port = string(default='/dev/ttyUSB0')
    com_baud = integer(min=300, max=921600, default=9600)
    parity = option('none', 'even', 'odd', default='none')
    stopbits = integer(min=1, max=2, default=1)
    timeout = float(min=0.05, max=60, default=1)
    """ + SERIAL_BUS_SPEC
    SAMPLE = """
    # Modbus RTU electricity (or heat) meters on an RS-485 adapter, several on one bus.
    [[...]]
    com_port = /dev/ttyUSB2
    # A name ending in * is searched for (/dev/ttyACM*), as emonhub does; or set the USB
    # adapter's ids (decimal, as emonhub writes them): that adapter, whatever its name.
    # usb_vid =
    # usb_pid =
    com_baud
    # none, even or odd
    parity
    stopbits
    # Seconds to wait for a meter's answer.
    timeout
    # Data type of listed registers that give none: int16, uint16, int32, uint32, float32,
    # int64, uint64, float64 (emonhub's int and float too).
    datatype
    interval
    retry_max
    # '' : each meter is its own node. Set: every meter of the bus reports to this node.
    nodename
    [[[meters]]]
        # A preset: sdm120, sdm230, sdm630 (sdm72d), rayleigh_ri_d35_100, rayleigh_ri_d150,
        # eaton_epbmeter1, voltaris_vdt45m, zpmeter_223f, samsung_mim_b19n, sontex_modbus.
        # 'inputs' keeps only some of its inputs.
        [[[[electric]]]]
            meter = sdm120
            # Modbus address, 1-247 (default: the preset's factory address).
            address = 1
            # inputs = P, EI
        # Or the registers, as emonhub writes them: 0-based addresses (or
        # register_numbering = datasheet for 30001-style numbers), with names, units, scales,
        # offsets, precision, datatypes, functioncodes (3 holding, 4 input) and byteorder
        # (ABCD, DCBA, BADC, CDAB) per register or one for all.
        [[[[heat]]]]
            address = 2
            registers = 0, 2
            names = flow_temp, return_temp
            units = °C, °C
            datatypes = int16
            functioncodes = 3
            scales = 0.1
    """

    @classmethod
    def meter_warnings(cls, meter: MeterSettings, settings: dict) -> List[str]:
        warnings = super().meter_warnings(meter, settings)
        preset = meter.preset
        if preset is not None and (preset.baud, preset.parity) != (settings["com_baud"], settings["parity"]):
            warnings.append(f"meter: the {preset.title} comes set to {preset.baud} baud, parity {preset.parity}; "
                            f"this bus is {settings['com_baud']} baud, parity {settings['parity']}: a meter "
                            "set otherwise does not answer")
        return warnings

    def make_bus(self) -> ModbusBus:
        quiet_pymodbus()
        settings = self.settings
        return ModbusBus(lambda: ModbusSerialClient(
            find_serial_port(settings), baudrate=settings["com_baud"], bytesize=8, parity=PARITY[settings["parity"]],
            stopbits=settings["stopbits"], timeout=settings["timeout"], retries=0),
            settings["com_port"], settings["timeout"], probe=_serial_problem)


class ModbusTcpListener(ModbusMeters):
    """Modbus TCP: meters (unit ids) behind one host."""

    SPEC = """
    host = string
    port = integer(min=1, max=65535, default=502)
    timeout = float(min=0.05, max=60, default=2)
    """
    SAMPLE = """
    # Modbus TCP: meters or an inverter on the network (a meter's address: its unit id).
    [[...]]
    host = 192.168.1.50
    port
    timeout
    datatype
    interval
    retry_max
    nodename
    [[[meters]]]
        [[[[grid]]]]
            meter = sdm630
            address = 1
    """

    def make_bus(self) -> ModbusBus:
        quiet_pymodbus()
        host, port, timeout = self.settings["host"], self.settings["port"], self.settings["timeout"]
        return ModbusBus(lambda: ModbusTcpClient(host, port=port, timeout=timeout, retries=0), f"{host}:{port}",
                         timeout)


def quiet_pymodbus() -> None:
    """pymodbus logs every timeout as an error; the listener reports them itself, once."""
    logger = logging.getLogger("pymodbus")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.CRITICAL)
