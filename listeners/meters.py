"""What the Modbus and M-Bus listeners share: meters on one bus, each polled as a device.

A listener is one bus (a serial port, or a TCP connection to a gateway or a meter) with its
meters in ``[[[meters]]]``, one ``[[[[name]]]]`` sub-section each::

    [[heatpump_meters]]
    type = modbus
    com_port = /dev/ttyUSB0
    [[[meters]]]
    [[[[electric]]]]
    meter = sdm120
    address = 1

Each meter is polled on its own schedule with its own backoff and status (``listeners.polling``),
one after another on the bus's worker thread: the bus is one wire, and only one request may be
on it at a time. A silent meter is asked less and less often, so it costs the others at most
one reply timeout now and then.

Readings: by default each meter is its own node, named after its section (``electric``), with
the inputs its preset or register list names (``P``, ``EI``). With ``nodename`` set, every
meter of the bus reports to that one node and its inputs are ``<meter>_<input>``
(``electric_P``), as emonhub names them, so an emonhub user's emoncms inputs keep their names.
The units of the inputs are in ``/status`` (per meter) and in the log when the listener starts.

Settings (the listener's own, besides ``interval`` and ``retry_max`` of every polling listener):

``nodename`` ('' : each meter is a node of its own name)
    The node every meter of this bus reports to, inputs prefixed with the meter's name.
``usb_vid``, ``usb_pid`` (none; serial buses)
    The USB adapter's vendor and product ids, in decimal as emonhub writes them (1659 and 9123
    for a Prolific adapter): the bus is the adapter with these ids, whatever its device name;
    a ``com_port`` ending in ``*`` (``/dev/ttyACM*``) is searched for likewise. See
    ``find_serial_port``.
"""

import logging
import re
from typing import Dict, List, Sequence, Tuple

from gateway.frame import Frame, FrameError, Node, Number, parse_node
from gateway.config import is_host
from gateway.logs import LogThrottle, plural
from listeners.polling import PolledDevice, PollError, PollingListener
from listeners.serialport import device_claims

METERS_SPEC = """
[[[meters]]]
[[[[__many__]]]]
__many__ = pass
"""
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


SERIAL_BUS_SPEC = """
usb_vid = integer(min=0, max=65535, default=None)
usb_pid = integer(min=0, max=65535, default=None)
"""
"""The USB ids a serial bus's adapter may be found by, as emonhub's ``device_vid``/``device_pid``."""


def searched(settings: dict) -> bool:
    """Whether a serial bus's port is searched for (USB ids, or a ``com_port`` ending in ``*``)."""
    return settings.get("usb_vid") is not None or settings.get("usb_pid") is not None \
        or (settings.get("com_port") or "").endswith("*")


def find_serial_port(settings: dict) -> str:
    """The serial device of a bus, found as emonhub finds it: ``com_port``; or, with ``usb_vid``
    and/or ``usb_pid``, the USB adapter with those ids; or, with a ``com_port`` ending in ``*``
    (``/dev/ttyACM*``), a port whose name starts so; the last in name order when several match.
    Searched at each (re)open, so an adapter replugged under another name is found. PollError
    when none matches."""
    port = settings["com_port"]
    if not searched(settings):
        return port
    from serial.tools import list_ports   # (only a bus that searches pays for it)
    vid, pid = settings.get("usb_vid"), settings.get("usb_pid")
    found = sorted(info.device for info in list_ports.comports()
                   if (vid is None or info.vid == vid) and (pid is None or info.pid == pid)
                   and (not port.endswith("*") or info.device.startswith(port[:-1])))
    if not found:
        raise PollError(f"no serial port {describe_search(settings)} (is the adapter plugged in?)")
    return found[-1]


def describe_search(settings: dict) -> str:
    """``with USB ids 1659:9123``, ``matching /dev/ttyACM*``."""
    vid, pid = settings.get("usb_vid"), settings.get("usb_pid")
    ids = f"with USB ids {'*' if vid is None else vid}:{'*' if pid is None else pid}" \
        if vid is not None or pid is not None else ""
    glob = f"matching {settings['com_port']}" if settings["com_port"].endswith("*") else ""
    return " and ".join(filter(None, (ids, glob)))


def input_name(text: str) -> str:
    """``text`` as an input name: characters an input name may not have become ``_``."""
    return _NOT_NAME_CHARS.sub("_", text).strip("_")[:64] or "value"


class MeterDevice(PolledDevice):
    """One meter of a bus. A subclass implements ``read()``: its readings as (name, value, unit)."""

    def __init__(self, listener: "MeterBusListener", meter):
        super().__init__(meter.name, listener.settings["interval"], lane="bus")
        self.listener = listener
        self.meter = meter
        self.units: Dict[str, str] = {}
        self.problems = LogThrottle(listener.log, logging.WARNING, 600.0)   # (thread-safe: no timer)

    def read(self) -> Tuple[List[Tuple[str, Number, str]], List[str]]:
        """``(readings, problems)``: what the meter gave, and what it did not (one line each).
        Raise PollError when it gave nothing."""
        raise NotImplementedError

    def poll(self) -> List[Frame]:
        readings, problems = self.read()
        if problems:
            self.problems("%s: meter %s: %s", self.listener, self.name, "; ".join(problems))
        self.units = {name: unit for name, _, unit in readings}
        return [self.listener.meter_frame(self.name, [(name, value) for name, value, _ in readings])]

    def release(self) -> None:
        self.listener.bus.close()

    def describe(self) -> dict:
        return {"address": self.meter.address, "units": dict(self.units)}


class MeterBusListener(PollingListener):
    """A bus of meters: ``[[[meters]]]`` parsed by ``parse_meter``, one ``MeterDevice`` each."""

    SPEC = """
    nodename = string(default='')
    """
    SAMPLE_COMMON = """
    # Meter buses (modbus, modbus_tcp, mbus, mbus_tcp) have their meters in a [[[meters]]]
    # section, one [[[[name]]]] each, after the bus's own settings. Each meter is a node named
    # after its section, with the inputs its preset names; with 'nodename' set, every meter of
    # the bus reports to that node, inputs named <meter>_<input> as emonhub names them. The
    # meters of a bus are asked one after another; /status and the web page show each meter's
    # last good read, errors, the time its read took, and its inputs' units.
    """
    DEVICE = MeterDevice

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bus = self.make_bus()

    # -- what a subclass implements -----------------------------------------------------------
    @classmethod
    def parse_meter(cls, name: str, section: dict, settings: dict):
        """One meter's settings (with ``name`` and ``address``) from its ``section`` of the
        listener's ``settings``; ValueError whose message starts ``meters: <name>: <key>``."""
        raise NotImplementedError

    def make_bus(self):
        """The bus (serial port or connection) the meters share, not opened yet: it opens on the
        worker thread, at the first poll. It has ``close()``."""
        raise NotImplementedError

    def describe_bus(self) -> str:
        """``/dev/ttyUSB0 at 9600 baud``, ``192.168.1.20:502``: for the log."""
        settings = self.settings
        if "host" in settings:
            return f"{settings['host']}:{settings['port']}"
        port = f"the serial port {describe_search(settings)}" if searched(settings) else settings["com_port"]
        return f"{port} at {settings['com_baud']} baud"

    @classmethod
    def claims(cls, settings: dict) -> list:
        """A serial bus's device (see gateway.config: a device has one reader); one searched
        for is known only when it is found."""
        return device_claims(settings["com_port"]) if settings.get("com_port") and not searched(settings) else []

    # -- settings --------------------------------------------------------------------------------
    @classmethod
    def settings_spec(cls) -> str:
        # The sub-section comes last: a key after its header would belong to it.
        return super().settings_spec() + METERS_SPEC

    @classmethod
    def meter_sections(cls, settings: dict) -> Dict[str, dict]:
        return {name: section for name, section in (settings.get("meters") or {}).items()
                if isinstance(section, dict)}

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = []
        sections = cls.meter_sections(settings)
        if not sections:
            problems.append("meters: no meter: add a [[[meters]]] section with a [[[[name]]]] section per "
                            "meter (e.g. meter = sdm120 and address = 1)")
        nodename = settings.get("nodename") or ""
        if nodename:
            try:
                parse_node(nodename)
            except FrameError as exc:
                problems.append(f"nodename = {nodename}: {exc}")
        if "host" in settings and not is_host(settings.get("host") or ""):
            problems.append(f"host = {settings.get('host')}: not an IP address or host name")
        addresses: Dict[int, str] = {}
        for name, section in sections.items():
            try:
                meter = cls.parse_meter(name, section, settings)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if not nodename:
                try:
                    parse_node(name)
                except FrameError as exc:
                    problems.append(f"meters: {name}: the meter's section name is its node: {exc} (rename "
                                    "the section, or set nodename)")
            other = addresses.setdefault(meter.address, name)
            if other != name:
                problems.append(f"meters: {name}: address: {meter.address} is meter {other}'s address too: "
                                "each meter on a bus needs its own")
            problems += [f"meters: {name}: {problem}" for problem in cls.meter_problems(meter)]
        return problems

    @classmethod
    def meter_problems(cls, meter) -> List[str]:
        """What else is wrong with a parsed meter (its input names, say)."""
        return []

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        warnings = []
        for name, section in cls.meter_sections(settings).items():
            try:
                meter = cls.parse_meter(name, section, settings)
            except ValueError:
                continue   # (a problem already)
            warnings += [f"meters: {name}: {warning}" for warning in cls.meter_warnings(meter, settings)]
        return warnings

    @classmethod
    def meter_warnings(cls, meter, settings: dict) -> List[str]:
        """What works but is probably not what the user meant, about one meter."""
        return []

    # -- polling ---------------------------------------------------------------------------------
    def open(self) -> None:
        self.log.info("%s: polling %s on %s every %g s", self,
                      plural(len(self.meter_sections(self.settings)), "meter"), self.describe_bus(),
                      self.settings["interval"])
        super().open()

    def devices(self) -> Sequence[PolledDevice]:
        meters = [self.parse_meter(name, section, self.settings) for name, section in self.meter_sections(self.settings).items()]
        return [self.DEVICE(self, meter) for meter in meters]

    def meter_frame(self, meter: str, readings: Sequence[Tuple[str, Number]]) -> Frame:
        """A frame of one meter's readings: its own node, or ``nodename`` with prefixed names."""
        nodename = self.settings["nodename"]
        node: Node = parse_node(nodename) if nodename else parse_node(meter)
        names = [f"{meter}_{name}" if nodename else name for name, _ in readings]
        return self.frame(node, [value for _, value in readings], names)
